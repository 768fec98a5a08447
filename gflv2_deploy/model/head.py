"""GFLV2 head (spec §1.4-§1.6, §1.8): shared towers, distribution regression and DGQP joint score.

Module names follow the official checkpoint layout (spec §6.3): ``cls_convs.i.{conv,gn}``,
``reg_convs.i.{conv,gn}``, ``gfl_cls``, ``gfl_reg``, ``scales.i.scale``, ``reg_conf.{0,2}``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gflv2_deploy.model.distribution import dgqp_statistics, side_probabilities


class ConvGNReLU(nn.Module):
    """3x3 conv without bias -> GroupNorm -> ReLU (mmcv ConvModule drops the bias when a norm follows)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(groups, cout, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.gn(self.conv(x)))


class Scale(nn.Module):
    """Learnable scalar multiplying a level's raw regression logits (a per-level softmax temperature)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))  # 0-dim, as in official checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class GFLV2Head(nn.Module):
    """Per level: joint score sigmoid(cls) * DGQP quality, and distribution logits after Scale."""

    def __init__(
        self,
        *,
        num_classes: int = 80,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        gn_groups: int = 32,
        num_levels: int = 5,
        reg_max: int = 16,
        reg_topk: int = 4,
        reg_channels: int = 64,
        add_mean: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.reg_topk = reg_topk
        self.add_mean = add_mean

        def tower() -> nn.ModuleList:
            return nn.ModuleList(
                ConvGNReLU(in_channels if i == 0 else feat_channels, feat_channels, gn_groups) for i in range(stacked_convs)
            )

        self.cls_convs = tower()
        self.reg_convs = tower()
        self.gfl_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(feat_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        dgqp_in = 4 * (reg_topk + (1 if add_mean else 0))
        self.reg_conf = nn.Sequential(
            nn.Conv2d(dgqp_in, reg_channels, 1), nn.ReLU(inplace=True), nn.Conv2d(reg_channels, 1, 1), nn.Sigmoid()
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.gfl_cls.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01

    def forward_level(self, x: torch.Tensor, scale: Scale) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N x in_channels x H x W -> (joint scores N x C x H x W in [0, 1], logits N x 4(reg_max+1) x H x W fp32)."""
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        bbox_pred = scale(self.gfl_reg(reg_feat)).float()
        stats = dgqp_statistics(side_probabilities(bbox_pred, self.reg_max), self.reg_topk, self.add_mean)
        quality = self.reg_conf(stats.to(reg_feat.dtype))
        cls_score = self.gfl_cls(cls_feat).sigmoid() * quality  # no detach: QFL trains the DGQP (spec §1.6)
        return cls_score, bbox_pred

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs = [self.forward_level(x, scale) for x, scale in zip(feats, self.scales)]
        return [o[0] for o in outs], [o[1] for o in outs]
