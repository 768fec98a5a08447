"""``gflv2-deploy quantize`` and ``gflv2-deploy build``: precision conversion of the pre-NMS ONNX and engine builds.

Both commands check their output locations, parse options and call one library function:
``export.quantize.quantize_int8`` / ``export.fp16.convert_fp16`` (with ``export.sensitivity`` for
``--sensitivity``) and ``engine.policy.build_from_onnx``, whose docstring states the precision policy.
Heavy modules (onnx, onnxruntime, TensorRT) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import ThreadsOpt, check_count, say
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.compare import AP_BUDGETS


def _one_precision(flags: dict[str, bool]) -> str | None:
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise UserError(f"choose one precision, got --{' --'.join(chosen)}")
    return chosen[0] if chosen else None


def quantize_command(
    onnx: Annotated[Path, typer.Argument(help="Pre-NMS fp32 ONNX written by `gflv2-deploy export --nms none`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output ONNX file.")],
    int8: Annotated[bool, typer.Option("--int8", help="INT8 Q/DQ ONNX (onnxruntime static quantisation, needs --calib-data).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 ONNX: backbone/FPN/towers fp16, I/O and head tail fp32.")] = False,
    calib_data: Annotated[Optional[Path], typer.Option(help="Folder of calibration images (recursive; use the TRAIN split).")] = None,
    calib_images: Annotated[int, typer.Option(help="Calibration images to use (seeded random choice when the folder has more).")] = 256,
    method: Annotated[str, typer.Option(help="Calibration: max, entropy or percentile.")] = "max",
    target: Annotated[str, typer.Option(help="tensorrt (int8 symmetric activations, S8S8) or onnxruntime (uint8 activations, U8S8: fast on CPU).")] = "tensorrt",
    exclude: Annotated[Optional[list[str]], typer.Option(help="Keep in float: node name, glob (/detector/backbone/layer1/*) or stage:NAME; repeatable.")] = None,
    quantize_head_tail: Annotated[bool, typer.Option("--quantize-head-tail", help="Also convert the head tail (DFL, DGQP, decode); for measurements only.")] = False,
    nms: Annotated[str, typer.Option(help="Attach NMS after converting: none, onnx, trt or plugin.")] = "none",
    per_tensor_weights: Annotated[bool, typer.Option("--per-tensor-weights", help="INT8: one scale per weight tensor (faster onnxruntime CPU kernels; default per channel).")] = False,
    sensitivity: Annotated[bool, typer.Option("--sensitivity", help="INT8: per-stage AP drop and a greedy float-stage list meeting --ap-budget (needs --eval-data).")] = False,
    eval_data: Annotated[Optional[Path], typer.Option(help="COCO-format folder to measure AP on (sensitivity).")] = None,
    eval_split: Annotated[Optional[str], typer.Option(help="Split of --eval-data (default: the only one / val).")] = None,
    eval_images: Annotated[Optional[int], typer.Option(help="Evaluate on the first N images only.")] = None,
    ap_budget: Annotated[float, typer.Option(help="Allowed AP drop in 0..1 units (0.01 = 1.0 AP point; default: the int8 row of eval/compare.py).")] = AP_BUDGETS["int8"],
    work_dir: Annotated[Optional[Path], typer.Option(help="Sensitivity variants and report (default: <out>.sensitivity/).")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Convert a pre-NMS ONNX to INT8 (Q/DQ) or FP16, recording the recipe in its metadata."""
    from gflv2_deploy.export.quantize import METHODS, TARGETS

    mode = _one_precision({"int8": int8, "fp16": fp16})
    if mode is None:
        raise UserError("choose --int8 or --fp16")
    if nms not in ("none", "onnx", "trt", "plugin"):
        raise UserError(f"--nms must be none, onnx, trt or plugin, got '{nms}'")
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if target not in TARGETS:
        raise UserError(f"--target must be one of {', '.join(TARGETS)}, got '{target}'")
    check_count("--calib-images", calib_images)
    check_count("--eval-images", eval_images)
    check_writable(out)
    if sensitivity:
        check_writable(work_dir or out.with_name(out.name + ".sensitivity"), folder=True)
    excluded = list(exclude or [])
    if mode == "fp16":
        if calib_data is not None or sensitivity:
            raise UserError("--calib-data and --sensitivity apply to --int8 only")
        from gflv2_deploy.export.fp16 import convert_fp16

        result = convert_fp16(onnx, out, exclude=excluded, keep_head_tail_fp32=not quantize_head_tail, nms=nms)
        p = result.precision
        say(f"wrote {out} (fp16: {p['fp16_nodes']} nodes fp16, {len(p['fp32_nodes'])} compute nodes kept fp32, "
                      f"{p['casts_inserted']} Casts, {result.seconds:.1f} s)")
        return
    if calib_data is None:
        raise UserError("--int8 needs --calib-data DIR (calibration images, e.g. the train split)")
    if sensitivity:
        if eval_data is None:
            raise UserError("--sensitivity needs --eval-data COCO_DIR to measure AP")
        from gflv2_deploy.export.sensitivity import format_report, run_sensitivity

        folder = work_dir or out.with_name(out.name + ".sensitivity")
        report = run_sensitivity(onnx, calib_data=calib_data, evaluate=_ap_evaluator(eval_data, eval_split, eval_images, threads),
                                 work_dir=folder, ap_budget=ap_budget, target=target, method=method,
                                 calib_images=calib_images, exclude=excluded, log=say)
        for line in format_report(report):
            say(line)
        say(f"report: {folder / 'sensitivity.json'}")
        excluded = excluded + report["recommended_exclude"]
        cache: Path | None = folder / "calib_ranges.json"
    else:
        cache = None
    from gflv2_deploy.export.quantize import quantize_int8

    result = quantize_int8(onnx, out, calib_data=calib_data, calib_images=calib_images, method=method, target=target,
                           exclude=excluded, keep_head_tail_float=not quantize_head_tail, nms=nms, calibration_cache=cache,
                           per_channel=not per_tensor_weights)
    p = result.precision
    say(f"wrote {out} (int8: activations {p['activations']}, weights {p['weights']}, {p['method']} on {p['calib_images']} images, "
                  f"{p['num_qdq_nodes']} Q/DQ nodes, {len(p['excluded_nodes'])} compute nodes float, {result.seconds:.1f} s)")


