"""Build a GFLV2 detector from a configuration name, path or ``ModelConfig``."""

from __future__ import annotations

import os
from typing import Callable

from torch import nn

from gflv2_deploy import spec
from gflv2_deploy.config import BackboneConfig, ModelConfig, load_config
from gflv2_deploy.model.backbone import ResNet
from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.model.head import GFLV2Head
from gflv2_deploy.model.neck import FPN
from gflv2_deploy.model.res2net import Res2Net


def _common(b: BackboneConfig) -> dict:
    return dict(depth=b.depth, base_width=b.base_width, frozen_stages=b.frozen_stages, norm_eval=b.norm_eval,
                stage_with_dcn=b.stage_with_dcn, deform_groups=b.deform_groups)


# backbone type -> builder; each returns a module with ``out_channels`` (C3, C4, C5) and forward -> (C3, C4, C5)
BACKBONES: dict[str, Callable[[BackboneConfig], nn.Module]] = {
    "resnet": lambda b: ResNet(**_common(b)),
    "resnext": lambda b: ResNet(**_common(b), groups=b.groups, width_per_group=b.width_per_group),
    "res2net": lambda b: Res2Net(**_common(b), scales=b.scales, scale_width=b.scale_width),
}


def resolve_config(config: str | os.PathLike[str] | ModelConfig, num_classes: int | None = None) -> ModelConfig:
    """A ``ModelConfig`` from a name/path/object, with the class count overridden when given."""
    cfg = config if isinstance(config, ModelConfig) else load_config(config)
    if num_classes is not None and num_classes != cfg.head.num_classes:
        cfg = cfg.with_num_classes(num_classes)
    return cfg


def build_from_config(cfg: ModelConfig) -> GFLV2:
    """Instantiate the detector described by ``cfg`` (random head/FPN init as in spec §1.8)."""
    b, h = cfg.backbone, cfg.head
    backbone = BACKBONES[b.type](b)
    neck = FPN(in_channels=backbone.out_channels, out_channels=cfg.neck.out_channels, num_outs=len(spec.STRIDES))
    head = GFLV2Head(
        num_classes=h.num_classes,
        in_channels=cfg.neck.out_channels,
        feat_channels=h.feat_channels,
        stacked_convs=h.stacked_convs,
        gn_groups=h.gn_groups,
        num_levels=len(spec.STRIDES),
        reg_max=h.reg_max,
        reg_topk=h.reg_topk,
        reg_channels=h.reg_channels,
        add_mean=h.add_mean,
    )
    model = GFLV2(backbone=backbone, neck=neck, bbox_head=head)
    model.config = cfg  # type: ignore[attr-defined]  # carried along for checkpoints and export metadata
    return model


def build_model(name: str | os.PathLike[str] | ModelConfig, num_classes: int = 80) -> GFLV2:
    """Public API: ``build_model("gflv2_r50_fpn")`` -> an ``nn.Module`` in train mode, random weights."""
    return build_from_config(resolve_config(name, num_classes))


def count_parameters(config: str | os.PathLike[str] | ModelConfig, num_classes: int | None = None) -> int:
    """Parameters of the detector ``config`` describes, counted on torch's meta device (no memory, no init work)."""
    import torch

    with torch.device("meta"):
        model = build_from_config(resolve_config(config, num_classes))
    return sum(p.numel() for p in model.parameters())
