"""TensorRT backends through the one backend factory and the CLI commands, with a real TensorRT-RTX engine.

TensorRT engines cannot run here (no GPU, no driver, no cuda-python, no TensorRT 10/11): every command
must answer ``tensorrt:`` / ``tensorrt-rtx:`` with exit status 2 and ONE line naming what is missing,
never "unknown backend". The CLI tests run the real commands in subprocesses.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gflv2_deploy.engine import manifest_path
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime import factory, trt_runner

HAS_CUDA_PYTHON = importlib.util.find_spec("cuda") is not None
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def trt10_engine(rtx_engine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RTX engine's bytes under a manifest that says TensorRT 10.16 built it (TensorRT cannot be installed here)."""
    engine = tmp_path_factory.mktemp("trt10") / "model.engine"
    engine.write_bytes(rtx_engine.read_bytes())
    manifest = json.loads(manifest_path(rtx_engine).read_text())
    manifest["runtime"] = {"flavour": "tensorrt", "version": "10.16.0.72", "major": 10}
    manifest["target"] = {"kind": "gpu", "gpu_name": "NVIDIA H200", "compute_capability": "9.0"}
    manifest_path(engine).write_text(json.dumps(manifest))
    return engine


def _missing_line(backend: str) -> str:
    """What this machine lacks for ``backend``, as the one error line says it."""
    if backend == "tensorrt" and not HAS_TENSORRT:
        return "needs the Python module 'tensorrt', which is not installed: pip install 'gflv2-deploy[tensorrt]'"
    if not HAS_CUDA_PYTHON:
        return f"needs the Python module 'cuda.bindings (cuda-python)', which is not installed: pip install 'gflv2-deploy[{backend}]'"
    return "no CUDA GPU 0 is visible here (no NVIDIA driver, or no GPU)"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gflv2_deploy.cli", *args], capture_output=True, text=True, timeout=300)


def _gpu_visible() -> bool:
    from gflv2_deploy.engine.trt_api import query_device

    return HAS_CUDA_PYTHON and query_device() is not None


@pytest.mark.skipif(_gpu_visible(), reason="a GPU with its driver is visible: the engines could run here")
@pytest.mark.parametrize("backend", ["tensorrt-rtx", "tensorrt"])
def test_cli_commands_answer_one_line_naming_what_is_missing(backend: str, rtx_engine: Path, trt10_engine: Path,
                                                             tmp_path: Path) -> None:
    engine = str(rtx_engine if backend == "tensorrt-rtx" else trt10_engine)
    spec = f"{backend}:{engine}"
    commands = {
        "predict": ["predict", spec, str(tmp_path / "a.jpg"), "-o", str(tmp_path / "pred")],
        "predict --backend": ["predict", engine, str(tmp_path / "a.jpg"), "-o", str(tmp_path / "pred"), "--backend", backend],
        "eval": ["eval", "--backend", backend, "--model", engine, "--data", str(tmp_path)],
        "compare": ["compare", "--ref", spec, "--test", spec, "--images", str(tmp_path)],
        "bench": ["bench", "--backend", backend, "--model", engine, "--shape", "32x32", "--cache-dir", str(tmp_path / "c")],
    }
    for name, args in commands.items():
        proc = _cli(*args)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, f"{name}: rc {proc.returncode}\n{proc.stderr}"
        assert lines[0].startswith("error: ") and _missing_line(backend) in lines[0], f"{name}: {lines[0]}"
        assert "unknown backend" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pred").exists() and not (tmp_path / "c").exists()


def test_factory_knows_the_tensorrt_backends(rtx_engine: Path, trt10_engine: Path, tmp_path: Path) -> None:
    assert {"tensorrt", "tensorrt-rtx"} <= set(factory.BACKENDS)
    assert factory.parse_model_spec(f"tensorrt-rtx:{rtx_engine}") == ("tensorrt-rtx", rtx_engine)
    assert factory.infer_backend(rtx_engine) == "tensorrt-rtx" and factory.infer_backend(trt10_engine) == "tensorrt"
    assert factory.infer_backend(Path("m.onnx")) == "onnxruntime" and factory.infer_backend(Path("m.pth")) == "torch"
    assert factory.resolve_model(f"tensorrt:{trt10_engine}") == ("tensorrt", trt10_engine)
    assert factory.resolve_model(str(rtx_engine)) == ("tensorrt-rtx", rtx_engine)
    assert factory.resolve_model("m.onnx", "onnxruntime") == ("onnxruntime", Path("m.onnx"))
    with pytest.raises(UserError, match="contradicts"):
        factory.resolve_model(f"tensorrt:{trt10_engine}", "torch")
    assert [factory.cuda_device_index(d) for d in ("cpu", "cuda", "cuda:3")] == [0, 0, 3]
    with pytest.raises(UserError, match="cuda:N"):
        factory.cuda_device_index("gpu1")
    with pytest.raises(UserError, match=r"built with tensorrt-rtx .*, not tensorrt: run it with the tensorrt-rtx backend"):
        factory.make_detector("tensorrt", rtx_engine)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(UserError, match=r"tensorrt-rtx runs engines, and .*m\.onnx is not one: build it first"):
        factory.make_detector("tensorrt-rtx", onnx)


def test_missing_gpu_is_named(rtx_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With cuda-python present but no driver / GPU (query_device answers None), the line names the GPU."""
    from gflv2_deploy.engine import trt_api

    monkeypatch.setattr(trt_runner, "import_cudart", lambda extra="tensorrt", runtime_label="TensorRT": object())
    monkeypatch.setattr(trt_api, "query_device", lambda index=0: None)
    with pytest.raises(UserError, match=r"no CUDA GPU 1 is visible here \(no NVIDIA driver, or no GPU\)") as info:
        factory.make_detector("tensorrt-rtx", rtx_engine, device="cuda:1")
    assert not isinstance(info.value, MissingDependencyError)
