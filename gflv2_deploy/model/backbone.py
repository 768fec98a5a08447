"""ResNet and ResNeXt backbones in plain torch with torchvision / mmdet parameter names.

Parameter names (``conv1``, ``bn1``, ``layer{k}.{j}.conv{n}``, ``downsample.0/1``) match torchvision,
so a user-supplied ImageNet ``resnet50-*.pth`` loads directly, and they also match the ``backbone.*``
keys of official GFocalV2 checkpoints (spec §6.1). Style 'pytorch': the stride-2 of layers 2-4 sits
in the 3x3 conv (spec §1.2). ``frozen_stages=1`` freezes the stem and layer1; ``norm_eval`` keeps every
BatchNorm in eval mode during training, re-applied after every ``train()`` switch as mmdet does.

ResNeXt (mmdet ``ResNeXt``, e.g. ``groups=32, base_width=4`` for X-101-32x4d) is this ResNet with a grouped
3x3 conv of width floor(planes * width_per_group / base_width) * groups in each bottleneck; its parameter
names are the same. ``stage_with_dcn`` replaces that 3x3 conv of every bottleneck of the chosen stages by a
deformable convolution (mmcv ``DCN`` = ``DeformConv2dPack``, keys ``conv2.weight`` and
``conv2.conv_offset.*``), as the official ``dcn=dict(type='DCN', ...)`` configurations do. The deep stem
(three 3x3 convs, keys ``stem.{0,1,3,4,6,7}``) is mmdet's ``deep_stem`` used by Res2Net v1d (``res2net.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gflv2_deploy.model.deform_conv import DeformConv2dPack


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv3x3_maybe_deformable(cin: int, cout: int, stride: int, *, groups: int = 1, dcn: bool = False,
                             deform_groups: int = 1) -> nn.Conv2d:
    """The 3x3 conv of a bottleneck: plain, or deformable (mmcv DeformConv2dPack) when ``dcn``."""
    if dcn:
        return DeformConv2dPack(cin, cout, 3, stride=stride, padding=1, groups=groups, deform_groups=deform_groups)
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, ``groups``, optionally deformable) -> 1x1 x4, with the identity or projection shortcut.

    ``width`` is the channel count of the first two convs (``planes`` for ResNet, wider for ResNeXt).
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, *, width: int | None = None, groups: int = 1,
                 dcn: bool = False, deform_groups: int = 1) -> None:
        super().__init__()
        width = width or planes
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # 'pytorch' style: stride in the 3x3
        self.conv2 = conv3x3_maybe_deformable(width, width, stride, groups=groups, dcn=dcn, deform_groups=deform_groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block type, blocks per stage)
RESNET_SPECS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}
NO_DCN = (False, False, False, False)


def deep_stem(cin: int, cout: int) -> nn.Sequential:
    """mmdet ``deep_stem``: 3x3/2 (cout/2) -> 3x3 (cout/2) -> 3x3 (cout), each + BN + ReLU (ResNet-C / v1d)."""
    mid = cout // 2
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class ResNet(nn.Module):
    """ResNet / ResNeXt returning C3, C4, C5 (strides 8, 16, 32); C2 is computed but not returned (FPN start_level=1).

    depth: 18, 34, 50 or 101; base_width: stem channels and planes of layer1 (mmdet base_channels, 64);
    groups / width_per_group: ResNeXt cardinality and width per group at base_width planes (groups=1: ResNet);
    stage_with_dcn: per stage (layer1..4), whether its bottlenecks' 3x3 convs are deformable;
    use_deep_stem: the three-conv stem instead of the 7x7 conv (subclasses such as Res2Net set it).
    """

    def __init__(self, *, depth: int = 50, base_width: int = 64, frozen_stages: int = 1, norm_eval: bool = True,
                 groups: int = 1, width_per_group: int = 4, stage_with_dcn: Sequence[bool] = NO_DCN,
                 deform_groups: int = 1, use_deep_stem: bool = False) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}, got {depth}")
        block, counts = RESNET_SPECS[depth]
        if len(stage_with_dcn) != len(counts):
            raise ValueError(f"stage_with_dcn needs one flag per stage ({len(counts)}), got {list(stage_with_dcn)}")
        if block is BasicBlock and (groups != 1 or any(stage_with_dcn)):
            raise ValueError(f"ResNet-{depth} has basic blocks: grouped and deformable convs need depth 50 or 101")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.base_width = base_width
        self.groups, self.width_per_group = groups, width_per_group
        self.deform_groups = deform_groups
        self.use_deep_stem = use_deep_stem
        if use_deep_stem:
            self.stem = deep_stem(3, base_width)
        else:
            self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(base_width)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = base_width
        self.out_channels: list[int] = []
        for stage, n_blocks in enumerate(counts):
            planes = base_width * 2**stage
            layer = self._make_stage(block, cin, planes, n_blocks, stride=2 if stage > 0 else 1, dcn=bool(stage_with_dcn[stage]))
            self.add_module(f"layer{stage + 1}", layer)
            cin = planes * block.expansion
            self.out_channels.append(cin)
        self.out_channels = self.out_channels[1:]  # C3, C4, C5
        self._freeze_stages()

    def _make_stage(self, block: type[nn.Module], cin: int, planes: int, n_blocks: int, *, stride: int,
                    dcn: bool) -> nn.Sequential:
        """One stage (``layer{k}``): ``n_blocks`` blocks, the first with ``stride`` and the projection shortcut."""
        if block is BasicBlock:
            return nn.Sequential(*(BasicBlock(cin if j == 0 else planes, planes, stride if j == 0 else 1) for j in range(n_blocks)))
        # mmdet ResNeXt: width = floor(planes * base_width / base_channels) * groups; plain ResNet: planes
        width = planes if self.groups == 1 else math.floor(planes * self.width_per_group / self.base_width) * self.groups
        return nn.Sequential(*(
            Bottleneck(cin if j == 0 else planes * 4, planes, stride if j == 0 else 1, width=width, groups=self.groups,
                       dcn=dcn, deform_groups=self.deform_groups)
            for j in range(n_blocks)
        ))  # fmt: skip

    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen += [self.stem] if self.use_deep_stem else [self.conv1, self.bn1]
        frozen += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: N x 3 x H x W normalised RGB -> (C3, C4, C5) at strides 8, 16, 32."""
        x = self.stem(x) if self.use_deep_stem else self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c3, c4, c5
