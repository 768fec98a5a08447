"""ONNX ``DeformConv`` for OpenVINO: a frontend conversion onto OpenVINO's own ``DeformableConvolution`` (opset 8).

OpenVINO's ONNX frontend (2026.4 included) has no rule for ``DeformConv`` ("No conversion rule found for
operations: DeformConv-19"), although its operation set has the op. ``add_deform_conv_conversion`` registers
one on a ``Core`` before ``read_model``:

    DeformConv(X, W, offset[, B][, mask]) -> DeformableConvolution-8(X, offset, W[, mask]) (+ B),
    strides, dilations, group, offset_group -> deformable_group, pads split into begin / end,
    ``bilinear_interpolation_pad = True``.

The last flag selects the semantics of mmcv and ONNX (a neighbour outside the picture counts as zero, so a
point less than one pixel outside still reads part of the border); with False OpenVINO would move such points
onto the border. The offsets layout is the same ((group, kh, kw, 2), y first). Checked against onnxruntime's
kernel in tests/unit/runtime/test_openvino_runner.py.
"""

from __future__ import annotations

from typing import Any

ONNX_OP = "DeformConv"


def _convert(context: Any) -> list[Any]:
    """The conversion rule: an ONNX DeformConv node (NodeContext) -> the outputs of the OpenVINO subgraph."""
    import numpy as np
    import openvino.opset8 as ops

    x, weight, offset = (context.get_input(i) for i in range(3))
    pads = list(context.get_attribute("pads", [0, 0, 0, 0]))
    half = len(pads) // 2
    mask = context.get_input(4) if context.get_input_size() > 4 else None
    out = ops.deformable_convolution(
        x, offset, weight, list(context.get_attribute("strides", [1, 1])), pads[:half], pads[half:],
        list(context.get_attribute("dilations", [1, 1])), mask=mask, group=int(context.get_attribute("group", 1)),
        deformable_group=int(context.get_attribute("offset_group", 1)), bilinear_interpolation_pad=True,
    )
    if context.get_input_size() > 3 and not context.get_input(3).get_node().get_type_name() == "NullNode":
        bias = ops.reshape(context.get_input(3), ops.constant(np.array([1, -1, 1, 1], np.int64)), special_zero=False)
        out = ops.add(out, bias)
    return [out.output(0)]


def add_deform_conv_conversion(core: Any) -> None:
    """Teach ``core`` (an ``openvino.Core``) to read ONNX DeformConv nodes (see the module docstring)."""
    from openvino.frontend import ConversionExtension

    core.add_extension(ConversionExtension(ONNX_OP, _convert))
