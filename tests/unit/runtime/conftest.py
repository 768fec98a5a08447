"""Fixtures for the onnxruntime runner tests: a small gflv2_tiny (6 classes) exported in several forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gflv2_deploy import build_model
from gflv2_deploy.model.detector import GFLV2


def small_model(seed: int = 0) -> GFLV2:
    """gflv2_tiny with 6 classes and head weights that give real detections (scores above 0.05)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model("gflv2_tiny", num_classes=6).eval()
        head = model.bbox_head
        with torch.no_grad():
            head.gfl_cls.weight.normal_(0, 0.15)
            head.gfl_cls.bias.uniform_(-5.0, -3.0)
            head.gfl_reg.weight.normal_(0, 0.05)
            head.gfl_reg.bias.normal_(0, 1.0)
            head.reg_conf[2].bias.fill_(1.0)
    return model


@pytest.fixture(scope="session")
def runtime_model() -> GFLV2:
    return small_model()


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
