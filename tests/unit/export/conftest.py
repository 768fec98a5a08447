"""Fixtures for the export tests: gflv2_tiny with random but non-trivial weights, saved as a checkpoint,
and that checkpoint exported once per NMS form (dynamic batch and dynamic height/width).

At the initial weights every joint score is about 0.005 (prior 0.01 x quality 0.5), below the 0.05
threshold, and all boxes look alike. Here the classification layer gets a spread of per-class biases
and larger weights (about 5 % of (point, class) pairs score above 0.05, varying over space), the
regression logits get weights and biases (boxes of many sizes), and the DGQP MLP a spread of qualities.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gflv2_deploy import build_model
from gflv2_deploy.model.checkpoint import save_checkpoint
from gflv2_deploy.model.detector import GFLV2

SIZES = ((160, 224), (320, 416))


def nontrivial_model(seed: int = 0, num_classes: int = 80) -> GFLV2:
    """gflv2_tiny in eval mode with perturbed head weights (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the builder's random init draws from the global generator
        torch.manual_seed(seed)
        model = build_model("gflv2_tiny", num_classes=num_classes).eval()
    head = model.bbox_head

    def randn(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=g) * std

    with torch.no_grad():
        head.gfl_cls.weight.copy_(randn(head.gfl_cls.weight, 0.15))
        head.gfl_cls.bias.copy_(-7.5 + 2.0 * torch.rand(head.gfl_cls.bias.shape, generator=g))
        head.gfl_reg.weight.copy_(randn(head.gfl_reg.weight, 0.05))
        head.gfl_reg.bias.copy_(randn(head.gfl_reg.bias, 1.0))
        head.reg_conf[0].weight.copy_(randn(head.reg_conf[0].weight, 0.5))
        head.reg_conf[2].bias.fill_(1.0)
        for level, scale in enumerate(head.scales):
            scale.scale.fill_(1.0 + 0.1 * level)
    return model


@pytest.fixture(scope="session")
def tiny_model() -> GFLV2:
    return nontrivial_model()


@pytest.fixture(scope="session")
def prenms(tmp_path_factory: pytest.TempPathFactory, tiny_model: GFLV2) -> Path:
    """The FP16 and INT8 tests' source: tiny_model's pre-NMS ONNX at 128 x 160 (dynamic batch, test scale
    (160, 128)), every point emitted (nms_pre 0) so tensors compare row by row. Read only."""
    from gflv2_deploy.export.onnx import export_onnx

    small = dataclasses.replace(tiny_model.config, test=dataclasses.replace(tiny_model.config.test, scale=(160, 128)))
    path = tmp_path_factory.mktemp("precision_src") / "tiny.prenms.onnx"
    export_onnx(tiny_model, path, config=small, dynamic_batch=True, input_hw=(128, 160), nms_pre=0)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model: GFLV2) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, tiny_model, tiny_model.config)
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, Path]:
    """The checkpoint exported with dynamic batch and H/W, one file per NMS form, each in its own folder."""
    from gflv2_deploy.export.onnx import export_onnx

    paths = {}
    for form in ("none", "onnx", "trt"):
        out = tmp_path_factory.mktemp(f"onnx_{form}") / f"tiny_{form}.onnx"
        export_onnx(tiny_checkpoint, out, nms=form, dynamic_batch=True, dynamic_hw=True, input_hw=SIZES[0])
        paths[form] = out
    return paths


def smooth_images(n: int, hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A normalised-looking input batch: smooth random fields (not white noise) of n x 3 x H x W."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, hw[0] // 16, hw[1] // 16, generator=g)
    return torch.nn.functional.interpolate(low, size=hw, mode="bilinear", align_corners=False) * 1.5


@pytest.fixture(scope="session")
def make_images():
    """Factory ``make_images(n, (H, W), seed=0)`` -> float32 tensor n x 3 x H x W."""
    return smooth_images


@pytest.fixture(scope="session")
def make_model():
    """Factory ``make_model(seed=0, num_classes=80)`` -> a gflv2_tiny with non-trivial weights."""
    return nontrivial_model


@pytest.fixture(scope="session")
def sizes() -> tuple[tuple[int, int], ...]:
    """The two input sizes of the parity tests (H, W)."""
    return SIZES
