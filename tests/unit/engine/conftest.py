"""Tiny ONNX graphs for the engine tests, written with the ``onnx`` helper API (no torch).

Every builder returns the path it wrote. Graphs: Conv+Relu with a dynamic batch (fp32, fp16, or
with int8 Q/DQ), a deliberately broken Conv, a lone EfficientNMS_TRT node, and a lone ONNX
NonMaxSuppression node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gflv2_deploy.engine.trt_api import RuntimeInfo, load_runtime
from gflv2_deploy.onnx_ir import stamp_lowest_ir_version

OPSET = 17
TOY_SHAPES = {"images": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))}
NMS_ATTRS: dict[str, Any] = {
    "score_threshold": 0.05,
    "iou_threshold": 0.6,
    "max_output_boxes": 10,
    "background_class": -1,
    "score_activation": 0,
    "class_agnostic": 0,
    "box_coding": 0,
    "plugin_version": "1",
    "plugin_namespace": "",
}


def _save(nodes: list, inputs: list, outputs: list, inits: list, path: Path, metadata: dict[str, str] | None = None,
          external: bool = False) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    stamp_lowest_ir_version(model)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    if not any(n.op_type.endswith("_TRT") for n in nodes):
        onnx.checker.check_model(model)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def conv_relu_onnx(path: Path, *, dtype: str = "float32", qdq: bool = False, batch: int | str = "batch",
                   spec: dict[str, Any] | None = None, external: bool = False) -> Path:
    """images [batch,3,32,32] -> Conv 3x3 (8 channels, pad 1) -> Relu -> feat [batch,8,32,32]."""
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((8, 3, 3, 3)) * 0.1).astype(dtype)
    bias = np.zeros(8, dtype)
    x = helper.make_tensor_value_info("images", elem, [batch, 3, 32, 32])
    y = helper.make_tensor_value_info("feat", elem, [batch, 8, 32, 32])
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes = []
    conv_in, conv_w = "images", "w"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
            numpy_helper.from_array(np.full(8, 0.002, np.float32), "w_scale"),
            numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["images", "x_scale", "x_zero"], ["x_q"], name="quant_x"),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dequant_x"),
            helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["w_q"], name="quant_w", axis=0),
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], name="dequant_w", axis=0),
        ]
        conv_in, conv_w = "x_dq", "w_dq"
    nodes += [
        helper.make_node("Conv", [conv_in, conv_w, "b"], ["conv_out"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv_out"], ["feat"], name="relu0"),
    ]
    metadata = {"gflv2_deploy.contract": json.dumps(spec)} if spec is not None else None
    return _save(nodes, [x], [y], inits, path, metadata, external)


def to_fp16(src: Path, dst: Path) -> Path:
    """Cast every float32 initializer and graph I/O of ``src`` to float16 (what an fp16 export gives)."""
    model = onnx.load(str(src))
    for index, init in enumerate(list(model.graph.initializer)):
        if init.data_type == TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name)
            model.graph.initializer[index].CopyFrom(half)
    for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def broken_conv_onnx(path: Path) -> Path:
    """A Conv whose weight has rank 2: valid protobuf, rejected by the TensorRT parser."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("feat", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((8, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["feat"], name="bad_conv")], "broken", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    stamp_lowest_ir_version(model)
    onnx.save(model, str(path))  # no checker: it would rightly refuse this graph
    return path


def efficient_nms_onnx(path: Path, num_boxes: int = 100, num_classes: int = 3) -> Path:
    """boxes [B,N,4] + scores [B,N,C] -> EfficientNMS_TRT (empty domain) -> the four padded outputs."""
    k = NMS_ATTRS["max_output_boxes"]
    inputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", num_boxes, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", num_boxes, num_classes]),
    ]
    outputs = [
        helper.make_tensor_value_info("num_dets", TensorProto.INT32, ["batch", 1]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, ["batch", k, 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, ["batch", k]),
        helper.make_tensor_value_info("det_classes", TensorProto.INT32, ["batch", k]),
    ]
    node = helper.make_node("EfficientNMS_TRT", ["boxes", "scores"], [o.name for o in outputs], name="nms", **NMS_ATTRS)
    return _save([node], inputs, outputs, [], path)


def onnx_nms_onnx(path: Path, num_boxes: int = 100, num_classes: int = 3) -> Path:
    """boxes [B,N,4] + scores [B,C,N] -> ONNX NonMaxSuppression -> selected indices [M,3]."""
    inputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", num_boxes, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", num_classes, num_boxes]),
    ]
    outputs = [helper.make_tensor_value_info("selected", TensorProto.INT64, ["num_selected", 3])]
    inits = [
        numpy_helper.from_array(np.array([10], np.int64), "max_per_class"),
        numpy_helper.from_array(np.array([0.6], np.float32), "iou_threshold"),
        numpy_helper.from_array(np.array([0.05], np.float32), "score_threshold"),
    ]
    node = helper.make_node(
        "NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou_threshold", "score_threshold"], ["selected"],
        name="onnx_nms",
    )
    return _save([node], inputs, outputs, inits, path)


@pytest.fixture(scope="session")
def rtx() -> RuntimeInfo:
    """The real TensorRT-RTX (a missing install fails with the extra to install, not a skip)."""
    return load_runtime("tensorrt-rtx")


@pytest.fixture
def onnx_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "onnx"
    folder.mkdir()
    return folder


@pytest.fixture
def toy_fp32(onnx_dir: Path) -> Path:
    return conv_relu_onnx(onnx_dir / "toy_fp32.onnx")


@pytest.fixture
def toy_fp16(onnx_dir: Path, toy_fp32: Path) -> Path:
    return to_fp16(toy_fp32, onnx_dir / "toy_fp16.onnx")


@pytest.fixture
def toy_qdq(onnx_dir: Path) -> Path:
    return conv_relu_onnx(onnx_dir / "toy_int8.onnx", qdq=True)


@pytest.fixture
def make_onnx(onnx_dir: Path) -> Callable[..., Path]:
    """Factory: make_onnx(kind, name, **kwargs) for kind in conv_relu / broken / efficient_nms / onnx_nms."""
    builders = {
        "conv_relu": conv_relu_onnx,
        "broken": broken_conv_onnx,
        "efficient_nms": efficient_nms_onnx,
        "onnx_nms": onnx_nms_onnx,
    }

    def make(kind: str, name: str, **kwargs: Any) -> Path:
        return builders[kind](onnx_dir / name, **kwargs)

    return make


def _sample_contract(**post: Any) -> Any:
    """A valid graph contract (docs/contract.md) for a toy graph: tests of how the engine stage carries it."""
    from gflv2_deploy.contract import GraphContract, ModelInfo, Postprocessing, Preprocessing, Producer, TensorInfo

    return GraphContract(
        model=ModelInfo(config_name="toy", class_names=("a", "b")),
        inputs=(TensorInfo("images", "float32", ("batch", 3, 32, 32)),),
        outputs=(TensorInfo("feat", "float32", ("batch", 8, 32, 32)),),
        preprocessing=Preprocessing(test_scale=(32, 32), input_hw=(32, 32)),
        postprocessing=Postprocessing(**post),
        producer=Producer(tool_version="0.1.0"),
    )


@pytest.fixture(scope="session")
def sample_contract() -> Callable[..., Any]:
    """Factory ``sample_contract(**postprocessing)`` -> a valid GraphContract of a toy graph."""
    return _sample_contract
