"""Export of models with deformable convolutions: standard DeformConv nodes at opset 19, every graph check, onnxruntime
equal to torch, and the model left as it was. Small backbones (depth 50 at a quarter of the width) keep it cheap."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from gflv2_deploy.config import BackboneConfig, ModelConfig, load_config
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.onnx import DEFAULT_OPSET, DEFORM_CONV_OPSET, export_onnx
from gflv2_deploy.model.deform_conv import DeformConv2dPack
from gflv2_deploy.model.deploy import DeployModel

BACKBONES = {  # every backbone type with DCN in c3-c5, as narrow as the tiny model
    "resnet": BackboneConfig(depth=50, base_width=16, stage_with_dcn=(False, True, True, True)),
    "resnext": BackboneConfig(type="resnext", depth=50, base_width=16, groups=4, width_per_group=4,
                              stage_with_dcn=(False, False, True, True)),
    "res2net": BackboneConfig(type="res2net", depth=50, base_width=16, scales=4, scale_width=8,
                              stage_with_dcn=(False, False, True, True)),
}
HW = (128, 160)


def small_dcn_config(kind: str) -> ModelConfig:
    tiny = load_config("gflv2_tiny")
    backbone = dataclasses.replace(BACKBONES[kind], frozen_stages=-1, norm_eval=False)
    return dataclasses.replace(tiny, name=f"tiny_{kind}_dcn", backbone=backbone,
                               test=dataclasses.replace(tiny.test, scale=(HW[1], HW[0])))


@pytest.mark.parametrize("kind", sorted(BACKBONES))
def test_dcn_model_exports_deform_conv_nodes_and_matches_torch(kind: str, detecting_model, tmp_path: Path,
                                                               one_torch_thread) -> None:
    model = detecting_model(small_dcn_config(kind), num_classes=6)
    dcn = [m for m in model.modules() if isinstance(m, DeformConv2dPack)]
    path = tmp_path / "dcn.onnx"
    result = export_onnx(model, path, nms="none", nms_pre=0)  # every point, so tensors compare row by row
    assert result.opset == DEFORM_CONV_OPSET and result.contract.producer.opset == DEFORM_CONV_OPSET
    graph = onnx.load(str(path))
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", DEFORM_CONV_OPSET)]
    nodes = [n for n in graph.graph.node if n.op_type == "DeformConv"]
    assert len(nodes) == len(dcn) > 0
    inits = {i.name for i in graph.graph.initializer}
    for node, module in zip(nodes, dcn):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["group"] == module.groups and attrs["offset_group"] == 1 and attrs["pads"] == [1, 1, 1, 1]
        assert attrs["strides"] == list(module.stride) and len(node.input) == 3  # X, W, offset: no bias, no mask
        assert node.input[1] in inits and node.input[1].endswith(".weight")  # the checkpoint's own name
    assert not any(n.op_type in ("GridSample", "GatherElements") for n in graph.graph.node)
    assert [m for m in model.modules() if hasattr(m, "conv_offset")] == dcn  # the modules are back after the export

    images = torch.randn(2, 3, *HW, generator=torch.Generator().manual_seed(5))
    shapes = torch.tensor([[HW[0], HW[1]], [HW[0] - 32, HW[1]]], dtype=torch.float32)
    with torch.no_grad():
        ref_boxes, ref_scores = DeployModel(model, clamp=True, nms_pre=0)(images, shapes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": images.numpy(), "img_shape": shapes.numpy()})
    np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-3)
    assert float(ref_scores.max()) > 0.05  # a detecting model: the comparison covers real detections


def test_opset_and_exporter_rules_for_dcn_models(detecting_model, tmp_path: Path) -> None:
    model = detecting_model(small_dcn_config("resnet"), num_classes=6)
    with pytest.raises(UserError, match="DeformConv needs opset 19"):
        export_onnx(model, tmp_path / "a.onnx", opset=DEFAULT_OPSET)
    with pytest.raises(UserError, match="torchscript exporter only"):
        export_onnx(model, tmp_path / "b.onnx", exporter="dynamo")
    assert not list(tmp_path.iterdir())  # refused before any output


def test_end_to_end_graph_with_onnx_nms_runs_in_onnxruntime(detecting_model, tmp_path: Path, one_torch_thread) -> None:
    model = detecting_model(small_dcn_config("resnext"), num_classes=6)
    path = tmp_path / "dcn.e2e.onnx"
    export_onnx(model, path, nms="onnx", dynamic_hw=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).standard_normal((1, 3, 96, 128)).astype(np.float32)
    num_dets, boxes, scores, classes = session.run(None, {"images": images, "img_shape": np.array([[96, 128]], np.float32)})
    assert num_dets.shape == (1, 1) and 0 < int(num_dets[0, 0]) <= boxes.shape[1]


@pytest.fixture(scope="module")
def dcn_prenms(tmp_path_factory: pytest.TempPathFactory, detecting_model) -> Path:
    """The small ResNet-DCN model's pre-NMS ONNX at 128 x 160 (every point), the precision converters' source."""
    path = tmp_path_factory.mktemp("dcn_precision") / "dcn.prenms.onnx"
    export_onnx(detecting_model(small_dcn_config("resnet"), num_classes=6), path, nms="none", nms_pre=0)
    return path


def _deform_conv_io(path: Path) -> list[tuple[list[int], str]]:
    """Per DeformConv: the element types of (X, W, offset) and the op type of the offset's producer (through Q/DQ)."""
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producers = {o: n for n in model.graph.node for o in n.output}
    rows = []
    for node in (n for n in model.graph.node if n.op_type == "DeformConv"):
        offset_conv = producers[node.input[2]]
        weight_src = producers.get(offset_conv.input[1])
        rows.append(([types[name] for name in node.input[:3]], weight_src.op_type if weight_src else "initializer"))
    return rows


