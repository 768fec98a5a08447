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


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.pth): ours or an official GFocalV2 one.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for <image>.json and <image>.jpg.")],
    config: ConfigOpt = None,
    score_thr: Annotated[float, typer.Option(help="Minimum score of drawn boxes (JSON keeps all).")] = 0.3,
    device: DeviceOpt = "cpu",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Detect objects in images: JSON detections and pictures with drawn boxes."""
    from gflv2_deploy.runtime.detector import Detector
    from gflv2_deploy.runtime.evaluate import predict_images
    from gflv2_deploy.runtime.torch_runner import TorchRunner, load_torch_model

    model = load_torch_model(checkpoint, config, allow_unsafe_pickle=allow_unsafe_pickle)
    detector = Detector(TorchRunner(model, device), model.config.test, model.config.class_names)
    written = predict_images(detector, images, out, score_thr=score_thr)
    console.print(f"wrote {len(written)} files to {out}")


@app.command("eval")
def eval_command(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Checkpoint to evaluate with the torch backend.")] = None,
    config: ConfigOpt = None,
    data: Annotated[Optional[Path], typer.Option(help="COCO-format folder: annotations/instances_<split>.json + <split>/ images.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split name when the folder has several.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground-truth instances JSON (with --results).")] = None,
    results: Annotated[Optional[Path], typer.Option(help="Existing COCO results JSON to evaluate (with --gt).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write metrics JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N images.")] = None,
    device: DeviceOpt = "cpu",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """COCO bbox AP: of an existing results file (--gt/--results) or of a model on a COCO folder (CKPT --data)."""
    from gflv2_deploy.atomic import write_json_atomic

    if results is not None or gt is not None:
        if results is None or gt is None or checkpoint is not None:
            raise UserError("evaluating a results file needs both --gt and --results, and no checkpoint")
        from gflv2_deploy.eval.coco_eval import evaluate_coco

        metrics = evaluate_coco(gt, results)
        label = results.name
    else:
        if checkpoint is None or data is None:
            raise UserError("give CKPT --data COCO_DIR to evaluate a model, or --gt ANN.json --results DETS.json")
        from gflv2_deploy.runtime.detector import Detector
        from gflv2_deploy.runtime.evaluate import evaluate_on_coco
        from gflv2_deploy.runtime.torch_runner import TorchRunner, load_torch_model

        model = load_torch_model(checkpoint, config, allow_unsafe_pickle=allow_unsafe_pickle)
        detector = Detector(TorchRunner(model, device), model.config.test, model.config.class_names)
        metrics, _ = evaluate_on_coco(detector, data, split, batch_size=batch_size, limit=limit)
        label = f"torch:{checkpoint.name}"
    console.print(metrics_table({label: metrics}))
    if out is not None:
        write_json_atomic(out, metrics)
        console.print(f"metrics written to {out}")


@app.command()
def bench(
    config: Annotated[list[str], typer.Option("--config", "-c", help="Configuration(s) to time (random weights unless --checkpoint).")] = ["gflv2_tiny"],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint to time instead of random weights.")] = None,
    shape: Annotated[list[str], typer.Option(help="Input HxW, multiples of 32; repeatable.")] = ["800x1344"],
    batch: Annotated[list[int], typer.Option(help="Batch size; repeatable.")] = [1],
    iterations: Annotated[int, typer.Option(help="Timed iterations per case.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations per case.")] = 2,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads (default: torch's choice).")] = None,
    device: DeviceOpt = "cpu",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
) -> None:
    """Latency of the torch model (forward pass, batch of normalised inputs): p50/p90/p99 and throughput."""
    from gflv2_deploy.bench.torch_bench import run_torch_benchmark

    report = run_torch_benchmark(configs=config, checkpoint=checkpoint, shapes=[_parse_shape(s) for s in shape],
                                 batches=batch, iterations=iterations, warmup=warmup, threads=threads, device=device)
    table = Table(title=f"latency ({report['machine']['processor']}, {report['machine']['cpu_count']} cores)")
    for col in ("backend", "model", "shape", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s"):
        table.add_column(col, justify="right")
    for r in report["results"]:
        s = r["stats"]
        table.add_row(r["backend"], r["model"], r["shape"], str(r["batch"]), f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}",
                      f"{s['p99_ms']:.1f}", f"{s['throughput_img_s']:.2f}")
    console.print(table)
    if out is not None:
        from gflv2_deploy.atomic import write_json_atomic

        write_json_atomic(out, report)


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"shape must look like 800x1344, got '{text}'") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise UserError(f"shape {text}: height and width must be positive multiples of 32")
    return h, w


def _register_command_groups() -> None:
    """Attach the commands of later pipeline stages (each module adds its own commands)."""
    from gflv2_deploy import cli_export

    cli_export.register(app)


_register_command_groups()


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line and exit status 2."""
    try:
        app()
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
