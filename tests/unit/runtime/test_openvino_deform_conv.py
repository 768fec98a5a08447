"""OpenVINO and ONNX DeformConv: its ONNX frontend has no rule for the op; ours (runtime/openvino_deform_conv.py)
maps it onto DeformableConvolution-8 and gives onnxruntime's numbers, for single nodes and for a whole DCN detector."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

ov = pytest.importorskip("openvino")

from gflv2_deploy.runtime.openvino_deform_conv import add_deform_conv_conversion  # noqa: E402
from gflv2_deploy.runtime.openvino_runner import OpenVinoRunner  # noqa: E402
from gflv2_deploy.runtime.ort_runner import OrtRunner  # noqa: E402


def _node_graph(path: Path, c: int, o: int, h: int, w: int, stride: int, pad: int, dil: int, groups: int, dg: int,
                bias: bool, mask: bool) -> tuple[Path, dict[str, np.ndarray]]:
    oh, ow = (h + 2 * pad - dil * 2 - 1) // stride + 1, (w + 2 * pad - dil * 2 - 1) // stride + 1
    rng = np.random.default_rng(c * 100 + o)
    feeds = {"x": rng.standard_normal((2, c, h, w)), "w": rng.standard_normal((o, c // groups, 3, 3)),
             "offset": rng.standard_normal((2, dg * 18, oh, ow)) * 4}  # 4 px: many taps fall outside
    if bias:
        feeds["b"] = rng.standard_normal(o)
    if mask:
        feeds["mask"] = rng.uniform(0, 1, (2, dg * 9, oh, ow))
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    inputs = ["x", "w", "offset"] + (["b"] if bias else [""] if mask else []) + (["mask"] if mask else [])
    node = helper.make_node("DeformConv", inputs, ["y"], kernel_shape=[3, 3], pads=[pad] * 4, strides=[stride] * 2,
                            dilations=[dil] * 2, group=groups, offset_group=dg)
    graph = helper.make_graph([node], "dcn", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feeds.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, o, oh, ow])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path, feeds


def test_openvino_frontend_alone_has_no_deform_conv(tmp_path: Path) -> None:
    """Why the rule exists (OpenVINO 2026.4.1). When a release converts DeformConv itself, this fails: drop the rule."""
    path, _ = _node_graph(tmp_path / "dcn.onnx", 4, 4, 5, 6, 1, 1, 1, 1, 1, False, False)
    with pytest.raises(RuntimeError, match="DeformConv"):
        ov.Core().read_model(str(path))


@pytest.mark.parametrize(("case", "bias", "mask"), [
    ((4, 4, 5, 6, 1, 1, 1, 1, 1), False, False),  # as the exporter writes it
    ((4, 6, 7, 6, 2, 1, 1, 2, 2), False, False),  # stride 2, groups, offset groups
    ((6, 4, 6, 7, 1, 2, 2, 2, 3), True, False),  # dilation, bias
    ((4, 4, 5, 6, 1, 1, 1, 1, 2), True, True),  # DCNv2-style mask
    ((4, 4, 5, 6, 1, 1, 1, 1, 1), False, True),  # mask without bias (an empty input name)
])
def test_conversion_matches_onnxruntime(tmp_path: Path, case: tuple, bias: bool, mask: bool) -> None:
    path, feeds = _node_graph(tmp_path / "dcn.onnx", *case, bias=bias, mask=mask)
    core = ov.Core()
    add_deform_conv_conversion(core)
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ours = compiled(feeds)[0]
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=1e-5)


def test_dcn_detector_runs_in_openvino_as_in_onnxruntime(tmp_path: Path, detecting_model, one_torch_thread) -> None:
    from gflv2_deploy.config import BackboneConfig, load_config
    from gflv2_deploy.export.onnx import export_onnx

    tiny = load_config("gflv2_tiny")
    backbone = BackboneConfig(depth=50, base_width=16, frozen_stages=-1, norm_eval=False,
                              stage_with_dcn=(False, True, True, True))
    cfg = dataclasses.replace(tiny, name="tiny_dcn", backbone=backbone, test=dataclasses.replace(tiny.test, scale=(160, 128)))
    path = tmp_path / "dcn.prenms.onnx"
    export_onnx(detecting_model(cfg, num_classes=6), path, nms="none", nms_pre=0)
    images = np.random.default_rng(1).standard_normal((2, 3, 128, 160)).astype(np.float32)
    shapes = np.array([[128, 160], [96, 160]], np.float32)
    with OpenVinoRunner(path, threads=1) as runner:
        ours = runner.infer(images, shapes)
    ref = OrtRunner(path, threads=1).infer(images, shapes)
    np.testing.assert_allclose(ours["scores"], ref["scores"], atol=1e-5)
    np.testing.assert_allclose(ours["boxes"], ref["boxes"], atol=1e-3)
    assert float(ref["scores"].max()) > 0.05
