"""Fixtures for the runner tests: a small gflv2_tiny (6 classes) exported in several forms (onnxruntime), and
a toy TensorRT-RTX engine built here on the CPU (TensorRT runner and backend factory; it cannot run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from gflv2_deploy.engine import build_engine
from gflv2_deploy.engine.trt_api import RuntimeInfo, load_runtime
from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.onnx_ir import stamp_lowest_ir_version


@pytest.fixture(scope="session")
def runtime_model(detecting_tiny) -> GFLV2:
    return detecting_tiny(0)


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory: pytest.TempPathFactory, runtime_model: GFLV2) -> dict[str, Path]:
    """'prenms' (dynamic batch and H/W), 'e2e' (NMS onnx, dynamic), 'trt' (EfficientNMS), 'static' (2 x 3 x 96 x 128, no img_shape)."""
    from gflv2_deploy.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("runtime_onnx")
    files = {
        "prenms": dict(nms="none", dynamic_hw=True, input_hw=(96, 128)),
        "e2e": dict(nms="onnx", dynamic_hw=True, input_hw=(96, 128)),
        "trt": dict(nms="trt", dynamic_hw=True, input_hw=(96, 128)),
        "static": dict(nms="none", dynamic_batch=False, batch_size=2, input_hw=(96, 128), clamp=False),
    }
    out = {}
    for name, kwargs in files.items():
        out[name] = folder / f"{name}.onnx"
        export_onnx(runtime_model, out[name], **kwargs)
    return out


def _toy_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["feat"], name="relu")], "toy", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    stamp_lowest_ir_version(model)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="session")
def rtx_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images [1..2, 3, 32, 32] -> Relu -> feat, as a TensorRT-RTX 8.6 engine with its manifest."""
    folder = tmp_path_factory.mktemp("trt_runner")
    out = folder / "toy.engine"
    build_engine(_toy_onnx(folder / "toy.onnx"), out, runtime="tensorrt-rtx", rtx_targets=["8.6"],
                 shapes={"images": ((1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 32, 32))})
    return out


@pytest.fixture(scope="session")
def rtx() -> RuntimeInfo:
    """The real TensorRT-RTX (a missing install fails with the extra to install, not a skip)."""
    return load_runtime("tensorrt-rtx")
