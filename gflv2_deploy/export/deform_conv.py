"""Deformable convolutions as standard ONNX ``DeformConv`` nodes (opset 19, default domain).

The model's ``DeformConv2dPack`` computes its sampling with plain torch ops (``model/deform_conv.py``);
traced as is, each would become dozens of Gather/Floor/Mul nodes that no backend recognises as one
deformable convolution. For the export, ``deform_convs_as_onnx_ops`` swaps every such module, for the
duration of a ``with`` block, for a twin that computes the same values through one torch op
(``gflv2_deploy::deform_conv2d``, registered on first use) whose symbolic emits one node:

    DeformConv(X = input, W = weight, offset = conv_offset(input)), no bias, no mask,
    kernel_shape, strides, pads (symmetric), dilations, group, offset_group = deform_groups.

ONNX ``DeformConv`` has mmcv's semantics (offsets laid out (offset_group, kh, kw, 2) with (dy, dx) pairs,
bilinear sampling with zeros outside the picture; checked against ``onnx.reference`` in the tests). The
op exists from opset 19, so a model with deformable convolutions is exported at opset 19 (``onnx.py``).
Backends: onnxruntime runs it on the CPU; TensorRT >= 10.1 parses it into its ``ModulatedDeformConv2d``
plugin (a constant mask of ones); TensorRT-RTX 1.7 has no importer for it (``engine/build.py`` refuses such graphs);
OpenVINO 2026.4's ONNX reader has none either and gets ours (``runtime/openvino_deform_conv.py``).
The model itself keeps no export branch: outside the ``with`` block nothing is changed.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch
from torch import nn
from torch.onnx.symbolic_helper import parse_args

from gflv2_deploy.model.deform_conv import DeformConv2dPack, deform_conv2d

ONNX_OP = "DeformConv"
MIN_OPSET = 19  # DeformConv-19 is the op's first version

__all__ = ["ONNX_OP", "MIN_OPSET", "deform_convs_as_onnx_ops"]

OP_NAME = "gflv2_deploy::deform_conv2d"  # the torch op the export twin calls (registered on first use)


@parse_args("v", "v", "v", "is", "is", "is", "i", "i")
def _symbolic(g: Any, x: Any, offset: Any, weight: Any, stride: list[int], padding: list[int], dilation: list[int],
              groups: int, deform_groups: int) -> Any:
    """TorchScript-exporter symbolic: one ONNX DeformConv (inputs X, W, offset; no bias, no mask)."""
    kernel = weight.type().sizes()[2:]
    return g.op(ONNX_OP, x, weight, offset, kernel_shape_i=list(kernel), strides_i=stride, pads_i=list(padding) * 2,
                dilations_i=dilation, group_i=groups, offset_group_i=deform_groups)


@functools.cache
def _deform_conv_op() -> Any:
    """Register (once per process) a torch op running ``deform_conv2d``, traced as one node and exported by ``_symbolic``.

    A torch op rather than an autograd Function: the TorchScript tracer records a Function's inner ops as a
    subgraph, which its graph passes cannot handle; an op is one node.
    """

    @torch.library.custom_op(OP_NAME, mutates_args=())
    def op(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, stride: list[int], padding: list[int],
           dilation: list[int], groups: int, deform_groups: int) -> torch.Tensor:
        return deform_conv2d(x, offset, weight, stride=tuple(stride), padding=tuple(padding),  # type: ignore[arg-type]
                             dilation=tuple(dilation), groups=groups, deform_groups=deform_groups)

    torch.onnx.register_custom_op_symbolic(OP_NAME, _symbolic, MIN_OPSET)
    return op


class _OnnxDeformConv(nn.Module):
    """Export twin of a ``DeformConv2dPack``: the same ``weight`` and ``conv_offset`` objects under the same names (so
    the ONNX initializers keep the checkpoint's names), offsets by ``conv_offset``, then one DeformConv."""

    def __init__(self, source: DeformConv2dPack) -> None:
        super().__init__()
        self.weight = source.weight
        self.conv_offset = source.conv_offset
        self.geometry = (list(source.stride), list(source.padding), list(source.dilation), source.groups,
                         source.deform_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride, padding, dilation, groups, deform_groups = self.geometry
        return _deform_conv_op()(x, self.conv_offset(x), self.weight, stride, padding, dilation, groups, deform_groups)


@contextlib.contextmanager
def deform_convs_as_onnx_ops(module: nn.Module) -> Iterator[int]:
    """Within the block, every ``DeformConv2dPack`` inside ``module`` traces as one ONNX DeformConv; yields their count.

    The modules are swapped back on exit (also on errors), so ``module`` is unchanged afterwards.
    """
    swaps = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if isinstance(child, DeformConv2dPack)]
    try:
        for parent, name, child in swaps:
            setattr(parent, name, _OnnxDeformConv(child))
        yield len(swaps)
    finally:
        for parent, name, child in swaps:
            setattr(parent, name, child)
