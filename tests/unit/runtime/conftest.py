"""Fixtures for the onnxruntime runner tests: a small gflv2_tiny (6 classes) exported in several forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from gflv2_deploy.model.detector import GFLV2


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
