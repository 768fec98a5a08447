"""``gflv2-deploy train`` and ``gflv2-deploy data synth``: training on COCO-format data, synthetic data.

Each command checks its output folder, parses options and calls one library function (``train.loop.train``, ``data.synth.generate_synthetic_coco``); torch is imported
inside the commands. Multi-process training runs the same command under torchrun, e.g.
``torchrun --nproc_per_node 2 cli.py train --config gflv2_tiny --data DIR --work-dir DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import UnsafeOpt, say
from gflv2_deploy.errors import UserError


def train_command(
    config: Annotated[str, typer.Option("--config", "-c", help="Model configuration name (gflv2-deploy configs lists them) or TOML path; its 'train' table is the recipe.")],
    data: Annotated[Path, typer.Option(help="COCO-format folder: annotations/instances_{train,val}.json + train/ and val/ images.")],
    work_dir: Annotated[Path, typer.Option("--work-dir", "-w", help="Output folder: log.jsonl, latest.pth, epoch_N.pth, loss_curve.png.")],
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default: the configuration's).")] = None,
    max_iters: Annotated[Optional[int], typer.Option(help="Stop after this many iterations in all.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per iteration over all processes (default: the configuration's).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate (default: the configuration's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and augmentation.")] = 0,
    resume: Annotated[Optional[Path], typer.Option(help="Continue exactly from latest.pth / epoch_N.pth of an earlier run.")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu or cuda (under torchrun each process takes cuda:LOCAL_RANK).")] = "cpu",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision (CUDA only).")] = False,
    backbone_weights: Annotated[Optional[Path], typer.Option(help="ImageNet state dict (.pth) for the backbone: torchvision names "
                                                         "for ResNet, mmdet's for ResNeXt / Res2Net; fc.* is ignored, "
                                                         "deformable convs keep zero offsets.")] = None,
    grad_clip: Annotated[Optional[float], typer.Option(help="Clip the gradient norm to this value (0 = off; default: the configuration's).")] = None,
    eval_interval: Annotated[int, typer.Option(help="Evaluate on the val split every N epochs (0 = never).")] = 1,
    checkpoint_interval: Annotated[int, typer.Option(help="Write epoch_N.pth every N epochs (0 = only latest.pth at the end).")] = 1,
    log_interval: Annotated[int, typer.Option(help="Iterations per log.jsonl record.")] = 10,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading processes per training process (default: the configuration's).")] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Use deterministic algorithms only (repeatable, slower on GPU).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar (terminals only).")] = True,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Train GFLV2 (ATSS, QFL/DFL/GIoU, SGD + warmup + steps) on a COCO-format folder; single process or torchrun."""
    from gflv2_deploy.config import load_config
    from gflv2_deploy.runtime.evaluate import coco_evaluator
    from gflv2_deploy.train.loop import train

    if max_iters is not None and max_iters < 1:
        raise UserError(f"--max-iters must be at least 1, got {max_iters}")
    check_writable(work_dir, folder=True)
    summary = train(
        load_config(config), data, work_dir, epochs=epochs, max_iters=max_iters, batch_size=batch_size, lr=lr, seed=seed,
        resume=resume, eval_interval=eval_interval, checkpoint_interval=checkpoint_interval, device=device, amp=amp,
        backbone_weights=backbone_weights, allow_unsafe_pickle=allow_unsafe_pickle, grad_clip=grad_clip, deterministic=deterministic, log_interval=log_interval,
        progress=progress, num_workers=workers, evaluate=coco_evaluator(data, "val") if eval_interval > 0 else None,
    )
    if summary["rank"] != 0:
        return  # under torchrun only rank 0 reports
    _print_summary(summary, work_dir)


def _print_summary(summary: dict, work_dir: Path) -> None:
    metrics = summary.get("metrics")
    lines = [f"trained {summary['config']} for {summary['iterations']} iterations ({summary['epochs']} epochs, batch "
             f"{summary['total_batch']}, {summary['world_size']} process(es)) in {summary['wall_time_s']:.0f} s, "
             f"{summary['images_per_s']} images/s"]
    if metrics is not None:
        from gflv2_deploy.eval.coco_eval import STAT_NAMES

        named = dict(zip(STAT_NAMES, metrics["stats"]))
        lines.append("val: " + " ".join(f"{k} {named[k]:.4f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    lines.append(f"checkpoint {summary['checkpoint']}, log {summary['log']}, loss curve {summary['loss_curve']}")
    for line in lines:
        say(line)
    from gflv2_deploy.atomic import write_json_atomic

    write_json_atomic(work_dir / "summary.json", summary)


def synth_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (COCO layout: annotations/, train/, val/).")],
    images: Annotated[int, typer.Option(help="Number of images (train + val).")] = 500,
    seed: Annotated[int, typer.Option(help="Seed: the same arguments give byte-identical files.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the images in the val split.")] = 0.2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty output folder.")] = False,
) -> None:
    """Generate the synthetic COCO-format dataset of six shape classes (disc, rectangle, triangle, ring, cross, star)."""
    from gflv2_deploy.data.synth import generate_synthetic_coco

    check_writable(out, folder=True)
    summary = generate_synthetic_coco(out, images, seed, val_fraction=val_fraction, overwrite=overwrite, progress=True)
    for split, info in summary["splits"].items():
        say(f"{split}: {info['images']} images, {info['annotations']} boxes, {info['empty_images']} without objects")
    say(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and the ``data`` group (``data synth``) to ``app``."""
    app.command("train")(train_command)
    data_app = typer.Typer(help="Datasets: generate the synthetic COCO-format shapes dataset.", no_args_is_help=True)
    data_app.command("synth")(synth_command)
    app.add_typer(data_app, name="data")
