"""FPN producing P3-P7 (spec §1.3): laterals on C3-C5, nearest top-down, 3x3 outputs, P6/P7 on P5 output.

Submodule names (``lateral_convs.i.conv``, ``fpn_convs.i.conv``) follow the official checkpoint keys
(spec §6.2), so official weights load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvUnit(nn.Module):
    """A bare conv held under ``.conv`` (the name mmcv's ConvModule gives it, kept for checkpoint keys)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPN(nn.Module):
    def __init__(self, *, in_channels: list[int], out_channels: int = 256, num_outs: int = 5) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvUnit(c, out_channels, 1) for c in in_channels)
        n_in = len(in_channels)
        self.fpn_convs = nn.ModuleList(
            [ConvUnit(out_channels, out_channels, 3) for _ in range(n_in)]
            + [ConvUnit(out_channels, out_channels, 3, stride=2) for _ in range(num_outs - n_in)]
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """feats: (C3, C4, C5) -> [P3, P4, P5, P6, P7], each N x out_channels x H_l x W_l."""
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            # size-based nearest upsample to the finer lateral's exact size (spec §1.3)
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        for conv in self.fpn_convs[len(laterals):]:
            outs.append(conv(outs[-1]))  # 'on_output': P6 from P5 output, P7 from P6, no ReLU
        return outs
