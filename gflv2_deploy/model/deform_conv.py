"""Deformable convolution v1 (no modulation) in plain torch, with mmcv's semantics (torchvision is unusable here).

``deform_conv2d`` samples the input at the regular convolution grid moved by a learned offset per output
location and kernel tap, then applies the convolution weights to those samples (Dai et al., "Deformable
Convolutional Networks", ICCV 2017). Semantics, as mmcv's ``DeformConv2d`` (the ``DCN`` of the official
GFocalV2 configurations, spec §1.2) and ONNX ``DeformConv`` (opset 19) define them:

- sampling point of output (i, j), kernel tap (a, b), offset group g:
  y = i * stride_h - pad_h + a * dilation_h + offset[n, g, a * kw + b, 0, i, j] and x likewise with
  index 1: the offset channels are laid out as (deform_groups, kh, kw, 2) with (dy, dx) pairs, y first;
- bilinear interpolation in which each of the four neighbouring pixels outside the picture counts as zero
  (so a point one pixel or more outside reads 0), the same as mmcv's ``deformable_im2col_bilinear`` and
  ONNX's reference (GridSample, zeros padding, align_corners);
- input channels are split into ``deform_groups`` contiguous blocks, each with its own offsets, and into
  ``groups`` contiguous blocks for the grouped convolution (ResNeXt), independently of each other.

``DeformConv2dPack`` is mmcv's module of that name: the weight of a bias-free convolution plus the plain
convolution ``conv_offset`` that predicts the offsets from the same input (official checkpoint keys
``...conv2.weight``, ``...conv2.conv_offset.weight`` / ``.bias``). It subclasses ``nn.Conv2d`` for its
parameters and geometry only (``weight``, ``stride``, ``padding``...), so code that counts convolution work
sees it; its ``forward`` is the deformable one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["deform_conv2d", "DeformConv2dPack", "has_deform_conv"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deform_groups: int = 1,
) -> torch.Tensor:
    """Deformable convolution without bias or mask (see the module docstring for the exact semantics).

    x: N x C x H x W; offset: N x (deform_groups * kh * kw * 2) x OH x OW, in input pixels, (dy, dx) pairs;
    weight: O x C/groups x kh x kw. OH, OW are the usual convolution output sizes of (H, W).
    Returns N x O x OH x OW, differentiable in x, offset and weight. Dtype follows x (float32 in practice).
    """
    n, c, h, w = x.shape
    out_c, c_per_group, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = kh * kw
    if c != c_per_group * groups or out_c % groups or c % deform_groups:
        raise ValueError(f"deform_conv2d: {c} input channels do not fit weight {tuple(weight.shape)}, groups {groups}, "
                         f"deform_groups {deform_groups}")
    if tuple(offset.shape) != (n, deform_groups * taps * 2, oh, ow):
        raise ValueError(f"deform_conv2d: offset must be {(n, deform_groups * taps * 2, oh, ow)}, got {tuple(offset.shape)}")

    # regular grid of every (tap, output location): N x G x taps x OH x OW sampling coordinates
    dt, dev = x.dtype, x.device
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dh).repeat_interleave(kw)  # taps, row-major (a, b)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dw).repeat(kh)
    out_y = torch.arange(oh, device=dev, dtype=dt) * sh - ph
    out_x = torch.arange(ow, device=dev, dtype=dt) * sw - pw
    off = offset.view(n, deform_groups, taps, 2, oh, ow)
    py = tap_y.view(1, 1, taps, 1, 1) + out_y.view(1, 1, 1, oh, 1) + off[:, :, :, 0]
    px = tap_x.view(1, 1, taps, 1, 1) + out_x.view(1, 1, 1, 1, ow) + off[:, :, :, 1]

    # bilinear interpolation from the four neighbours; a neighbour outside the picture contributes zero
    y0, x0 = torch.floor(py), torch.floor(px)
    ly, lx = py - y0, px - x0
    cg = c // deform_groups
    flat = x.reshape(n, deform_groups, cg, h * w)
    samples = None
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).to(torch.int64)
            coeff = torch.where(inside, wy * wx, torch.zeros_like(wy))
            picked = torch.gather(flat, 3, index.view(n, deform_groups, 1, -1).expand(n, deform_groups, cg, -1))
            term = picked * coeff.view(n, deform_groups, 1, -1)
            samples = term if samples is None else samples + term
    assert samples is not None
    # columns N x groups x (C/groups * taps) x (OH * OW): channel-major then tap, as the weight flattens
    cols = samples.view(n, c, taps, oh * ow).view(n, groups, c_per_group * taps, oh * ow)
    out = torch.matmul(weight.reshape(groups, out_c // groups, c_per_group * taps), cols)
    return out.reshape(n, out_c, oh, ow)


class DeformConv2dPack(nn.Conv2d):
    """mmcv ``DeformConv2dPack`` (registered there as ``DCN``): offsets predicted by ``conv_offset``, no bias.

    ``conv_offset`` is a full (ungrouped) convolution from the input with the same kernel, stride, padding
    and dilation, giving deform_groups * kh * kw * 2 channels; it starts at zero (mmcv ``init_offset``), so an
    untrained module equals a plain convolution. forward: N x C x H x W -> N x O x OH x OW.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, deform_groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=False)
        self.deform_groups = deform_groups
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(in_channels, deform_groups * 2 * kh * kw, kernel_size, stride=stride,
                                     padding=padding, dilation=dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return deform_conv2d(x, self.conv_offset(x), self.weight, stride=self.stride, padding=self.padding,  # type: ignore[arg-type]
                             dilation=self.dilation, groups=self.groups, deform_groups=self.deform_groups)

    def plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same weights as a regular convolution (what the module computes when every offset is zero)."""
        return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", deform_groups={self.deform_groups}"


def has_deform_conv(module: nn.Module) -> bool:
    """True when ``module`` contains a deformable convolution (exports then need ONNX opset >= 19)."""
    return any(isinstance(m, DeformConv2dPack) for m in module.modules())
