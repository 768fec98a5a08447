"""``gflv2-deploy demo``: the whole toolchain on generated data, in minutes on a laptop CPU.

Steps (each output lands in ``out_dir``; finished steps are reused by a later run with the same settings):
1. ``data/``: the synthetic six-shape COCO dataset (``data.synth``);
2. ``train/latest.pth``: a short training of ``gflv2_tiny`` with ``train.loop.train`` (or ``checkpoint=``);
3. ``model.prenms.onnx`` and ``model.e2e.onnx`` (NMS in the graph): ``export.onnx.export_onnx``;
4. torch vs onnxruntime on the val split (``runtime.evaluate.compare_backends``): AP of each backend,
   pre-NMS tensor errors, detection matching, fp32 budgets -> ``compare_prenms.json``, ``compare_e2e.json``
   (the graphs select the configuration's ``nms_pre`` points per level, so the torch side of the comparison
   is the reference post-processing as configured);
5. COCO evaluation of the end-to-end graph on the val split with per-class AP, precision-recall curves, the
   confusion matrix and the most-missed images (``runtime.evaluate.evaluate_on_coco``) -> ``eval.json``;
6. latency of both backends in one run (``bench.backends.run_backend_benchmark``) -> ``bench.json``;
7. ``detections.jpg``: onnxruntime (end-to-end graph) detections on a val picture; ``report.html``: the two
   comparisons, the evaluation and the benchmark on one self-contained page (``report.build``); ``summary.json``.
The library returns the summary; the CLI prints it as one table and the report's path.

``quick=True`` (tests) shrinks every step (a dozen images, two training iterations, tiny inputs): it
checks that the pipeline runs, not that the model learned anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.errors import UserError

CONFIG = "gflv2_tiny"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo's steps (the defaults fit ~10 minutes on 2 idle CPU cores)."""

    images: int = 1000  # synthetic images, 20 % of them val
    train_iters: int = 600  # training iterations (batch ``batch_size``)
    batch_size: int = 8
    epochs: int = 6  # 800 train images / 8 = 100 iterations per epoch
    lr_steps: tuple[int, ...] = (5,)  # lr x 0.1 after epoch 5: a short schedule still ends with a low lr
    lr: float | None = None  # None: the configuration's
    bench_shape: tuple[int, int] | None = None  # None: the model's test input size (export.onnx.default_input_hw)
    bench_iterations: int = 20
    bench_warmup: int = 3


QUICK = DemoSettings(images=12, train_iters=2, batch_size=4, epochs=1, lr_steps=(), bench_shape=(128, 160),
                     bench_iterations=3, bench_warmup=1)


def _stamp_ok(path: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads(path.read_text()) == stamp
    except (OSError, ValueError):
        return False


def make_data(out: Path, settings: DemoSettings, seed: int) -> Path:
    """``out/data`` with ``settings.images`` synthetic images (reused when generated with the same settings)."""
    from gflv2_deploy.data.synth import generate_synthetic_coco

    data = out / "data"
    stamp = {"images": settings.images, "seed": seed}
    if not _stamp_ok(out / "data.json", stamp):
        generate_synthetic_coco(data, settings.images, seed, overwrite=True)
        write_json_atomic(out / "data.json", stamp)
    return data


def train_model(data: Path, work_dir: Path, settings: DemoSettings, seed: int, progress: bool = True) -> Path:
    """``work_dir/latest.pth`` trained by ``train.loop.train`` (reused when trained with the same settings)."""
    from gflv2_deploy.config import load_config
    from gflv2_deploy.train.loop import train

    stamp = {"config": CONFIG, "iters": settings.train_iters, "batch": settings.batch_size, "epochs": settings.epochs,
             "lr_steps": list(settings.lr_steps), "lr": settings.lr, "images": settings.images, "seed": seed}
    ckpt = work_dir / "latest.pth"
    if ckpt.is_file() and _stamp_ok(work_dir / "demo.json", stamp):
        return ckpt
    cfg = load_config(CONFIG)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr_steps=tuple(settings.lr_steps)))
    quick = settings.train_iters <= 10
    train(cfg, data, work_dir, epochs=settings.epochs, max_iters=settings.train_iters, batch_size=settings.batch_size,
          lr=settings.lr, seed=seed, eval_interval=0, checkpoint_interval=0, progress=progress,
          num_workers=0 if quick else None, log_interval=1 if quick else 10)
    write_json_atomic(work_dir / "demo.json", stamp)
    return ckpt


