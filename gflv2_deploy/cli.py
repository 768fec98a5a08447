"""The ``gflv2-deploy`` command line: thin typer commands, each parsing options and calling one library function.

Heavy modules (torch, onnx) are imported inside commands so ``--help`` and ``--version`` stay fast.
User mistakes (``UserError``) print one line and exit with status 2; no traceback.
Command groups of later stages live in ``cli_*.py`` modules that register themselves on ``app``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from gflv2_deploy import __version__
from gflv2_deploy.errors import UserError

app = typer.Typer(
    name="gflv2-deploy",
    help="GFLV2 detector: PyTorch reference, ONNX export, TensorRT engines, parity checks and benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="Model configuration name (models/NAME.toml) or TOML path; needed for official checkpoints.")]
DeviceOpt = Annotated[str, typer.Option(help="torch device: cpu or cuda[:N].")]
UnsafeOpt = Annotated[bool, typer.Option("--allow-unsafe-pickle", help="Allow checkpoints that need arbitrary unpickling (only for files you trust).")]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"gflv2-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """GFLV2 from a PyTorch checkpoint to fast, verified inference engines."""


def metrics_table(rows: dict[str, dict], title: str = "COCO bbox") -> Table:
    """One row per backend/model: AP, AP50, AP75, APs, APm, APl."""
    table = Table(title=title)
    table.add_column("model")
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        table.add_column(name, justify="right")
    for label, m in rows.items():
        table.add_row(label, *(f"{v:.4f}" for v in m["stats"][:6]))
    return table


@app.command()
def configs() -> None:
    """List the model configurations shipped in models/."""
    from gflv2_deploy.config import available_configs, load_config

    table = Table(title="configurations")
    for col in ("name", "backbone", "neck", "head convs", "test scale"):
        table.add_column(col)
    for name in available_configs():
        cfg = load_config(name)
        table.add_row(name, f"ResNet-{cfg.backbone.depth} (width {cfg.backbone.base_width})", str(cfg.neck.out_channels),
                      f"{cfg.head.stacked_convs}x{cfg.head.feat_channels}", "x".join(map(str, cfg.test.scale)))
    console.print(table)


BackendOpt = Annotated[Optional[str], typer.Option("--backend", "-b", help="torch (a checkpoint), onnxruntime or openvino (an exported ONNX), "
                                                   "tensorrt or tensorrt-rtx (an engine); default: what the file is.")]


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Model: a checkpoint (.pth, ours or an official GFocalV2 one), an ONNX or an "
                                         "engine, or BACKEND:PATH (e.g. tensorrt-rtx:model.engine).")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <image>.json and <image>.jpg.")],
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    score_thr: Annotated[float, typer.Option(help="Minimum score of drawn boxes (JSON keeps all).")] = 0.3,
    device: DeviceOpt = "cpu",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Detect objects in images: JSON detections and pictures with drawn boxes."""
    from gflv2_deploy.runtime.evaluate import predict_images
    from gflv2_deploy.runtime.factory import make_detector, resolve_model

    name, path = resolve_model(model, backend)
    detector = make_detector(name, path, config, device, allow_unsafe_pickle=allow_unsafe_pickle)
    written = predict_images(detector, images, out, score_thr=score_thr)
    console.print(f"wrote {len(written)} files to {out}")


