"""Deformable convolution (model/deform_conv.py) against ONNX's reference DeformConv and onnxruntime's kernel,
and its invariants: zero offsets are a plain convolution, one integer offset everywhere is a shifted convolution."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from gflv2_deploy.model.deform_conv import DeformConv2dPack, deform_conv2d

# (in channels, out channels, H, W, stride, pad, dilation, groups, deform_groups): small, so that the Python
# reference (one GridSample per output element) stays fast; every geometry the backbones use, and more
CASES = [
    (4, 4, 5, 6, 1, 1, 1, 1, 1),  # the backbone's 3x3/1
    (4, 6, 7, 6, 2, 1, 1, 2, 2),  # 3x3/2 (first block of a stage), ResNeXt-style groups, two offset groups
    (6, 4, 6, 7, 1, 2, 2, 2, 3),  # dilation 2
]


def _deform_conv_model(x: tuple, w: tuple, off: tuple, stride: int, pad: int, dilation: int, groups: int,
                       deform_groups: int) -> onnx.ModelProto:
    node = helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], kernel_shape=list(w[2:]), pads=[pad] * 4,
                            strides=[stride] * 2, dilations=[dilation] * 2, group=groups, offset_group=deform_groups)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in (("x", x), ("w", w), ("offset", off))]
    out = [x[0], w[0], off[2], off[3]]
    graph = helper.make_graph([node], "deform_conv", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9  # readable by older onnxruntime builds too
    onnx.checker.check_model(model, full_check=True)
    return model


def _random_case(case: tuple, seed: int, offset_scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c, o, h, w, stride, pad, dil, groups, dg = case
    g = torch.Generator().manual_seed(seed)
    oh, ow = (h + 2 * pad - dil * 2 - 1) // stride + 1, (w + 2 * pad - dil * 2 - 1) // stride + 1
    x = torch.randn(2, c, h, w, generator=g)
    weight = torch.randn(o, c // groups, 3, 3, generator=g)
    offset = torch.randn(2, dg * 18, oh, ow, generator=g) * offset_scale
    return x, weight, offset


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("offset_scale", [0.7, 4.0])  # 4 px: many samples fall partly or wholly outside the picture
def test_matches_onnx_reference_and_onnxruntime(case: tuple, offset_scale: float) -> None:
    x, weight, offset = _random_case(case, seed=len(case) + int(offset_scale), offset_scale=offset_scale)
    _, _, h, w, stride, pad, dil, groups, dg = case
    ours = deform_conv2d(x, offset, weight, stride=stride, padding=pad, dilation=dil, groups=groups, deform_groups=dg).numpy()
    model = _deform_conv_model(tuple(x.shape), tuple(weight.shape), tuple(offset.shape), stride, pad, dil, groups, dg)
    feeds = {"x": x.numpy(), "w": weight.numpy(), "offset": offset.numpy()}
    reference = ReferenceEvaluator(model).run(None, feeds)[0]
    runtime = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    # the case really samples outside: some sampling rows/columns leave [-1, H] x [-1, W]
    assert ours.shape == reference.shape == runtime.shape
    np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(runtime, reference, atol=2e-5, rtol=1e-5)
    if offset_scale > 1:
        assert float(offset.abs().max()) > max(h, w)


def test_points_outside_the_picture_read_zero_and_half_outside_reads_half() -> None:
    """A tap one row or more above the picture reads 0; half a row above row 0 reads half of row 0 (zero beyond)."""
    x, weight = torch.randn(1, 3, 4, 5), torch.randn(2, 3, 3, 3)
    offset = torch.zeros(1, 18, 4, 5)
    offset[:, 0::2] = -10.0  # every dy: ten rows up
    assert torch.count_nonzero(deform_conv2d(x, offset, weight, padding=1)) == 0
    # move every tap of every output row to y = -0.5 (tap row a of output row i sits at i - 1 + a), dx = 0
    rows = torch.arange(4.0).view(1, 1, 4, 1) - 1 + torch.arange(3.0).repeat_interleave(3).view(1, 9, 1, 1)
    offset[:, 0::2] = -0.5 - rows
    flat_top = x[:, :, :1].expand(-1, -1, 3, -1)  # a picture whose 3 rows all equal row 0, read by 3 tap rows at once
    expected = 0.5 * F.conv2d(flat_top, weight, None, 1, (0, 1))  # N x 2 x 1 x 5: the same for every output row
    torch.testing.assert_close(deform_conv2d(x, offset, weight, padding=1), expected.expand(-1, -1, 4, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_zero_offsets_equal_a_plain_convolution(case: tuple) -> None:
    x, weight, offset = _random_case(case, seed=1, offset_scale=0.0)
    _, _, _, _, stride, pad, dil, groups, dg = case
    ours = deform_conv2d(x, offset, weight, stride=stride, padding=pad, dilation=dil, groups=groups, deform_groups=dg)
    torch.testing.assert_close(ours, F.conv2d(x, weight, None, stride, pad, dil, groups), atol=1e-5, rtol=1e-5)


def test_fresh_pack_module_is_a_plain_convolution() -> None:
    """mmcv initialises conv_offset to zero: an untrained DeformConv2dPack computes its plain convolution."""
    torch.manual_seed(0)
    module = DeformConv2dPack(8, 16, 3, stride=2, padding=1, groups=4)
    x = torch.randn(2, 8, 9, 11)
    torch.testing.assert_close(module(x), module.plain_forward(x), atol=1e-5, rtol=1e-5)
    assert module.conv_offset.weight.shape == (18, 8, 3, 3) and module.weight.shape == (16, 2, 3, 3)
    assert sorted(n for n, _ in module.named_parameters()) == ["conv_offset.bias", "conv_offset.weight", "weight"]


@pytest.mark.parametrize(("dy", "dx"), [(1, 0), (0, -2), (-1, 3), (2, 2)])
def test_integer_offsets_equal_a_shifted_convolution(dy: int, dx: int) -> None:
    """The same integer offset (dy, dx) at every tap and location: output (i, j) is the plain convolution centred at
    (i + dy, j + dx) of the zero-extended input, i.e. the convolution of a larger canvas, shifted."""
    g = torch.Generator().manual_seed(dy * 7 + dx)
    x, weight = torch.randn(2, 4, 7, 9, generator=g), torch.randn(6, 2, 3, 3, generator=g)
    offset = torch.zeros(2, 2 * 18, 7, 9)  # deform_groups 2, both moved alike
    offset[:, 0::2], offset[:, 1::2] = float(dy), float(dx)
    pad = 1 + max(abs(dy), abs(dx))
    full = F.conv2d(F.pad(x, (pad,) * 4), weight, None, 1, 0, 1, 2)  # full[u, v] centred at input (u + 1 - pad, ...)
    h, w = x.shape[-2:]
    shifted = full[..., pad - 1 + dy:pad - 1 + dy + h, pad - 1 + dx:pad - 1 + dx + w]
    ours = deform_conv2d(x, offset, weight, padding=1, groups=2, deform_groups=2)
    torch.testing.assert_close(ours, shifted, atol=1e-5, rtol=1e-5)


def test_gradients_match_finite_differences() -> None:
    """The plain-torch implementation is differentiable in input, offsets and weights (training DCN models)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    # offsets away from integers, where bilinear sampling is differentiable
    offset = (torch.randint(-2, 3, (1, 18, 4, 5), generator=g) + 0.3 + 0.4 * torch.rand(1, 18, 4, 5, generator=g))
    offset = offset.to(torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: deform_conv2d(a, b, c, padding=1), (x, offset, weight))


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="offset must be"):
        deform_conv2d(torch.randn(1, 4, 5, 5), torch.randn(1, 9, 5, 5), torch.randn(4, 4, 3, 3), padding=1)
    with pytest.raises(ValueError, match="do not fit"):
        deform_conv2d(torch.randn(1, 4, 5, 5), torch.randn(1, 18, 5, 5), torch.randn(4, 4, 3, 3), padding=1, groups=2)