def run_demo(out_dir: str | os.PathLike[str], *, quick: bool = False, checkpoint: str | os.PathLike[str] | None = None,
             seed: int = 0, threads: int | None = None, progress: bool = True,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out_dir`` (see the module docstring); returns the summary written to ``summary.json``.

    checkpoint: a trained gflv2_tiny checkpoint (6 synthetic classes) to use instead of training one.
    threads: intra-op threads of torch (training included) and onnxruntime (default: each library's choice).
    """
    from gflv2_deploy.bench.backends import run_backend_benchmark
    from gflv2_deploy.eval.compare import default_budgets
    from gflv2_deploy.export.onnx import default_input_hw, export_onnx
    from gflv2_deploy.report.build import write_report
    from gflv2_deploy.report.plots import require_matplotlib
    from gflv2_deploy.runtime.evaluate import compare_backends, evaluate_on_coco
    from gflv2_deploy.runtime.factory import make_detector

    require_matplotlib()  # the report is the last step: fail before training, not after
    settings = QUICK if quick else DemoSettings()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # training too; a CLI process owns its thread setting
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 2)

    t = time.perf_counter()
    say(f"[1/7] synthetic data: {settings.images} images -> {out / 'data'}")
    data = make_data(out, settings, seed)
    step("data", t)

    t = time.perf_counter()
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"checkpoint not found: {ckpt}")
        say(f"[2/7] training skipped: using {ckpt}")
    else:
        say(f"[2/7] training {CONFIG}: {settings.train_iters} iterations of batch {settings.batch_size} "
            f"(reused when {out / 'train' / 'latest.pth'} was trained with the same settings)")
        ckpt = train_model(data, out / "train", settings, seed, progress)
    step("train", t)

    t = time.perf_counter()
    say("[3/7] export: pre-NMS graph and end-to-end graph (NMS in the graph), dynamic batch and size")
    onnx_files = {}
    for form, name in (("none", "model.prenms.onnx"), ("onnx", "model.e2e.onnx")):
        onnx_files[form] = out / name
        export_onnx(ckpt, onnx_files[form], nms=form, dynamic_batch=True, dynamic_hw=True)  # type: ignore[arg-type]
    step("export", t)

    t = time.perf_counter()
    say("[4/7] torch vs onnxruntime on the val split: AP, pre-NMS tensor errors, detection matching (fp32 budgets)")
    # quick: two training iterations may leave a model that detects nothing; the run checks the pipeline (pre-NMS
    # tensors are still compared), so the compare gate's minimum of reference detections is off, and says so
    budgets = default_budgets("fp32", min_ref_dets=0 if quick else None)
    torch_det = make_detector("torch", ckpt, threads=threads)
    reports = {}
    for form, label in (("none", "onnxruntime (pre-NMS + host NMS)"), ("onnx", "onnxruntime (NMS in graph)")):
        test = make_detector("onnxruntime", onnx_files[form], threads=threads, expose_pre_nms=True)
        reports[form] = compare_backends(torch_det, test, data_dir=data, split="val", budgets=budgets, batch_size=4,
                                         labels=("torch", label), progress=progress)
        write_json_atomic(out / f"compare_{'prenms' if form == 'none' else 'e2e'}.json", reports[form])
    step("compare", t)

    t = time.perf_counter()
    say("[5/7] COCO evaluation of the end-to-end graph on the val split (per class, PR curves, confusion matrix)")
    e2e_det = make_detector("onnxruntime", onnx_files["onnx"], threads=threads)
    metrics, _ = evaluate_on_coco(e2e_det, data, "val", batch_size=4, progress=progress, details=True)
    metrics["backend"], metrics["model"] = "onnxruntime", str(onnx_files["onnx"])
    write_json_atomic(out / "eval.json", metrics)
    step("eval", t)

    t = time.perf_counter()
    shape = settings.bench_shape or default_input_hw(torch_det.runner.config)
    say(f"[6/7] latency, torch vs onnxruntime in one run ({shape[0]}x{shape[1]}, batch 1)")
    bench = run_backend_benchmark(backends=("torch", "onnxruntime"), model=ckpt, shapes=[shape], batches=[1],
                                  iterations=settings.bench_iterations, warmup=settings.bench_warmup, threads=threads,
                                  cache_dir=out / "bench_cache")
    write_json_atomic(out / "bench.json", bench)
    step("bench", t)

    t = time.perf_counter()
    say("[7/7] detections picture (onnxruntime, end-to-end graph) and the HTML report")
    picture = draw_example(e2e_det, data, out / "detections.jpg")
    report = write_report([out / "compare_prenms.json", out / "compare_e2e.json", out / "eval.json", out / "bench.json"],
                          out / "report.html", title="gflv2-deploy demo: gflv2_tiny on synthetic data")
    step("report", t)

    rows = summary_rows(reports, bench)
    summary = {
        "out_dir": str(out), "quick": quick, "settings": dataclasses.asdict(settings), "checkpoint": str(ckpt),
        "onnx": {k: str(v) for k, v in onnx_files.items()}, "rows": rows, "picture": str(picture),
        "report": str(report.path), "report_bytes": report.bytes, "report_seconds": round(report.seconds, 2),
        "passed": all(r["passed"] for r in reports.values()),
        "failures": [f"{k}: {f}" for k, r in reports.items() for f in r["failures"]],
        "notes": sorted({n for r in reports.values() for n in r["notes"]}) + bench["notes"]
        + (["quick: a pipeline check; detections are compared only when the briefly trained model makes some"] if quick else []),
        "machine": bench["machine"], "seconds": {**timings, "total": round(time.perf_counter() - started, 2)},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def summary_rows(reports: dict[str, dict], bench: dict) -> list[dict[str, Any]]:
    """One row per backend: AP / AP50, parity against torch, latency (infer and end-to-end p50)."""
    lat = {r["backend"]: r for r in bench["comparison"]}

    def ap(stats: dict) -> dict[str, float]:
        return {"AP": stats["AP"], "AP50": stats["AP50"]}

    first = reports["none"]
    rows = [{"backend": "torch", "variant": f"reference, nms_pre {first['ref']['test_cfg']['nms_pre']}", **ap(first["ap"]["ref"]),
             "matched": None, "score_delta_max": None, "scores_max_abs": None, "boxes_max_abs": None, "passed": None,
             "infer_p50_ms": lat["torch"]["infer_p50_ms"], "e2e_p50_ms": lat["torch"]["e2e_p50_ms"], "speedup": 1.0}]
    for form, r in reports.items():
        tensors = r["tensors"] or {}
        rows.append({
            "backend": "onnxruntime", "variant": "pre-NMS graph + host NMS" if form == "none" else "NMS in graph",
            **ap(r["ap"]["test"]), "matched": r["detections"]["matched_fraction"],
            "score_delta_max": r["detections"]["score_delta_max"],
            "scores_max_abs": tensors.get("scores", {}).get("max_abs"), "boxes_max_abs": tensors.get("boxes", {}).get("max_abs"),
            "passed": r["passed"],
            "infer_p50_ms": lat["onnxruntime"]["infer_p50_ms"] if form == "none" else None,
            "e2e_p50_ms": lat["onnxruntime"]["e2e_p50_ms"] if form == "none" else None,
            "speedup": lat["onnxruntime"]["infer_speedup_vs_torch"] if form == "none" else None,
        })  # fmt: skip
    return rows


def draw_example(detector: Any, data: Path, path: Path, score_thr: float = 0.3) -> Path:
    """Draw ``detector``'s detections on the val picture with the most ground-truth objects; write ``path``."""
    from gflv2_deploy.data.coco import CocoDataset, find_coco_files
    from gflv2_deploy.data.draw import draw_detections
    from gflv2_deploy.data.image_io import read_image, write_image

    dataset = CocoDataset(*find_coco_files(data, "val"))
    image_id = max(dataset.image_ids, key=lambda i: len(dataset.annotations(i).boxes))
    image = read_image(dataset.image_path(image_id))
    dets = detector.detect([image])[0]
    write_image(path, draw_detections(image, dets, detector.class_names, score_thr))
    return path
