"""What inspect_onnx reads from a model before TensorRT sees it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import onnx
import pytest

from gflv2_deploy.engine.onnx_info import inspect_onnx
from gflv2_deploy.contract import CONTRACT_FORMAT, CONTRACT_METADATA_KEY, CONTRACT_VERSION
from gflv2_deploy.errors import UserError


def test_precision_detection(toy_fp32: Path, toy_fp16: Path, toy_qdq: Path) -> None:
    assert inspect_onnx(toy_fp32).detected_precision == "fp32"
    assert inspect_onnx(toy_fp16).detected_precision == "fp16"
    qdq = inspect_onnx(toy_qdq)
    assert qdq.detected_precision == "int8" and qdq.num_qdq_nodes == 4


def test_io_and_opset(toy_fp32: Path) -> None:
    info = inspect_onnx(toy_fp32)
    assert info.opset == 17
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("images", ("batch", 3, 32, 32), "float32")]
    assert [(t.name, t.shape, t.dtype) for t in info.outputs] == [("feat", ("batch", 8, 32, 32), "float32")]
    assert info.plugin_nodes == [] and info.contract is None


def test_plugin_nodes(make_onnx: Callable[..., Path]) -> None:
    info = inspect_onnx(make_onnx("efficient_nms", "e2e.onnx"))
    [node] = info.plugin_nodes
    assert (node.name, node.op_type, node.domain, node.plugin_version, node.plugin_namespace) == (
        "nms", "EfficientNMS_TRT", "", "1", "",
    )
    assert inspect_onnx(make_onnx("onnx_nms", "nms.onnx")).plugin_nodes == []  # a standard op


def test_bad_spec_metadata(toy_fp32: Path, tmp_path: Path) -> None:
    model = onnx.load(str(toy_fp32))
    model.metadata_props.add(key=CONTRACT_METADATA_KEY, value="{broken")
    bad = tmp_path / "bad_spec.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(UserError, match="not valid JSON"):
        inspect_onnx(bad)
    model.metadata_props[-1].value = json.dumps({"format": CONTRACT_FORMAT, "format_version": CONTRACT_VERSION + 1})
    onnx.save(model, str(bad))
    with pytest.raises(UserError, match=f"graph contract version {CONTRACT_VERSION + 1}, this gflv2-deploy reads versions 2, 3: upgrade"):
        inspect_onnx(bad)  # read exactly as a runner reads it: a newer contract is refused in one line


def test_missing_external_weights(make_onnx: Callable[..., Path]) -> None:
    model = make_onnx("conv_relu", "ext.onnx", external=True)
    (model.parent / "ext.onnx.data").unlink()
    with pytest.raises(UserError, match="ext.onnx.data, which is missing"):
        inspect_onnx(model)