def test_fp16_keeps_deform_convs_and_offset_convs_float32(dcn_prenms: Path, tmp_path: Path) -> None:
    from gflv2_deploy.contract_io import read_onnx_contract
    from gflv2_deploy.export.fp16 import convert_fp16

    default = convert_fp16(dcn_prenms, tmp_path / "fp16.onnx").path
    assert all(t == [TensorProto.FLOAT] * 3 for t, _ in _deform_conv_io(default))
    assert read_onnx_contract(default).precision.recipe["deform_conv_fp32"] is True
    converted = convert_fp16(dcn_prenms, tmp_path / "fp16_dcn.onnx", keep_deform_conv_fp32=False).path  # to measure it
    assert all(t == [TensorProto.FLOAT16] * 3 for t, _ in _deform_conv_io(converted))
    feeds = {"images": np.zeros((1, 3, *HW), np.float32), "img_shape": np.array([HW], np.float32)}
    for path in (default, converted):  # onnxruntime runs both
        scores = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], feeds)[0]
        assert np.isfinite(scores).all()


def test_int8_never_quantises_offset_convs(dcn_prenms: Path, tiny50: Path, tmp_path: Path) -> None:
    from gflv2_deploy.contract_io import read_onnx_contract
    from gflv2_deploy.export.quantize import quantize_int8

    calib = dict(calib_data=tiny50 / "val2017", calib_images=2, target="tensorrt")
    default = quantize_int8(dcn_prenms, tmp_path / "int8.onnx", **calib).path
    rows = _deform_conv_io(default)
    assert rows and all(t == [TensorProto.FLOAT] * 3 and src == "initializer" for t, src in rows)  # float offset convs
    assert read_onnx_contract(default).precision.recipe["deform_conv_offsets_float"] is True
    quantised = quantize_int8(dcn_prenms, tmp_path / "int8_offsets.onnx", keep_deform_conv_float=False, **calib).path
    assert all(src == "DequantizeLinear" for _, src in _deform_conv_io(quantised))  # int8 weights when asked
