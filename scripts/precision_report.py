"""Accuracy and CPU latency of every precision, in one table (markdown + JSON).

AP (COCO bbox AP@[.5:.95], reported in points 0-100) of one checkpoint on a COCO-format split for:
torch fp32, onnxruntime fp32 (pre-NMS ONNX), FP16 ONNX, INT8 Q/DQ ONNX for TensorRT (S8S8) and for
onnxruntime (U8S8), each with its drop against onnxruntime fp32 and the budget it must meet
(FP16 <= 0.2 AP, INT8 <= 1.0 AP). Every ONNX runs in onnxruntime (CPU) through the same Detector and
evaluation code as `gflv2-deploy eval --backend onnxruntime`.

Latency: onnxruntime CPU, fp32 vs INT8 U8S8 of gflv2_r50_fpn at 640x640 (random weights, exported on
the fly; latency does not depend on the weights), with per-channel weights (the recipe) and per-tensor
weights (the CPU-speed option), the three sessions timed alternately in one process, once per thread
count; ratios of the medians. The per-tensor variant's AP is in the accuracy table too.

    .venv/bin/python scripts/precision_report.py --checkpoint out/tiny/latest.pth --data out/synth \
        --out-dir out/precision_report
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gflv2_deploy.atomic import write_json_atomic, write_text_atomic
from gflv2_deploy.bench.timing import machine_info
from gflv2_deploy.data.coco import find_coco_files
from gflv2_deploy.eval.compare import AP_BUDGETS
from gflv2_deploy.export.fp16 import convert_fp16
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.export.quantize import quantize_int8
from gflv2_deploy.runtime.detector import Detector
from gflv2_deploy.runtime.evaluate import evaluate_on_coco
from gflv2_deploy.runtime.ort_runner import load_onnx_detector
from gflv2_deploy.model.load import load_torch_model
from gflv2_deploy.runtime.torch_runner import TorchRunner

BUDGETS = {name: AP_BUDGETS[name] for name in ("fp16", "int8")}  # AP drop in 0..1 units, from THE budget table


def _ap(detector: Detector, data: Path, split: str, limit: int | None) -> tuple[float, float]:
    started = time.perf_counter()
    metrics, _ = evaluate_on_coco(detector, data, split, limit=limit, progress=False)
    return float(metrics["stats"][0]), time.perf_counter() - started


def accuracy_rows(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    model = load_torch_model(args.checkpoint, None)
    rows: list[dict[str, Any]] = []
    ap, secs = _ap(Detector(TorchRunner(model), model.config.test, model.config.class_names), args.data, args.split, args.limit)
    rows.append({"name": "torch fp32", "precision": "fp32", "backend": "torch", "ap": ap, "eval_s": secs})
    print(f"torch fp32            AP {100 * ap:6.2f}  ({secs:.0f} s)", flush=True)
    prenms = work / "model.prenms.onnx"
    export_onnx(model, prenms, dynamic_batch=True, dynamic_hw=True)  # per-batch padding as the torch Detector
    calib_dir = find_coco_files(args.data, args.calib_split)[1]
    files = {"onnxruntime fp32": (prenms, "fp32", None)}
    convert_fp16(prenms, work / "model.fp16.onnx")
    files["onnxruntime FP16 ONNX"] = (work / "model.fp16.onnx", "fp16", None)
    cache = work / "model.calib_ranges.{}.json"
    for target, per_channel, label in (("tensorrt", True, "INT8 Q/DQ S8S8 (TensorRT)"),
                                       ("onnxruntime", True, "INT8 Q/DQ U8S8 (onnxruntime)"),
                                       ("onnxruntime", False, "INT8 Q/DQ U8S8 per-tensor weights (onnxruntime)")):
        out = work / f"model.int8.{target}{'' if per_channel else '.per-tensor'}.onnx"
        ranges = Path(str(cache).format(target))  # one calibration per target, shared by its variants
        if per_channel:
            ranges.unlink(missing_ok=True)
        result = quantize_int8(prenms, out, calib_data=calib_dir, calib_images=args.calib_images, method=args.method,
                               target=target, per_channel=per_channel, calibration_cache=ranges)
        files[label] = (out, "int8", result.precision)
    for label, (path, precision, recipe) in files.items():
        ap, secs = _ap(load_onnx_detector(path, providers=["CPUExecutionProvider"], threads=args.threads), args.data,
                       args.split, args.limit)
        rows.append({"name": label, "precision": precision, "backend": "onnxruntime", "onnx": str(path), "ap": ap,
                     "eval_s": secs, "recipe": recipe})
        print(f"{label:<48} AP {100 * ap:6.2f}  ({secs:.0f} s)", flush=True)
    reference = next(r["ap"] for r in rows if r["name"] == "onnxruntime fp32")
    for row in rows:
        row["drop_vs_ort_fp32"] = reference - row["ap"]
        budget = BUDGETS.get(row["precision"])
        row["budget"] = budget
        row["within_budget"] = None if budget is None else row["drop_vs_ort_fp32"] <= budget
    return rows


def latency_rows(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """fp32 vs INT8 U8S8 (per-channel: the recipe; per-tensor: the CPU-speed option) of R-50 at 640x640,
    the three sessions timed alternately in one run, once per thread count."""
    import onnxruntime as ort
    import torch

    from gflv2_deploy import build_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("gflv2_r50_fpn").eval()
    cfg = dataclasses.replace(model.config, test=dataclasses.replace(model.config.test, scale=(640, 640)))
    files = {"fp32": work / "r50_640.prenms.onnx", "int8": work / "r50_640.int8.onnxruntime.onnx",
             "int8_per_tensor": work / "r50_640.int8.onnxruntime.per-tensor.onnx"}
    export_onnx(model, files["fp32"], config=cfg, dynamic_batch=False, input_hw=(640, 640))
    calib_dir = find_coco_files(args.data, args.calib_split)[1]
    cache = work / "r50_640.calib_ranges.json"
    cache.unlink(missing_ok=True)
    for name, per_channel in (("int8", True), ("int8_per_tensor", False)):
        quantize_int8(files["fp32"], files[name], calib_data=calib_dir, calib_images=args.latency_calib_images,
                      method=args.method, target="onnxruntime", per_channel=per_channel, calibration_cache=cache)
    rng = np.random.default_rng(0)
    feed = {"images": rng.standard_normal((1, 3, 640, 640)).astype(np.float32),
            "img_shape": np.array([[640, 640]], np.float32)}
    rows = []
    for threads in args.latency_threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        sessions = {name: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for name, p in files.items()}
        for session in sessions.values():
            for _ in range(2):
                session.run(None, feed)
        samples: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.latency_runs):  # alternate, so load changes hit every session alike
            for name, session in sessions.items():
                started = time.perf_counter()
                session.run(None, feed)
                samples[name].append(1000 * (time.perf_counter() - started))
        ms = {name: float(np.median(v)) for name, v in samples.items()}
        row = {"model": "gflv2_r50_fpn (random weights)", "input": "1x3x640x640", "threads": threads,
               "runs": args.latency_runs, "fp32_ms": ms["fp32"], "int8_u8s8_ms": ms["int8"],
               "int8_u8s8_per_tensor_ms": ms["int8_per_tensor"], "speedup": ms["fp32"] / ms["int8"],
               "speedup_per_tensor": ms["fp32"] / ms["int8_per_tensor"], "samples_ms": samples}
        print(f"R-50 640x640 onnxruntime CPU, {threads} thread(s): fp32 {ms['fp32']:.0f} ms, INT8 U8S8 {ms['int8']:.0f} ms "
              f"({row['speedup']:.2f}x), per-tensor {ms['int8_per_tensor']:.0f} ms ({row['speedup_per_tensor']:.2f}x)", flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], latency: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"AP on {args.data} split '{args.split}' ({args.checkpoint}); drop vs onnxruntime fp32, in AP points (0-100).",
             "", "| model | precision | backend | AP | drop | budget | ok |", "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        budget = "" if r["budget"] is None else f"{100 * r['budget']:.1f}"
        ok = "" if r["within_budget"] is None else ("yes" if r["within_budget"] else "NO")
        lines.append(f"| {r['name']} | {r['precision']} | {r['backend']} | {100 * r['ap']:.2f} | "
                     f"{100 * r['drop_vs_ort_fp32']:+.2f} | {budget} | {ok} |")
    if latency:
        lines += ["", "| onnxruntime CPU latency, median of alternating runs | threads | fp32 ms | INT8 U8S8 ms | speedup "
                  "| INT8 U8S8 per-tensor ms | speedup |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in latency:
            lines.append(f"| {r['model']}, {r['input']}, {r['runs']} runs | {r['threads']} | {r['fp32_ms']:.0f} | "
                         f"{r['int8_u8s8_ms']:.0f} | {r['speedup']:.2f}x | {r['int8_u8s8_per_tensor_ms']:.0f} | "
                         f"{r['speedup_per_tensor']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint (gflv2-deploy format)")
    parser.add_argument("--data", type=Path, required=True, help="COCO-format folder with the eval and calibration splits")
    parser.add_argument("--split", default="val", help="evaluation split")
    parser.add_argument("--calib-split", default="train", help="calibration split (never the evaluation images)")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--method", default="max", choices=["max", "entropy", "percentile"])
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads for the AP runs")
    parser.add_argument("--latency-threads", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2],
                        help="thread counts of the latency runs, e.g. 1,2")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--latency-calib-images", type=int, default=16)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    work = args.out_dir
    work.mkdir(parents=True, exist_ok=True)
    rows = accuracy_rows(args, work)
    latency = [] if args.skip_latency else latency_rows(args, work)
    table = markdown(rows, latency, args)
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": machine_info(), "accuracy": rows, "latency": latency}
    write_json_atomic(work / "precision_report.json", report)
    write_text_atomic(work / "precision_report.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