ThreadsOpt = Annotated[Optional[int], typer.Option(help="Intra-op threads of torch, onnxruntime and openvino (default: each library's choice).")]


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Checkpoint to evaluate with the torch backend.")] = None,
    backend: BackendOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="Model for --backend: a checkpoint (torch), an ONNX (onnxruntime) or an engine (tensorrt, tensorrt-rtx).")] = None,
    config: ConfigOpt = None,
    data: Annotated[Optional[Path], typer.Option(help="COCO-format folder: annotations/instances_<split>.json + <split>/ images.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split name when the folder has several.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth instances JSON (with --results).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Existing COCO results JSON to evaluate (with --gt).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write metrics JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N images.")] = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """COCO bbox AP: of a results file (--gt/--results), or of a model on a COCO folder (CKPT --data, or --backend B --model M --data)."""
    from gflv2_deploy.atomic import write_json_atomic

    if results is not None or gt is not None:
        if results is None or gt is None or checkpoint is not None or model is not None:
            raise UserError("evaluating a results file needs both --gt and --results, and no model")
        from gflv2_deploy.eval.coco_eval import evaluate_coco

        metrics = evaluate_coco(gt, results)
        label = results.name
    else:
        if checkpoint is not None and model is not None:
            raise UserError("give the model once: CKPT (torch) or --backend B --model PATH")
        model_path = model if model is not None else checkpoint
        if model_path is None or data is None:
            raise UserError("give CKPT --data COCO_DIR or --backend B --model PATH --data COCO_DIR to evaluate a model, "
                            "or --gt ANN.json --results DETS.json")
        from gflv2_deploy.runtime.evaluate import evaluate_on_coco
        from gflv2_deploy.runtime.factory import check_backend, infer_backend, make_detector

        name = check_backend(backend) if backend else infer_backend(model_path)
        detector = make_detector(name, model_path, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle)
        metrics, _ = evaluate_on_coco(detector, data, split, batch_size=batch_size, limit=limit)
        label = f"{name}:{model_path.name}"
        metrics["backend"], metrics["model"] = name, str(model_path)
    console.print(metrics_table({label: metrics}))
    if out is not None:
        write_json_atomic(out, metrics)
        console.print(f"metrics written to {out}")


