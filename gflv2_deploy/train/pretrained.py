"""ImageNet initialisation of the backbone from a torchvision-format ResNet file (spec §1.2).

ResNeXt and Res2Net files use the same names as mmdet's ``open-mmlab://resnext101_32x4d`` /
``res2net101_v1d_26w_4s`` conversions; deformable convolutions keep their zero offset convs.

The backbone's parameter names are torchvision's (``conv1``, ``bn1``, ``layer{k}.{j}.*``), so a
``resnet50-*.pth`` state dict loads directly once its classifier (``fc.*``) is dropped. Loading is
strict otherwise: a file for another depth or width, a detector checkpoint, or something that is
not a state dict stops with one message that says what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from gflv2_deploy.errors import UserError
from gflv2_deploy.model.checkpoint import describe_mismatch, load_state_dict_strict, read_checkpoint

__all__ = ["load_backbone_weights"]

_DETECTOR_PREFIXES = ("backbone.", "neck.", "bbox_head.")


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike[str], what: str = "the backbone",
                          allow_unsafe_pickle: bool = False) -> int:
    """Load a torchvision ResNet state dict (``fc.*`` ignored) into ``backbone``; returns the tensor count loaded.

    Accepts a bare state dict or one under ``state_dict`` / ``model`` (keys may carry ``module.``).
    Raises ``UserError`` naming missing / unexpected / mis-shaped keys when the file does not fit.
    """
    p = Path(path)
    ckpt = read_checkpoint(p, allow_unsafe_pickle)
    sd = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if not isinstance(sd, dict):
        raise UserError(f"backbone weights {p}: expected a state dict of tensors, found a {type(sd).__name__}")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise UserError(f"backbone weights {p} hold no tensors: expected a torchvision ResNet state dict (e.g. resnet50-0676ba61.pth)")
    if any(k.startswith(_DETECTOR_PREFIXES) for k in sd):
        raise UserError(
            f"backbone weights {p} look like a detector checkpoint (keys backbone./neck./bbox_head.): "
            "--backbone-weights takes a torchvision ImageNet ResNet file; continue a training run with --resume instead"
        )
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    # ImageNet classifiers have no offset convs: deformable convs keep theirs at zero (mmcv's init; mmdet loads the
    # ImageNet file non-strictly for the same reason), so each starts as the plain conv whose weight the file holds
    for key, value in backbone.state_dict().items():
        if ".conv_offset." in key and key not in sd:
            sd[key] = value
    problems = describe_mismatch(backbone, sd)
    if problems:
        raise UserError(
            f"backbone weights {p} do not fit {what} ({'; '.join(problems)}); expected a torchvision-format "
            "ImageNet state dict of the same backbone, depth and width (ResNeXt / Res2Net: mmdet's names)"
        )
    load_state_dict_strict(backbone, sd, str(p))
    return len(sd)
