"""The training loop of the official recipe (spec §4), single process or DDP under ``torchrun``.

One iteration: lr from the schedule -> forward (autocast on CUDA with ``amp``) -> ``gflv2_loss`` on the
raw head outputs -> backward -> optional grad-norm clipping -> SGD step. Every ``log_interval``
iterations a record goes to ``work_dir/log.jsonl``; at the end of every ``eval_interval``-th epoch the
model is scored by the caller's ``evaluate`` (the CLI's: the inference path itself, ``Detector`` +
``TorchRunner`` with the model's test config, on the val split); every ``checkpoint_interval``-th epoch writes ``epoch_N.pth`` and ``latest.pth``;
the end of training writes ``latest.pth`` and ``loss_curve.png``. Only rank 0 writes files and evaluates.

Batch semantics: ``batch_size`` is the TOTAL images per iteration; each of W processes takes B / W of
them (see ``train.dataset``), ``gflv2_loss`` averages its normalisers over processes, and BatchNorm in
training mode takes its statistics over all processes (``train.sync_bn``), so W processes compute the
gradient of the single-process batch B.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.config import ModelConfig
from gflv2_deploy.data.transforms import TrainTransform
from gflv2_deploy.eval.coco_eval import STAT_NAMES
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.build import build_from_config, resolve_config
from gflv2_deploy.train.console import Printer, StopOnInterrupt, TrainProgress
from gflv2_deploy.train.dataset import EpochBatchSampler, batch_to_tensors, build_train_loader, load_train_dataset
from gflv2_deploy.train.distributed import DistContext, barrier, init_distributed, mean_over_processes, shutdown_distributed
from gflv2_deploy.train.losses import gflv2_loss
from gflv2_deploy.train.pretrained import load_backbone_weights
from gflv2_deploy.train.schedule import WarmupStepSchedule
from gflv2_deploy.train.state import Position, load_training_checkpoint, save_training_checkpoint
from gflv2_deploy.train.sync_bn import synchronise_batchnorm
from gflv2_deploy.train.training_log import LOSS_KEYS, TrainingLog, plot_loss_curve, read_log

__all__ = ["Evaluator", "train"]

Evaluator = Callable[[torch.nn.Module, ModelConfig], dict[str, Any]]
"""Evaluation during training, called on rank 0 with the model in eval mode: COCO bbox metrics
``{"stats": the 12 COCO numbers, "num_images", "split"}``. Given by the caller (the CLI passes
``runtime.evaluate.coco_evaluator``) so that training does not import the inference layer."""


def train(
    cfg: ModelConfig | str,
    data_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    max_iters: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    resume: str | os.PathLike[str] | None = None,
    eval_interval: int = 1,
    checkpoint_interval: int = 1,
    device: str = "cpu",
    amp: bool = False,
    backbone_weights: str | os.PathLike[str] | None = None,
    allow_unsafe_pickle: bool = False,
    grad_clip: float | None = None,
    deterministic: bool = False,
    log_interval: int = 10,
    progress: bool = True,
    num_workers: int | None = None,
    train_split: str = "train",
    evaluate: Evaluator | None = None,
) -> dict[str, Any]:
    """Train a GFLV2 model on a COCO-layout folder; returns a summary dict (rank 0 has metrics and paths).

    cfg: configuration (name, path or object); its ``[train]`` section is the recipe and the keyword
        arguments ``epochs``, ``batch_size`` (total over processes), ``lr``, ``grad_clip`` (0 = off),
        ``num_workers`` override it. The head's class count comes from the dataset's categories.
    data_dir: ``annotations/instances_{train,val}.json`` + ``{train,val}/`` images.
    max_iters: stop after this many iterations in all (None: run the epochs).
    resume: a ``latest.pth`` / ``epoch_N.pth`` of an earlier run with the same seed and batch size;
        training continues exactly where it stopped (model, SGD momentum, schedule, data order, RNG).
    evaluate: how the model is evaluated (``runtime.evaluate.coco_evaluator`` gives the inference path's
        own COCO evaluation); None: no evaluation.
    eval_interval / checkpoint_interval: in epochs; 0 disables periodic evaluation / epoch checkpoints
        (``latest.pth`` is still written at the end; with an evaluator, evaluation then runs once at the
        end unless 0).
    backbone_weights: torchvision-format ImageNet ResNet state dict for the backbone (``fc.*`` ignored).
    allow_unsafe_pickle: read ``backbone_weights`` / ``resume`` files that need arbitrary unpickling.
    deterministic: ``torch.use_deterministic_algorithms`` for the run (bitwise-repeatable on CPU).

    Summary keys: ``rank, work_dir, config, num_classes, world_size, total_batch, epochs, iterations,
    train_time_s, wall_time_s, images_per_s, final_losses, metrics`` (last evaluation or None),
    ``checkpoint, log, loss_curve`` and ``stopped_early``.
    """
    wall_start = time.perf_counter()
    base_cfg = resolve_config(cfg)
    recipe = dataclasses.replace(
        base_cfg.train,
        **{k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr, "grad_clip": grad_clip,
                             "num_workers": num_workers}.items() if v is not None},
    )
    _check_arguments(recipe, max_iters, eval_interval, checkpoint_interval, log_interval, amp, device)
    ctx = init_distributed(device)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        return _run(base_cfg, recipe, ctx, Path(data_dir), Path(work_dir), max_iters=max_iters, seed=seed,
                    resume=resume, eval_interval=eval_interval, checkpoint_interval=checkpoint_interval, amp=amp,
                    backbone_weights=backbone_weights, allow_unsafe_pickle=allow_unsafe_pickle, log_interval=log_interval, progress=progress,
                    train_split=train_split, evaluate=evaluate if eval_interval > 0 else None, wall_start=wall_start)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        shutdown_distributed()


def _check_arguments(recipe: Any, max_iters: int | None, eval_interval: int, checkpoint_interval: int,
                     log_interval: int, amp: bool, device: str) -> None:
    if recipe.epochs < 1:
        raise UserError(f"epochs must be at least 1, got {recipe.epochs}")
    if max_iters is not None and max_iters < 1:
        raise UserError(f"max_iters must be at least 1, got {max_iters}")
    if recipe.batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {recipe.batch_size}")
    if recipe.lr <= 0:
        raise UserError(f"lr must be positive, got {recipe.lr}")
    if recipe.grad_clip < 0:
        raise UserError(f"grad clip must be >= 0 (0 = off), got {recipe.grad_clip}")
    if eval_interval < 0 or checkpoint_interval < 0 or log_interval < 1:
        raise UserError("eval and checkpoint intervals must be >= 0 and the log interval >= 1")
    if amp and not device.startswith("cuda"):
        raise UserError("--amp (mixed precision) needs a CUDA device: add --device cuda or drop --amp")


def _run(base_cfg: ModelConfig, recipe: Any, ctx: DistContext, data_dir: Path, work_dir: Path, *, max_iters: int | None,
         seed: int, resume: Any, eval_interval: int, checkpoint_interval: int, amp: bool, backbone_weights: Any,
         allow_unsafe_pickle: bool, log_interval: int, progress: bool, train_split: str, evaluate: Evaluator | None,
         wall_start: float) -> dict[str, Any]:
    say = Printer(ctx.is_main)
    torch.manual_seed(seed)

    # --- data (refuses a dataset without annotations) ----------------------------------------------
    transform = TrainTransform(recipe.scale_range, recipe.scale_long, recipe.flip_prob)
    with warnings.catch_warnings():
        if not ctx.is_main:
            warnings.simplefilter("ignore")  # one copy of the bad-input summary, not one per process
        dataset = load_train_dataset(data_dir, train_split, transform, seed)
    coco = dataset.coco
    say(f"{train_split}: {len(coco)} images, {dataset.num_annotations()} boxes, {coco.num_classes} classes, "
        f"{len(coco.problems)} bad item(s) skipped")

    # --- model, optimiser, schedule ------------------------------------------------------------------
    cfg = dataclasses.replace(base_cfg.with_num_classes(coco.num_classes, coco.class_names), train=recipe)
    model = build_from_config(cfg)
    if backbone_weights is not None:
        n = load_backbone_weights(model.backbone, backbone_weights, cfg.backbone.describe(),
                                  allow_unsafe_pickle=allow_unsafe_pickle)
        say(f"backbone initialised from {backbone_weights} ({n} tensors)")
    model.to(ctx.device).train()
    if ctx.distributed and any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        # BatchNorm in training mode (norm_eval = false): statistics over the whole multi-process batch
        n_bn = synchronise_batchnorm(model, ctx.device)
        say(f"{n_bn} BatchNorm layers in training mode: statistics synchronised over {ctx.world_size} processes")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    schedule = WarmupStepSchedule(recipe.lr, warmup_iters=recipe.warmup_iters, warmup_ratio=recipe.warmup_ratio,
                                  steps=recipe.lr_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    run_info = {"seed": seed, "total_batch": recipe.batch_size, "world_size": ctx.world_size}

    position = Position()
    if resume is not None:
        position, saved = load_training_checkpoint(resume, model, optimizer=optimizer, scaler=scaler,
                                                   allow_unsafe_pickle=allow_unsafe_pickle)
        old = saved["run"] or {}
        if old.get("seed") != seed or old.get("total_batch") != recipe.batch_size:
            raise UserError(
                f"{resume} was trained with seed {old.get('seed')} and batch size {old.get('total_batch')}; resume with "
                f"the same values (got seed {seed}, batch size {recipe.batch_size}) so the data order continues"
            )
        say(f"resumed from {resume}: epoch {position.epoch + 1}, iteration {position.iteration}")

    sampler = EpochBatchSampler(len(dataset), recipe.batch_size, seed=seed, rank=ctx.rank, world_size=ctx.world_size)
    loader = build_train_loader(dataset, sampler, recipe.num_workers, seed)
    net: torch.nn.Module = model
    if ctx.distributed:
        # No buffer broadcast: BN running statistics are either frozen (norm_eval) or synchronised, so
        # they are identical on every process already.
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                      broadcast_buffers=False)

    iters_per_epoch = sampler.batches_per_epoch
    total_iters = recipe.epochs * iters_per_epoch if max_iters is None else min(max_iters, recipe.epochs * iters_per_epoch)
    log = TrainingLog(work_dir / "log.jsonl", resume_iteration=position.iteration if resume else None) if ctx.is_main else None
    if log is not None:
        log.write({"type": "run", "iteration": position.iteration, "config": cfg.name, "num_classes": cfg.head.num_classes,
                   "recipe": dataclasses.asdict(recipe), "world_size": ctx.world_size, "seed": seed, "device": str(ctx.device),
                   "amp": amp, "resumed_from": str(resume) if resume else None, "iters_per_epoch": iters_per_epoch})

    def checkpoint(path: Path, pos: Position) -> None:
        save_training_checkpoint(path, model, cfg, optimizer=optimizer, scheduler_state=schedule.state_dict(),
                                 scaler=scaler, position=pos, run=run_info)

    # --- the loop ------------------------------------------------------------------------------------
    pos = position
    metrics: dict[str, Any] | None = None
    last_eval_iter = -1
    window: dict[str, float] = {}
    train_time, images_seen, stopped_early = 0.0, 0, False
    latest = work_dir / "latest.pth"
    with TrainProgress(progress and ctx.is_main, total_iters, pos.iteration) as bar, StopOnInterrupt() as stop:
        while pos.epoch < recipe.epochs and pos.iteration < total_iters and not stopped_early:
            sampler.set_epoch(pos.epoch, pos.epoch_batch)
            t_data = time.perf_counter()
            for batch in loader:
                t_step = time.perf_counter()
                lr = schedule.apply(optimizer, pos.iteration, pos.epoch)
                images, boxes, labels = batch_to_tensors(batch, ctx.device)
                with torch.autocast(device_type=ctx.device.type, dtype=torch.float16, enabled=amp):
                    cls_scores, bbox_preds = net(images)
                losses = gflv2_loss(cls_scores, bbox_preds, boxes, labels, cfg.head.num_classes, model.strides,
                                    cfg.head.reg_max, pad_shapes=batch.pad_shapes)
                loss = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                grad_norm = None
                if recipe.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip))
                scaler.step(optimizer)
                scaler.update()
                pos = Position(pos.epoch, pos.epoch_batch + 1, pos.iteration + 1)
                t_end = time.perf_counter()
                train_time += t_end - t_data
                images_seen += recipe.batch_size

                # losses of the whole (all-process) batch: the mean over processes, see the module docstring
                values = mean_over_processes({**{k: float(v.detach()) for k, v in losses.items()}, "stop": float(stop.requested)},
                                             ctx.device)
                values["loss"] = sum(values[k] for k in LOSS_KEYS)
                if not math.isfinite(values["loss"]):
                    raise UserError(f"loss became {values['loss']} at iteration {pos.iteration} (lr {lr:.3g}): "
                                    "lower --lr or set --grad-clip")
                for k in (*LOSS_KEYS, "loss"):
                    window[k] = window.get(k, 0.0) + values[k]
                window["time"] = window.get("time", 0.0) + (t_end - t_data)
                window["data_time"] = window.get("data_time", 0.0) + (t_step - t_data)
                window["n"] = window.get("n", 0.0) + 1
                if grad_norm is not None:
                    window["grad_norm"] = window.get("grad_norm", 0.0) + grad_norm
                info = f"loss {values['loss']:.3f} (qfl {values['loss_qfl']:.3f} bbox {values['loss_bbox']:.3f} " \
                       f"dfl {values['loss_dfl']:.3f}) lr {lr:.2e} ep {pos.epoch + 1}/{recipe.epochs}"
                bar.advance(info)
                if pos.iteration % log_interval == 0 or pos.iteration == total_iters:
                    record = _train_record(window, pos, lr, recipe.batch_size)
                    window = {}
                    if log is not None:
                        log.write(record)
                    if not bar.visible:
                        say(f"it {record['iteration']}/{total_iters} ep {record['epoch']} loss {record['loss']:.4f} "
                            f"(qfl {record['loss_qfl']:.4f} bbox {record['loss_bbox']:.4f} dfl {record['loss_dfl']:.4f}) "
                            f"lr {lr:.2e} {record['time_per_iter']:.2f} s/it {record['images_per_s']:.1f} img/s")
                if values["stop"] > 0:
                    stopped_early = True
                    say("interrupted: saving latest.pth and stopping (press Ctrl-C again to abort at once)")
                if pos.iteration >= total_iters or stopped_early:
                    break
                t_data = time.perf_counter()

            if pos.epoch_batch == iters_per_epoch:  # the epoch is complete
                epoch_done = pos.epoch + 1
                pos = Position(epoch_done, 0, pos.iteration)
                if evaluate is not None and epoch_done % eval_interval == 0:
                    metrics = _evaluate_and_log(model, cfg, ctx, evaluate, log, pos, say)
                    last_eval_iter = pos.iteration
                if checkpoint_interval and epoch_done % checkpoint_interval == 0 and ctx.is_main:
                    path = work_dir / f"epoch_{epoch_done}.pth"
                    checkpoint(path, pos)
                    with atomic_path(latest) as tmp:
                        shutil.copyfile(path, tmp)
                barrier()

    if evaluate is not None and last_eval_iter != pos.iteration and not stopped_early:
        metrics = _evaluate_and_log(model, cfg, ctx, evaluate, log, pos, say)
    summary: dict[str, Any] = {
        "rank": ctx.rank, "work_dir": str(work_dir), "config": cfg.name, "num_classes": cfg.head.num_classes, "world_size": ctx.world_size,
        "total_batch": recipe.batch_size, "epochs": pos.epoch + (pos.epoch_batch > 0), "iterations": pos.iteration,
        "train_time_s": round(train_time, 2), "images_per_s": round(images_seen / train_time, 2) if train_time else None,
        "final_losses": None, "metrics": metrics, "stopped_early": stopped_early,
        "checkpoint": str(latest), "log": str(work_dir / "log.jsonl"), "loss_curve": str(work_dir / "loss_curve.png"),
    }
    if ctx.is_main:
        checkpoint(latest, pos)
        if log is not None:
            log.close()
            train_records = _read_train(work_dir / "log.jsonl")
            summary["final_losses"] = {k: train_records[-1][k] for k in (*LOSS_KEYS, "loss")} if train_records else None
        plot_loss_curve(work_dir / "log.jsonl", work_dir / "loss_curve.png",
                        title=f"{cfg.name} on {data_dir.name}: batch {recipe.batch_size}, lr {recipe.lr}")
    barrier()
    summary["wall_time_s"] = round(time.perf_counter() - wall_start, 2)
    return summary


def _read_train(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_log(path) if r.get("type") == "train"]


def _train_record(window: dict[str, float], pos: Position, lr: float, total_batch: int) -> dict[str, Any]:
    n = window["n"]
    record: dict[str, Any] = {"type": "train", "iteration": pos.iteration, "epoch": pos.epoch + 1, "lr": lr}
    for k in ("loss", *LOSS_KEYS):
        record[k] = window[k] / n
    record["time_per_iter"] = window["time"] / n
    record["data_time"] = window["data_time"] / n
    record["images_per_s"] = total_batch * n / window["time"] if window["time"] > 0 else None
    if "grad_norm" in window:
        record["grad_norm"] = window["grad_norm"] / n
    return record


def _evaluate_and_log(model: torch.nn.Module, cfg: ModelConfig, ctx: DistContext, evaluate: Evaluator,
                      log: TrainingLog | None, pos: Position, say: "Printer") -> dict[str, Any] | None:
    """COCO bbox metrics of the current weights from ``evaluate`` (rank 0; the others wait at the barrier)."""
    metrics = None
    if ctx.is_main:
        t = time.perf_counter()
        metrics = evaluate(model.eval(), cfg)
        model.train()
        named = dict(zip(STAT_NAMES, metrics["stats"]))
        split = metrics.get("split")
        # 1-based like the train records: a run stopped inside its third epoch (max_iters) evaluates "epoch 3"
        epoch = pos.epoch + (pos.epoch_batch > 0)
        within = f", {pos.epoch_batch} batches into it" if pos.epoch_batch else ""
        record = {"type": "eval", "iteration": pos.iteration, "epoch": epoch, "split": split,
                  "stats": metrics["stats"], "AP": named["AP"], "AP50": named["AP50"], "eval_time": time.perf_counter() - t}
        if log is not None:
            log.write(record)
        say(f"eval after epoch {epoch}{within} ({split}, {metrics.get('num_images')} images): AP {named['AP']:.4f} "
            f"AP50 {named['AP50']:.4f} AP75 {named['AP75']:.4f} ({record['eval_time']:.0f} s)")
    barrier()
    return metrics