@app.command()
def compare(
    ref: Annotated[str, typer.Option(help="Reference BACKEND:PATH, e.g. torch:run/latest.pth.")],
    test: Annotated[str, typer.Option(help="Model under test BACKEND:PATH, e.g. onnxruntime:run/latest.e2e.onnx.")],
    data: Annotated[Optional[Path], typer.Option(help="COCO-format folder (adds AP of both and the AP drop).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split name when the folder has several.")] = None,
    images: Annotated[Optional[list[Path]], typer.Option(help="Image files or folders instead of --data (no AP); repeatable.")] = None,
    config: ConfigOpt = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch (both backends get the same padded batch).")] = 1,
    scale: Annotated[Optional[str], typer.Option(help="Override the test scale of both, LONGxSHORT (e.g. 800x480).")] = None,
    precision: Annotated[str, typer.Option(help="Budget row of eval/compare.py: fp32, fp16 or int8.")] = "fp32",
    iou: Annotated[Optional[float], typer.Option(help="IoU for a detection match (default: the precision's, 0.99 for fp32).")] = None,
    min_matched: Annotated[Optional[float], typer.Option(help="Budget: matched fraction of reference detections (fp32: 0.995).")] = None,
    max_score_delta: Annotated[Optional[float], typer.Option(help="Budget: max |score delta| of a matched pair (fp32: 1e-4).")] = None,
    max_ap_drop: Annotated[Optional[float], typer.Option(help="Budget: AP_ref - AP_test (fp32: 0.001).")] = None,
    no_align: Annotated[bool, typer.Option("--no-align", help="Keep each model's own post-processing settings (nms_pre, thresholds).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")] = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Parity of two backends on the same images: pre-NMS tensor errors, matched detections, AP; exit 1 when a budget fails."""
    from gflv2_deploy.eval.compare import default_budgets
    from gflv2_deploy.runtime.evaluate import compare_backends
    from gflv2_deploy.runtime.factory import make_detector, parse_model_spec

    try:
        budgets = default_budgets(precision, iou_thr=iou, min_matched=min_matched, max_score_delta=max_score_delta,
                                  max_ap_drop=max_ap_drop)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    (rb, rp), (tb, tp) = parse_model_spec(ref), parse_model_spec(test)
    ref_det = make_detector(rb, rp, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle, expose_pre_nms=True)
    test_det = make_detector(tb, tp, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle, expose_pre_nms=True)
    result = compare_backends(ref_det, test_det, data_dir=data, split=split, image_paths=images, budgets=budgets,
                              batch_size=batch_size, limit=limit, scale=_parse_scale(scale) if scale else None,
                              labels=(f"{rb}:{rp.name}", f"{tb}:{tp.name}"), align=not no_align)
    if report is not None:
        from gflv2_deploy.atomic import write_json_atomic

        write_json_atomic(report, result)
    _print_comparison(result)
    if report is not None:
        console.print(f"report written to {report}", highlight=False)
    if not result["passed"]:
        for line in result["failures"]:
            err_console.print(f"[bold red]budget exceeded:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print("[bold green]parity: all budgets hold[/]")


def _print_comparison(r: dict) -> None:
    console.print(f"reference {r['ref']['label']}  vs  test {r['test']['label']}  ({r['settings']['images']} images, "
                  f"batch {r['settings']['batch_size']}, budgets {r['budgets']['precision']})", highlight=False, soft_wrap=True)
    for note in r["notes"]:
        console.print(f"  note: {note}", highlight=False, soft_wrap=True)
    if r["tensors"]:
        table = Table(title="pre-NMS tensors: |test - ref| and rel = |test - ref| / max(|ref|, atol)")
        for col in ("output", "max abs", "mean abs", "p99 abs", "max rel", "p99 rel", "atol", "rtol", "pass"):
            table.add_column(col, justify="right")
        for name, t in r["tensors"].items():
            table.add_row(name, *(f"{t[k]:.2e}" for k in ("max_abs", "mean_abs", "p99_abs", "max_rel", "p99_rel")),
                          f"{t['atol']:g}", f"{t['rtol']:g}", "yes" if t["passed"] else "[red]NO[/]")
        _print_wide(table)
    else:
        console.print(f"pre-NMS tensors: not compared ({r['tensors_note']})", highlight=False)
    d = r["detections"]
    table = Table(title=f"detections matched per image and class, IoU >= {d['iou_thr']}")
    for col in ("ref", "test", "matched", "matched frac", "unmatched ref", "unmatched test", "max |d score|", "mean |d score|"):
        table.add_column(col, justify="right")
    table.add_row(str(d["num_ref"]), str(d["num_test"]), str(d["matched"]), f"{d['matched_fraction']:.4f}", str(d["unmatched_ref"]),
                  str(d["unmatched_test"]), f"{d['score_delta_max']:.2e}", f"{d['score_delta_mean']:.2e}")
    _print_wide(table)
    if r["ap"]:
        _print_wide(metrics_table({r["ref"]["label"]: {"stats": list(r["ap"]["ref"].values())},
                                   r["test"]["label"]: {"stats": list(r["ap"]["test"].values())}}))
        console.print(f"AP drop (ref - test): {r['ap']['ap_drop']:.5f}", highlight=False)


def _print_wide(renderable: object) -> None:
    """Tables at full width: the terminal's, or 160 columns when the output is a file or a pipe (logs, CI)."""
    (console if console.is_terminal else Console(width=160)).print(renderable)


def _parse_scale(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"scale must look like 800x480 (long x short edge), got '{text}'") from None
    if a <= 0 or b <= 0:
        raise UserError(f"scale {text}: both edges must be positive")
    return max(a, b), min(a, b)


@app.command()
def bench(
    config: Annotated[Optional[list[str]], typer.Option("--config", "-c", help="Configuration(s) to time with random weights "
                                                        "(default gflv2_tiny), or the configuration of an official --model.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="Comma-separated backends timed in one run: torch, onnxruntime, "
                                         "openvino; tensorrt or tensorrt-rtx with an engine as --model.")] = "torch",
    model: Annotated[Optional[Path], typer.Option("--model", "--checkpoint", help="Checkpoint (.pth; exported on the fly for onnxruntime) "
                                                  "or ONNX (.onnx; torch then times random weights of its architecture).")] = None,
    shape: Annotated[list[str], typer.Option(help="Input HxW, multiples of 32; repeatable.")] = ["800x1344"],
    batch: Annotated[list[int], typer.Option(help="Batch size; repeatable.")] = [1],
    iterations: Annotated[int, typer.Option(help="Timed iterations per case and backend.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations per case and backend.")] = 2,
    rounds: Annotated[int, typer.Option(help="Backends alternate in this many blocks of iterations (fairness on a busy machine).")] = 2,
    threads: ThreadsOpt = None,
    image: Annotated[Optional[Path], typer.Option(help="Picture for the end-to-end timing (default: a generated scene).")] = None,
    onnx_nms: Annotated[str, typer.Option(help="NMS of on-the-fly ONNX exports: none (host NMS) or onnx (in the graph).")] = "none",
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where on-the-fly ONNX exports are kept "
                                                      "(default: $XDG_CACHE_HOME or ~/.cache, /gflv2-deploy/bench).")] = None,
    no_e2e: Annotated[bool, typer.Option("--no-e2e", help="Time only the network, not preprocessing + network + NMS.")] = False,
    device: DeviceOpt = "cpu",
    peak: Annotated[bool, typer.Option("--peak", help="Also measure this CPU's FP32 rate on the network's dominant layer: "
                                       "% of peak per backend and the ceiling on any speed-up over torch.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
) -> None:
    """Latency p50/p90/p99 and throughput per backend (network, and end to end with preprocessing and NMS), with speed-ups over torch."""
    from gflv2_deploy.bench.backends import run_backend_benchmark

    names = [b.strip() for b in backend.split(",") if b.strip()]
    from gflv2_deploy.cli_export import parse_hw

    shapes = [parse_hw(s) for s in shape]
    configs = config or [None if model is not None else "gflv2_tiny"]
    report = run_backend_benchmark(backends=names, model=model, config=configs, shapes=shapes, batches=batch,
                                   iterations=iterations, warmup=warmup, rounds=rounds, threads=threads, device=device,
                                   cache_dir=cache_dir, image=image, onnx_nms=onnx_nms, e2e=not no_e2e, peak=peak)
    m = report["machine"]
    if report["load_warning"]:
        err_console.print(f"warning: {report['load_warning']}", highlight=False)
    _print_wide(_bench_table(report, f"latency ms ({m['processor']}, {m['cpu_count']} cores, torch threads {m['torch_threads']}, "
                                       f"onnxruntime threads {m['onnxruntime_intra_op_threads']})"))
    console.print(f"CPU: {m['processor']}; flags: {', '.join(m['cpu_flags']) or 'none of avx2/avx512/vnni/amx'}; "
                  f"load average {m.get('load_average_at_start_1_5_15min')} at start, {m.get('load_average_1_5_15min')} at end",
                  highlight=False)
    for r in report["results"]:
        for note in r["consistency"]:
            console.print(f"! {r['backend']} {r['model']} {r['shape']} batch {r['batch']}: {note}", highlight=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False)
    if "peak" in report:
        rates = ", ".join(f"{b} {v:.0f}" for b, v in report["peak"]["gflop_s"].items())
        console.print(f"peak FP32 GFLOP/s (3x3 conv 256->256 on 80x80 alone): {rates}; "
                      "'max x torch' = peak / torch's GFLOP/s, a bound on FP32 speed-ups on this machine", highlight=False)
    if out is not None:
        from gflv2_deploy.atomic import write_json_atomic

        write_json_atomic(out, report)
        console.print(f"report written to {out}", highlight=False)


def _bench_table(report: dict, title: str) -> Table:
    table = Table(title=title)
    peak = "peak" in report
    for col in ("backend", "model", "shape", "batch", "p50", "p90", "p99", "img/s", "e2e p50", "e2e p99", "e2e img/s",
                "e2e/net", "x torch", "e2e x torch", "GFLOP/s") + (("% peak", "max x torch") if peak else ()):
        table.add_column(col, justify="right")
    speed = {(c["backend"], c["model"], c["shape"], c["batch"]): c for c in report["comparison"]}
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in report["results"]:
        s, e = r["infer"], r["e2e"] or {}
        c = speed[(r["backend"], r["model"], r["shape"], r["batch"])]
        flag = "" if c["consistent"] else " !"  # explained below the table
        table.add_row(r["backend"] + flag, r["model"], r["shape"], str(r["batch"]), f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}",
                      f"{s['p99_ms']:.1f}", f"{s['throughput_img_s']:.2f}", fmt(e.get("p50_ms"), ".1f"), fmt(e.get("p99_ms"), ".1f"),
                      fmt(e.get("throughput_img_s"), ".2f"), fmt(c["e2e_over_network"], ".2f"),
                      fmt(c["infer_speedup_vs_torch"], ".2f"), fmt(c["e2e_speedup_vs_torch"], ".2f"),
                      fmt(r.get("infer_gflop_s"), ".0f"),
                      *((fmt(c["fraction_of_peak"] and 100 * c["fraction_of_peak"], ".0f"), fmt(c["speedup_ceiling_vs_torch"], ".2f"))
                        if peak else ()))
    return table


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (data, checkpoint, ONNX, reports, picture).")] = Path("out/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes everywhere (a pipeline check, about a minute).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Use this trained gflv2_tiny checkpoint instead of training one.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    threads: ThreadsOpt = None,
) -> None:
    """End to end on generated data: synthesise, train gflv2_tiny briefly, export, compare torch vs onnxruntime, benchmark, draw."""
    from gflv2_deploy.demo import run_demo

    summary = run_demo(out, quick=quick, checkpoint=checkpoint, seed=seed, threads=threads,
                       say=lambda text: console.print(text, highlight=False))
    table = Table(title=f"gflv2_tiny on synthetic val ({summary['seconds']['total']:.0f} s)")
    for col in ("backend", "variant", "AP", "AP50", "matched", "max |d score|", "scores err", "boxes err", "parity",
                "p50 ms", "e2e p50 ms", "x torch"):
        table.add_column(col, justify="right")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in summary["rows"]:
        parity = "-" if r["passed"] is None else ("pass" if r["passed"] else "[red]FAIL[/]")
        table.add_row(r["backend"], r["variant"], f"{r['AP']:.4f}", f"{r['AP50']:.4f}", fmt(r["matched"], ".4f"),
                      fmt(r["score_delta_max"], ".2g"), fmt(r["scores_max_abs"], ".2g"), fmt(r["boxes_max_abs"], ".2g"), parity,
                      fmt(r["infer_p50_ms"], ".1f"), fmt(r["e2e_p50_ms"], ".1f"), fmt(r["speedup"], ".2f"))
    _print_wide(table)
    for note in summary["notes"]:
        console.print(f"note: {note}", highlight=False)
    console.print(f"picture: {summary['picture']}; reports and summary.json in {out}", highlight=False)
    if not summary["passed"]:
        for line in summary["failures"]:
            err_console.print(f"[bold red]budget exceeded:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)




def _register_command_groups() -> None:
    """Attach the commands of later pipeline stages (each module adds its own commands)."""
    from gflv2_deploy import cli_engine, cli_export, cli_train, cli_triton

    for module in (cli_train, cli_export, cli_engine, cli_triton):
        module.register(app)


_register_command_groups()


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app()
    except UserError as exc:
        from rich.markup import escape  # messages hold [extras] that rich would take for markup and drop

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # python -m gflv2_deploy.cli
    main()
