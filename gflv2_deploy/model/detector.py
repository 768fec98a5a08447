"""The GFLV2 detector: ResNet -> FPN -> GFLV2 head, returning raw head outputs in every mode."""

from __future__ import annotations

import torch
from torch import nn

from gflv2_deploy import spec


class GFLV2(nn.Module):
    """Submodules ``backbone``, ``neck``, ``bbox_head`` (the official checkpoint prefixes, spec §6).

    ``forward(images)`` with images N x 3 x H x W (normalised RGB, H and W multiples of 32) returns
    ``(cls_scores, bbox_preds)``: two lists over P3..P7 of N x C x H_l x W_l joint scores in [0, 1] and
    N x 4(reg_max+1) x H_l x W_l distribution logits after Scale. Losses and post-processing are
    separate callables (``train.losses``, ``model.postprocess``).
    """

    strides: tuple[int, ...] = spec.STRIDES

    def __init__(self, *, backbone: nn.Module, neck: nn.Module, bbox_head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.bbox_head = bbox_head

    @property
    def num_classes(self) -> int:
        return self.bbox_head.num_classes

    @property
    def reg_max(self) -> int:
        return self.bbox_head.reg_max

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.bbox_head(self.neck(self.backbone(images)))
