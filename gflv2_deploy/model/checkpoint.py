"""Checkpoints: this project's format and the official GFocalV2 (mmdetection 2.x) format.

Formats (auto-detected):
- ours: ``{"format": "gflv2_deploy", "format_version": 1, "config": {...}, "state_dict": {...}, ...}``;
- official mmcv runner files: ``{"state_dict": {...}, "meta": {...}, "optimizer": ...}`` with keys
  ``backbone.* / neck.* / bbox_head.*`` (spec §6) and an 81-row ``gfl_cls`` whose last row is the dummy
  channel of the ``use_sigmoid=False`` quirk (spec §1.6): it is dropped here;
- a bare state dict in either key layout.
Files are read with ``torch.load(weights_only=True)``; one that needs arbitrary unpickling is refused
unless the caller opts in. Loading is strict and reports mismatched keys/shapes in one message.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.config import ModelConfig, config_from_dict
from gflv2_deploy.errors import UserError
from gflv2_deploy.hashing import file_sha256  # noqa: F401  (re-exported for callers)

FORMAT = "gflv2_deploy"
FORMAT_VERSION = 1
_PREFIXES = ("backbone.", "neck.", "bbox_head.")




_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format since 1.6
_PICKLE_PROTO = b"\x80"  # legacy torch.save: a pickle (protocol >= 2 opcode first)


def read_checkpoint(path: str | os.PathLike[str], allow_unsafe_pickle: bool = False) -> dict[str, Any]:
    """Load a checkpoint file into a dict, with one clear error for every way it can be unusable."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"checkpoint {p} is a folder: give the checkpoint file in it (e.g. {p / 'latest.pth'})")
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise UserError(f"checkpoint {p} is empty (0 bytes)")
    with p.open("rb") as f:
        head = f.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO)):
        # torch.load would call any such file "unsafe to unpickle" under weights_only, which misleads
        raise UserError(f"checkpoint {p} is not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise UserError(
                f"checkpoint {p} contains objects that need arbitrary unpickling, which is refused for safety; "
                "if you trust the file, pass --allow-unsafe-pickle"
            ) from None
        raise UserError(f"checkpoint {p} is corrupt or not a PyTorch checkpoint ({exc})") from None
    except ImportError as exc:  # ModuleNotFoundError included: unpickling wants the classes of the writer's program
        raise UserError(_foreign_pickle_message(p, exc)) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(f"checkpoint {p} is corrupt or not a PyTorch checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {p} holds a {type(obj).__name__}, not a state dict")
    return obj


def _foreign_pickle_message(path: Path, exc: ImportError) -> str:
    """What a checkpoint that pickles another program's classes is, and what to do with it."""
    module = getattr(exc, "name", None) or str(exc)
    if module.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric"):
        what = "a PyTorch Lightning training checkpoint (e.g. NanoDet's .ckpt)"
    else:
        what = f"a checkpoint that pickles objects of the Python module '{module}'"
    return (f"checkpoint {path} is {what}, which gflv2-deploy cannot unpickle without that program: it reads its own and "
            "official GFocalV2 (mmdetection) checkpoints; save the model's weights alone where that program is installed "
            "(torch.save(ckpt['state_dict'], 'weights.pth')) and give that file")


def is_official(ckpt: dict[str, Any]) -> bool:
    """True for an mmdetection-style checkpoint (not written by this project)."""
    return ckpt.get("format") != FORMAT


def extract_state_dict(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    sd = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError("checkpoint has no state dict of tensors (expected a 'state_dict' entry)")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def convert_official_state_dict(sd: dict[str, torch.Tensor], num_classes: int) -> dict[str, torch.Tensor]:
    """Map official GFocalV2 keys onto this implementation (spec §6 converter checklist).

    Names already match; the changes are: drop ``bbox_head.integral.project`` after checking it is
    0..reg_max, drop the dummy last row of ``gfl_cls`` (81 -> 80 channels).
    """
    out = dict(sd)
    project = out.pop("bbox_head.integral.project", None)
    if project is not None and not torch.allclose(project.float(), torch.arange(project.numel(), dtype=torch.float32)):
        raise UserError("official checkpoint has an unexpected integral.project buffer (expected 0, 1, ..., reg_max)")
    for key in ("bbox_head.gfl_cls.weight", "bbox_head.gfl_cls.bias"):
        if key in out and out[key].shape[0] == num_classes + 1:
            out[key] = out[key][:num_classes]
    return out


def describe_mismatch(model: nn.Module, sd: dict[str, torch.Tensor]) -> list[str]:
    """Missing / unexpected / shape-mismatched keys between ``model`` and ``sd`` (empty if they fit)."""
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape and sd[k].numel() != v.numel()
    ]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
            problems.append(f"{label}: {shown}")
    return problems


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    problems = describe_mismatch(model, sd)
    if problems:
        raise UserError(f"checkpoint {source} does not fit this model ({'; '.join(problems)})")
    expected = model.state_dict()
    sd = {k: (v.reshape(expected[k].shape) if k in expected else v) for k, v in sd.items()}
    for k in expected:  # BN counters are bookkeeping only; tolerate their absence
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = expected[k]
    model.load_state_dict(sd, strict=True)


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], allow_unsafe_pickle: bool = False) -> dict[str, Any]:
    """Public API: load weights from this project's or an official GFocalV2 checkpoint, strictly.

    Returns the checkpoint's non-tensor metadata (config, epoch, ... for ours; meta for official).
    Raises ``UserError`` naming mismatched keys/shapes for another architecture or class count.
    """
    ckpt = read_checkpoint(path, allow_unsafe_pickle)
    sd = extract_state_dict(ckpt)
    if is_official(ckpt):
        sd = convert_official_state_dict(sd, model.bbox_head.num_classes)
    load_state_dict_strict(model, sd, str(path))
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "model", "optimizer")}


def checkpoint_config(path: str | os.PathLike[str], allow_unsafe_pickle: bool = False) -> ModelConfig | None:
    """The model configuration stored in one of our checkpoints (None for official checkpoints)."""
    ckpt = read_checkpoint(path, allow_unsafe_pickle)
    if is_official(ckpt) or "config" not in ckpt:
        return None
    return config_from_dict(ckpt["config"], name=ckpt["config"].get("name", "checkpoint"), where=f"checkpoint {path}")


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, config: ModelConfig, **extra: Any) -> None:
    """Write ``{format, config, state_dict, **extra}`` atomically (extra: epoch, iteration, optimizer, ...)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(), "state_dict": model.state_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
