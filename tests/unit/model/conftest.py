"""Random state dicts under the official GFocalV2 (mmdet 2.6) key layout, written from the spec (§6) and from the
official configurations and mmdet / mmcv module names, independently of gflv2_deploy's modules.

Backbones: mmdet ``ResNet`` / ``ResNeXt`` (``conv1``, ``bn1``, ``layer{k}.{j}.conv{1,2,3}`` / ``bn{1,2,3}``,
``downsample.0/1``), ``Res2Net`` v1d (deep ``stem.{0,1,3,4,6,7}``, ``convs.i`` / ``bns.i``, ``downsample.1/2``
after the average pool), with mmcv ``DeformConv2dPack`` in the DCN stages (``...conv_offset.weight/bias``).
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# configuration name -> official backbone arguments (implus/GFocalV2 configs/gfocal/*.py)
OFFICIAL_BACKBONES = {
    "gflv2_r50_fpn": dict(type="ResNet", depth=50),
    "gflv2_r101_dcn_fpn": dict(type="ResNet", depth=101, dcn=(False, True, True, True)),
    "gflv2_x101_32x4d_fpn": dict(type="ResNeXt", depth=101, groups=32, base_width=4),
    "gflv2_x101_32x4d_dcn_fpn": dict(type="ResNeXt", depth=101, groups=32, base_width=4, dcn=(False, False, True, True)),
    "gflv2_r2n101_dcn_fpn": dict(type="Res2Net", depth=101, scales=4, base_width=26, dcn=(False, False, True, True)),
}


class OfficialLayout:
    """Builds one random official-layout state dict (``sd``); weights ~0.05 so that deep stacks stay finite."""

    def __init__(self, seed: int, offset_px: float = 1.5) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.offset_px = offset_px  # typical |offset| of the deformable convs, in pixels of their input
        self.sd: dict[str, torch.Tensor] = {}

    def t(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.g) * 0.05

    def bn(self, prefix: str, c: int, gain: float = 1.0) -> None:
        self.sd[f"{prefix}.weight"] = gain * (1 + self.t(c))
        self.sd[f"{prefix}.bias"] = self.t(c)
        self.sd[f"{prefix}.running_mean"] = self.t(c)
        self.sd[f"{prefix}.running_var"] = 1 + self.t(c).abs()
        self.sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    def conv3x3(self, prefix: str, cout: int, cin: int, groups: int, dcn: bool) -> None:
        self.sd[f"{prefix}.weight"] = self.t(cout, cin // groups, 3, 3)
        if dcn:  # mmcv DeformConv2dPack: an ungrouped 3x3 conv predicting 2 x 9 offsets, with bias
            # offsets of about offset_px, mostly from the bias (fractional, different per tap) and a little from the
            # input: a random deep stack whose offsets follow its growing activations closely is chaotic (a 1e-6
            # rounding difference grows ~2x per block), which would test the network, not the implementation
            std = 0.1 * self.offset_px / math.sqrt(9 * cin)
            self.sd[f"{prefix}.conv_offset.weight"] = torch.randn(18, cin, 3, 3, generator=self.g) * std
            self.sd[f"{prefix}.conv_offset.bias"] = torch.randn(18, generator=self.g) * self.offset_px

    def backbone(self, type: str, depth: int, groups: int = 1, base_width: int = 4, scales: int = 4,
                 dcn: tuple[bool, ...] = (False,) * 4) -> None:
        b = "backbone"
        if type == "Res2Net":  # v1d deep stem: 3x3/2 32, 3x3 32, 3x3 64, each + BN (+ ReLU at 2, 5, 8)
            for i, (cout, cin) in zip((0, 3, 6), ((32, 3), (32, 32), (64, 32))):
                self.sd[f"{b}.stem.{i}.weight"] = self.t(cout, cin, 3, 3)
                self.bn(f"{b}.stem.{i + 1}", cout)
        else:
            self.sd[f"{b}.conv1.weight"] = self.t(64, 3, 7, 7)
            self.bn(f"{b}.bn1", 64)
        cin = 64
        for k, (planes, blocks) in enumerate(zip((64, 128, 256, 512), STAGES[depth]), start=1):
            for j in range(blocks):
                p = f"{b}.layer{k}.{j}"
                if type == "Res2Net":
                    width = math.floor(planes * base_width / 64)
                    self.sd[f"{p}.conv1.weight"] = self.t(width * scales, cin, 1, 1)
                    self.bn(f"{p}.bn1", width * scales)
                    for i in range(scales - 1):
                        self.conv3x3(f"{p}.convs.{i}", width, width, 1, dcn[k - 1])
                        self.bn(f"{p}.bns.{i}", width)
                    self.sd[f"{p}.conv3.weight"] = self.t(4 * planes, width * scales, 1, 1)
                else:
                    width = planes if groups == 1 else math.floor(planes * base_width / 64) * groups
                    self.sd[f"{p}.conv1.weight"] = self.t(width, cin, 1, 1)
                    self.bn(f"{p}.bn1", width)
                    self.conv3x3(f"{p}.conv2", width, width, groups, dcn[k - 1])
                    self.bn(f"{p}.bn2", width)
                    self.sd[f"{p}.conv3.weight"] = self.t(4 * planes, width, 1, 1)
                self.bn(f"{p}.bn3", 4 * planes, gain=0.25)  # small residual branches keep 23 blocks' sum moderate
                if j == 0:  # Res2Net: downsample.0 is the (parameter-free) average pool
                    first = 1 if type == "Res2Net" else 0
                    self.sd[f"{p}.downsample.{first}.weight"] = self.t(4 * planes, cin, 1, 1)
                    self.bn(f"{p}.downsample.{first + 1}", 4 * planes)
                cin = 4 * planes

    def neck_and_head(self) -> None:
        """FPN (C3..C5 = 512/1024/2048 channels) and the GFLV2 head with its 81-row gfl_cls (spec §6.2-6.3)."""
        sd, t = self.sd, self.t
        for i, c in enumerate((512, 1024, 2048)):
            sd[f"neck.lateral_convs.{i}.conv.weight"] = t(256, c, 1, 1)
            sd[f"neck.lateral_convs.{i}.conv.bias"] = t(256)
        for i in range(5):
            sd[f"neck.fpn_convs.{i}.conv.weight"] = t(256, 256, 3, 3)
            sd[f"neck.fpn_convs.{i}.conv.bias"] = t(256)
        for tower in ("cls_convs", "reg_convs"):
            for i in range(4):
                sd[f"bbox_head.{tower}.{i}.conv.weight"] = t(256, 256, 3, 3)
                sd[f"bbox_head.{tower}.{i}.gn.weight"] = 1 + t(256)
                sd[f"bbox_head.{tower}.{i}.gn.bias"] = t(256)
        sd["bbox_head.gfl_cls.weight"] = t(81, 256, 3, 3)
        sd["bbox_head.gfl_cls.bias"] = t(81) - 2
        sd["bbox_head.gfl_reg.weight"] = t(68, 256, 3, 3)
        sd["bbox_head.gfl_reg.bias"] = t(68)
        for i in range(5):
            sd[f"bbox_head.scales.{i}.scale"] = torch.tensor(0.5 + 0.25 * i)
        sd["bbox_head.reg_conf.0.weight"] = t(64, 20, 1, 1) * 10
        sd["bbox_head.reg_conf.0.bias"] = t(64)
        sd["bbox_head.reg_conf.2.weight"] = t(1, 64, 1, 1) * 10
        sd["bbox_head.reg_conf.2.bias"] = t(1)
        sd["bbox_head.integral.project"] = torch.linspace(0, 16, 17)


def _official_state_dict(config: str, seed: int = 0) -> dict[str, torch.Tensor]:
    layout = OfficialLayout(seed)
    layout.backbone(**OFFICIAL_BACKBONES[config])
    layout.neck_and_head()
    return layout.sd


@pytest.fixture(scope="session")
def official_state_dict() -> Callable[..., dict[str, torch.Tensor]]:
    """``official_state_dict(config, seed=0)``: a random full detector state dict in the official layout of ``config``
    (a key of OFFICIAL_BACKBONES)."""
    return _official_state_dict


@pytest.fixture(scope="session")
def official_backbone_args() -> dict[str, dict]:
    """Configuration name -> its official backbone arguments (type, depth, groups, base_width, scales, dcn stages)."""
    return OFFICIAL_BACKBONES
