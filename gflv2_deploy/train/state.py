"""Training checkpoints: everything an exact resume needs, in this project's checkpoint format.

A training checkpoint is a normal ``model.checkpoint`` file (so ``eval`` / ``predict`` / export read it)
with extra entries:

- ``position``: ``{"epoch": e, "epoch_batch": b, "iteration": i}``: resume in 0-based epoch ``e`` after its
  first ``b`` batches, ``i`` iterations done in all (``b == 0`` at an epoch boundary);
- ``optimizer`` (SGD momentum buffers), ``scheduler`` (lr schedule parameters), ``scaler`` (AMP loss
  scale, or None);
- ``rng``: torch (CPU and CUDA), numpy and python generator states;
- ``run``: seed, total batch and world size, which a resume must keep for the data order to continue.

Everything is stored as tensors / plain Python values, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gflv2_deploy.config import ModelConfig
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.checkpoint import extract_state_dict, load_state_dict_strict, read_checkpoint, save_checkpoint

__all__ = ["Position", "capture_rng_state", "restore_rng_state", "save_training_checkpoint", "load_training_checkpoint"]


@dataclass(frozen=True)
class Position:
    """Where training stands: 0-based epoch, batches done inside it, iterations done overall."""

    epoch: int = 0
    epoch_batch: int = 0
    iteration: int = 0


def capture_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    config: ModelConfig,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler_state: dict[str, Any],
    scaler: torch.amp.GradScaler | None,
    position: Position,
    run: dict[str, Any],
) -> Path:
    """Write the checkpoint atomically (see the module docstring for its entries)."""
    save_checkpoint(
        path, model, config,
        epoch=position.epoch, iteration=position.iteration,  # also readable without knowing "position"
        position=asdict(position),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler_state,
        scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        rng=capture_rng_state(),
        run=run,
    )
    return Path(path)


def load_training_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    allow_unsafe_pickle: bool = False,
) -> tuple[Position, dict[str, Any]]:
    """Restore model, optimiser, scaler and RNG states from a training checkpoint.

    Returns (position, checkpoint entries: ``scheduler``, ``run``, ``config``). ``UserError`` when the
    file is not a training checkpoint of this project or does not fit the model.
    """
    ckpt = read_checkpoint(path, allow_unsafe_pickle)
    if ckpt.get("format") != "gflv2_deploy" or "position" not in ckpt or "optimizer" not in ckpt:
        raise UserError(
            f"{path} is not a gflv2-deploy training checkpoint (no optimizer / position entries): "
            "--resume takes latest.pth or epoch_N.pth of a training work dir"
        )
    load_state_dict_strict(model, extract_state_dict(ckpt), str(path))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise UserError(f"{path}: optimizer state does not fit this model's trainable parameters ({exc})") from None
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if "rng" in ckpt:
        restore_rng_state(ckpt["rng"])
    return Position(**ckpt["position"]), {k: ckpt.get(k) for k in ("scheduler", "run", "config")}
