"""The torch reference computes in IEEE FP32: TF32 is off for every forward pass of a TorchRunner and the process's
own settings come back afterwards; ``tf32=True`` is an explicit CUDA-only option (on an H200, cuDNN's default TF32
convolutions moved CPU vs CUDA detections to 96.2 % matched; 100 % with it off). What a GPU adds is in the GPU script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.torch_runner import TorchRunner, _precision_settings, float32_math

REPO = Path(__file__).resolve().parents[3]


def current() -> list:
    return [getattr(obj, attr) for obj, attr in _precision_settings()]


def tf32_everywhere() -> None:
    """What a process that opted into TF32 for itself has set (the runner must neither keep nor break it)."""
    for obj, attr in _precision_settings():
        setattr(obj, attr, True if attr == "allow_tf32" else "tf32")


def test_forward_passes_run_in_ieee_fp32_and_restore_the_process_settings(detecting_tiny) -> None:
    before = current()
    try:
        tf32_everywhere()
        process = current()
        seen: list[list] = []
        model = detecting_tiny(0)
        model.backbone.register_forward_pre_hook(lambda module, args: seen.append(current()))
        runner = TorchRunner(model, "cpu")
        assert current() == process  # building a runner changes nothing
        images = np.zeros((1, 3, 64, 64), np.float32)
        runner.infer(images)
        runner.head_outputs(images)
        assert len(seen) == 2 and all(value in (False, "ieee") for s in seen for value in s), seen
        assert current() == process and runner.math == "fp32"
        with float32_math(tf32=True):  # the opt-in: TF32 where CUDA computes, IEEE on the CPU side
            inside = dict(zip([f"{type(o).__name__}.{a}" for o, a in _precision_settings()], current()))
        assert "tf32" in inside.values() or True in inside.values(), inside
        assert current() == process
    finally:
        for (obj, attr), value in zip(_precision_settings(), before):
            setattr(obj, attr, value)


def test_importing_the_package_changes_no_setting() -> None:
    script = ("import torch\nfrom gflv2_deploy.runtime.torch_runner import _precision_settings\n"
              "before = [getattr(o, a) for o, a in _precision_settings()]\n"
              "import gflv2_deploy.runtime.torch_runner, gflv2_deploy.runtime.factory, gflv2_deploy.cli\n"
              "assert [getattr(o, a) for o, a in _precision_settings()] == before\nprint('unchanged')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0 and "unchanged" in proc.stdout, proc.stderr[-1000:]


def test_tf32_is_a_cuda_option_of_the_torch_backend(detecting_tiny, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--tf32 is a CUDA setting"):
        TorchRunner(detecting_tiny(0), "cpu", tf32=True)
    from gflv2_deploy.runtime.factory import make_detector

    with pytest.raises(UserError, match="--tf32 sets the math of the torch reference"):
        make_detector("onnxruntime", tmp_path / "m.onnx", tf32=True)
    runner = TorchRunner(detecting_tiny(0), "cpu")
    assert runner.with_graph_selection(10, False).math == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_reference_matches_the_cpu_in_fp32(detecting_tiny) -> None:
    """The H200 finding: with TF32 off, CUDA and CPU scores agree to ~1e-6."""
    images = np.random.default_rng(0).standard_normal((2, 3, 256, 384)).astype(np.float32)
    cpu = TorchRunner(detecting_tiny(0), "cpu").infer(images)
    gpu = TorchRunner(detecting_tiny(0), "cuda").infer(images)
    assert np.abs(cpu["scores"] - gpu["scores"]).max() < 1e-5
