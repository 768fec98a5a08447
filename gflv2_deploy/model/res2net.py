"""Res2Net v1d backbone (mmdet ``Res2Net``, e.g. ``res2net101_v1d_26w_4s``) in plain torch, official key names.

A Bottle2neck (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2021) splits the
output of its 1x1 conv into ``scales`` groups of ``width`` channels, width = floor(planes * scale_width /
base_width) (26 channels at 64 planes for "26w"). Group 0 goes through 3x3 conv ``convs.0``; group i in
1..scales-2 is added to the previous group's output first ("normal" blocks) and goes through ``convs.i``;
the last group passes through unchanged. The first block of a stage ("stage" block) feeds each group
separately (no addition) and, when it strides, average-pools the last group (3x3, pad 1). Every 3x3 conv is
followed by its own BN (``bns.i``) and ReLU; with DCN each ``convs.i`` is a deformable convolution
(``convs.i.conv_offset.*``), as mmdet builds it. The results are concatenated, then 1x1 conv3 + bn3.

v1d (mmdet forces it for Res2Net): the deep stem (``stem.*``, see backbone.deep_stem) and shortcuts that
average-pool before a stride-1 1x1 conv: ``downsample.0`` AvgPool2d(stride, ceil_mode, count_include_pad
False), ``downsample.1`` conv, ``downsample.2`` BN, in every stage's first block (also layer1, where the pool
is 1x1). Stem and stage freezing, ``norm_eval`` and the outputs are ResNet's.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gflv2_deploy.model.backbone import NO_DCN, RESNET_SPECS, Bottleneck, ResNet, conv3x3_maybe_deformable


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: N x cin x H x W -> N x 4*planes x H/stride x W/stride (see the module docstring)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, *, width: int, scales: int, first: bool,
                 dcn: bool = False, deform_groups: int = 1) -> None:
        super().__init__()
        if scales < 2:
            raise ValueError("Res2Net needs scales >= 2 (scales = 1 is a ResNet)")
        self.width, self.scales, self.first, self.stride = width, scales, first, stride
        self.conv1 = nn.Conv2d(cin, width * scales, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scales)
        self.convs = nn.ModuleList(
            conv3x3_maybe_deformable(width, width, stride, dcn=dcn, deform_groups=deform_groups) for _ in range(scales - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scales - 1))
        # the untouched last group of a strided first block is pooled to the new size (count_include_pad True)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if first and stride != 1 else None
        self.conv3 = nn.Conv2d(width * scales, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(cin, planes * 4, 1, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        parts = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        sp = parts[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                sp = parts[i] if self.first else sp + parts[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(parts[-1]) if self.pool is not None else parts[-1])
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return self.relu(out + identity)


class Res2Net(ResNet):
    """Res2Net v1d returning C3, C4, C5 (strides 8, 16, 32), e.g. depth 101, scales 4, scale_width 26."""

    def __init__(self, *, depth: int = 101, base_width: int = 64, frozen_stages: int = 1, norm_eval: bool = True,
                 scales: int = 4, scale_width: int = 26, stage_with_dcn: Sequence[bool] = NO_DCN,
                 deform_groups: int = 1) -> None:
        if RESNET_SPECS.get(depth, (None,))[0] is not Bottleneck:
            raise ValueError(f"Res2Net depth must be 50 or 101, got {depth}")
        self.scales, self.scale_width = scales, scale_width
        super().__init__(depth=depth, base_width=base_width, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         stage_with_dcn=stage_with_dcn, deform_groups=deform_groups, use_deep_stem=True)

    def _make_stage(self, block: type[nn.Module], cin: int, planes: int, n_blocks: int, *, stride: int,
                    dcn: bool) -> nn.Sequential:
        width = math.floor(planes * self.scale_width / self.base_width)
        return nn.Sequential(*(
            Bottle2neck(cin if j == 0 else planes * 4, planes, stride if j == 0 else 1, width=width, scales=self.scales,
                        first=j == 0, dcn=dcn, deform_groups=self.deform_groups)
            for j in range(n_blocks)
        ))  # fmt: skip
