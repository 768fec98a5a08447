"""``gflv2-deploy configs``, ``predict`` and ``eval``: the PyTorch reference (and any backend) on pictures and COCO data.

Each command checks its output location first (``atomic.check_writable``), then calls one library function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import (BackendOpt, BatchSizeOpt, ConfigOpt, DeviceOpt, HtmlOpt, LimitOpt, SplitOpt,
                                      Tf32Opt, ThreadsOpt, UnsafeOpt, cell, check_count, check_html, check_range, console,
                                      metrics_table, print_wide, say, say_error, write_html)
from gflv2_deploy.errors import UserError


def configs() -> None:
    """List the model configurations shipped with the package (gflv2_deploy/configs/)."""
    from gflv2_deploy.config import available_configs, load_config

    try:  # counting needs the model, so torch; a deployment install ([onnxruntime]) lists the rest
        from gflv2_deploy.model.build import count_parameters
    except ImportError:
        count_parameters = None
    table = Table(title="configurations")
    for col in ("name", "backbone", "neck", "head convs", "parameters", "test scale", "ONNX opset"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name in available_configs():
        cfg = load_config(name)
        table.add_row(cell(name), cell(cfg.backbone.describe()), str(cfg.neck.out_channels),
                      f"{cfg.head.stacked_convs}x{cfg.head.feat_channels}",
                      f"{count_parameters(cfg):,}" if count_parameters else "-",
                      "x".join(map(str, cfg.test.scale)), "19 (DeformConv)" if cfg.backbone.has_dcn else "17")
    print_wide(table)
    if count_parameters is None:
        say("parameters: not counted (torch is not installed: pip install 'gflv2-deploy[torch]')")


def predict(
    model: Annotated[str, typer.Argument(help="Model: a checkpoint (.pth, ours or an official GFocalV2 one), an ONNX or an "
                                         "engine, or BACKEND:PATH (e.g. tensorrt-rtx:model.engine).")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <image>.json and <image>.jpg.")],
    backend: BackendOpt = None,
    config: ConfigOpt = None,
    score_thr: Annotated[float, typer.Option(help="Minimum score of drawn boxes (JSON keeps all).")] = 0.3,
    device: DeviceOpt = "cpu",
    tf32: Tf32Opt = False,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Detect objects in images: JSON detections and pictures with drawn boxes."""
    check_range("--score-thr", score_thr, 0.0, 1.0)
    check_writable(out, folder=True)
    from gflv2_deploy.runtime.evaluate import predict_images, prediction_outputs
    from gflv2_deploy.runtime.factory import make_detector, resolve_model

    prediction_outputs(images, out)  # before the model loads: never over an input picture
    name, path = resolve_model(model, backend)
    detector = make_detector(name, path, config, device, allow_unsafe_pickle=allow_unsafe_pickle, tf32=tf32)
    written = predict_images(detector, images, out, score_thr=score_thr)
    say(f"wrote {len(written)} files to {out}")


def eval_command(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Checkpoint to evaluate with the torch backend.")] = None,
    backend: BackendOpt = None,
    model: Annotated[Optional[Path], typer.Option(help="Model for --backend (what each backend runs is listed under --backend).")] = None,
    config: ConfigOpt = None,
    data: Annotated[Optional[Path], typer.Option(help="COCO-format folder: annotations/instances_<split>.json + <split>/ images.")] = None,
    split: SplitOpt = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth instances JSON (with --results).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Existing COCO results JSON to evaluate (with --gt).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write metrics JSON here (with per-class AP, "
                                                "precision-recall curves, confusion matrix: what the report draws).")] = None,
    html: HtmlOpt = None,
    batch_size: BatchSizeOpt = 1,
    limit: LimitOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    tf32: Tf32Opt = False,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """COCO bbox AP: of a results file (--gt/--results), or of a model on a COCO folder (CKPT --data, or --backend B --model M --data)."""
    from gflv2_deploy.atomic import write_json_atomic

    check_count("--batch-size", batch_size)
    check_count("--limit", limit)
    if out is not None:
        check_writable(out)
    check_html(html)
    details = out is not None or html is not None  # what a report draws; the terminal table needs none of it
    if results is not None or gt is not None:
        if results is None or gt is None or checkpoint is not None or model is not None or tf32:
            raise UserError("evaluating a results file needs both --gt and --results, and no model (nor --tf32)")
        from gflv2_deploy.eval.coco_eval import evaluate_coco

        metrics = evaluate_coco(gt, results, details=details)
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
        detector = make_detector(name, model_path, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle, tf32=tf32)
        metrics, _ = evaluate_on_coco(detector, data, split, batch_size=batch_size, limit=limit, details=details)
        label = f"{name}:{model_path.name}"
        metrics["backend"], metrics["model"] = name, str(model_path)
        if hasattr(detector.runner, "math"):  # the torch reference: fp32, or tf32 when asked for
            metrics["math"] = detector.runner.math
    console.print(metrics_table({label: metrics}))
    if metrics["num_detections"] == 0:
        say_error("warning:", f"0 detections on the {metrics['num_images']} image(s) evaluated: the AP of 0 means nothing "
                  "was predicted (an untrained model, or pictures unlike its training data?)")
    if out is not None:
        write_json_atomic(out, metrics)
        say(f"metrics written to {out}")
    write_html(html, metrics, out.name if out is not None else label, out)


def register(app: typer.Typer) -> None:
    """Add ``configs``, ``predict`` and ``eval`` to ``app``."""
    app.command("configs")(configs)
    app.command("predict")(predict)
    app.command("eval")(eval_command)