def _ap_evaluator(data: Path, split: str | None, limit: int | None, threads: int | None) -> Callable[[Path], float]:
    """evaluate(onnx) -> COCO AP (0..1) of that ONNX on ``data`` with onnxruntime (CPU)."""

    def evaluate(path: Path) -> float:
        from gflv2_deploy.runtime.evaluate import evaluate_on_coco
        from gflv2_deploy.runtime.ort_runner import load_onnx_detector

        detector = load_onnx_detector(path, providers=["CPUExecutionProvider"], threads=threads)
        metrics, _ = evaluate_on_coco(detector, data, split, limit=limit, progress=False)
        return float(metrics["stats"][0])

    return evaluate


def build_command(
    onnx: Annotated[Path, typer.Argument(help="ONNX written by gflv2-deploy (pre-NMS for TensorRT-RTX; fp32, fp16 or Q/DQ int8).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Engine file; its manifest goes to <out>.json.")],
    fp32: Annotated[bool, typer.Option("--fp32", help="Build an fp32 engine.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Build an FP16 engine (an fp32 ONNX is converted first).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Build an INT8 engine from a Q/DQ ONNX (or an fp32 one with --calib-data).")] = False,
    precision: Annotated[Optional[str], typer.Option(help="Same as --fp32/--fp16/--int8 (default: what the ONNX carries).")] = None,
    runtime: Annotated[str, typer.Option(help="tensorrt (10.x/11.x, builds on this machine's GPU) or tensorrt-rtx (ahead of time, no GPU needed).")] = "tensorrt",
    shapes: Annotated[Optional[list[str]], typer.Option(help="Optimisation profile: images:1x3x320x416/2x3x320x416/4x3x320x416 (min/opt/max); img_shape follows images.")] = None,
    workspace: Annotated[Optional[int], typer.Option(help="Builder workspace limit in MiB.")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache file, read and updated (TensorRT only).")] = None,
    rtx_targets: Annotated[Optional[str], typer.Option(help="TensorRT-RTX compute capabilities, e.g. 8.6,12.0 or 'current' (default: Ampere and later).")] = None,
    calib_data: Annotated[Optional[Path], typer.Option(help="With --int8 and an fp32 ONNX: calibration images to quantise it first.")] = None,
    calib_images: Annotated[int, typer.Option(help="Calibration images (with --calib-data).")] = 256,
    method: Annotated[str, typer.Option(help="Calibration method (with --calib-data): max, entropy or percentile.")] = "max",
    plugin_lib: Annotated[Optional[list[Path]], typer.Option("--plugin-lib", help="Plugin library to load before parsing "
                          "(repeatable; recorded with its SHA-256 in the manifest). Default for --nms plugin ONNX: "
                          "build/gflv2_nms/libgflv2_nms_trt<major>.so.")] = None,
) -> None:
    """Build a TensorRT / TensorRT-RTX engine and its manifest from an ONNX file."""
    from gflv2_deploy.engine.policy import PRECISION_CHOICES, build_from_onnx
    from gflv2_deploy.engine.profiles import parse_shapes

    flag = _one_precision({"fp32": fp32, "fp16": fp16, "int8": int8})
    if precision is not None and precision not in PRECISION_CHOICES:
        raise UserError(f"--precision must be fp32, fp16 or int8, got '{precision}'")
    if flag is not None and precision is not None and flag != precision:
        raise UserError(f"--{flag} contradicts --precision {precision}")
    precision = flag or precision
    profiles = parse_shapes(shapes or [])
    check_count("--calib-images", calib_images)
    check_writable(out)
    check_writable(f"{out}.json")
    if timing_cache is not None:
        check_writable(timing_cache)
    targets = [t.strip() for t in rtx_targets.split(",") if t.strip()] if rtx_targets else None
    manifest = build_from_onnx(onnx, out, precision=precision, runtime=runtime, shapes=profiles,
                               workspace_mib=workspace, timing_cache=timing_cache, rtx_targets=targets,
                               calib_data=calib_data, calib_images=calib_images, method=method,
                               log=say, plugin_libs=plugin_lib)
    target = manifest["target"]
    where = (", ".join(target.get("compute_capabilities", [])) if target.get("kind") == "aot"
             else f"{target.get('gpu_name')} ({target.get('compute_capability')})")
    say(f"wrote {out} ({manifest['runtime']['flavour']} {manifest['runtime']['version']}, {manifest['precision']}, "
        f"for {where}, {manifest['engine']['bytes'] / 2**20:.1f} MiB, {manifest['build']['seconds']:.1f} s)")
    say(f"manifest: {out}.json")


def register(app: typer.Typer) -> None:
    """Add ``quantize`` and ``build`` to ``app``."""
    app.command("quantize")(quantize_command)
    app.command("build")(build_command)
