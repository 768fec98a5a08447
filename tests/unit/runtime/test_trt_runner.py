"""The TensorRT runner without a GPU: import hygiene, loading order and refusals with the real TensorRT-RTX,
argument checks, and the buffer / binding / CUDA-graph logic driven through a host-memory loopback.

What runs for real here: reading the manifest, importing TensorRT-RTX, refusing an engine of another
TensorRT version with the rebuild command, and the missing cuda-python / TensorRT errors. The
loopback (``_FakeCudart`` + ``_FakeTrt``) stands in for the CUDA runtime and an engine with plain host
memory (``ctypes``), so the runner's pointer arithmetic, pinned-buffer views, by-name binding, output
shapes and graph-capture bookkeeping execute as written; it proves nothing about TensorRT or CUDA
themselves, which were never run in this project.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from gflv2_deploy.contract import GraphContract, ModelInfo, Postprocessing, Preprocessing, Producer, TensorInfo
import pytest
from onnx import TensorProto, helper

from gflv2_deploy import spec
from gflv2_deploy.engine import build_engine, manifest_path
from gflv2_deploy.engine.trt_api import DeviceInfo, RuntimeInfo
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime import trt_runner
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.trt_runner import TrtRunner, check_input_shape

MODULE = Path(trt_runner.__file__)


def test_import_pulls_in_no_tensorrt_or_cuda() -> None:
    code = ("import sys, gflv2_deploy.runtime.trt_runner\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'tensorrt_rtx', 'cuda', 'pycuda')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    tree = ast.parse(MODULE.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not any(name.split(".")[0] in ("tensorrt", "tensorrt_rtx", "cuda", "pycuda", "torch") for name in names)
    every = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("pycuda" in (a.name for a in n.names) or (getattr(n, "module", "") or "").startswith("pycuda")
                   for n in every)  # cuda-python only


def _toy_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["feat"], name="relu")], "toy", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def rtx_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trt_runner")
    out = folder / "toy.engine"
    build_engine(_toy_onnx(folder / "toy.onnx"), out, runtime="tensorrt-rtx", rtx_targets=["8.6"],
                 shapes={"images": ((1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 32, 32))})
    return out


def test_missing_cuda_bindings_is_one_clear_error(rtx_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)  # import cuda.* now raises ImportError, installed or not
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(MissingDependencyError, match=r"cuda\.bindings.*pip install 'gflv2-deploy\[tensorrt\]'"):
        TrtRunner(rtx_engine)


def test_engine_of_another_version_is_refused_with_rebuild_command(rtx_engine: Path, tmp_path: Path) -> None:
    engine = tmp_path / "old.engine"
    engine.write_bytes(rtx_engine.read_bytes())
    manifest = json.loads(manifest_path(rtx_engine).read_text())
    manifest["runtime"]["version"] = "1.0.0.1"
    manifest_path(engine).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"built with TensorRT-RTX 1\.0\.0\.1.*gflv2-deploy build .*--runtime tensorrt-rtx"):
        TrtRunner(engine)


def test_missing_tensorrt_names_the_extra(rtx_engine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = tmp_path / "trt10.engine"
    engine.write_bytes(rtx_engine.read_bytes())
    manifest = json.loads(manifest_path(rtx_engine).read_text())
    manifest["runtime"] = {"flavour": "tensorrt", "version": "10.9.0", "major": 10}
    manifest_path(engine).write_text(json.dumps(manifest))
    with pytest.raises(MissingDependencyError, match=r"pip install 'gflv2-deploy\[tensorrt\]'"):
        TrtRunner(engine)


def test_engine_without_manifest_or_changed(rtx_engine: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.engine"
    lone.write_bytes(rtx_engine.read_bytes())
    with pytest.raises(UserError, match="no manifest"):
        TrtRunner(lone)
    manifest_path(lone).write_text(manifest_path(rtx_engine).read_text())
    lone.write_bytes(rtx_engine.read_bytes() + b"x")
    with pytest.raises(UserError, match="does not match its manifest"):
        TrtRunner(lone)
    with pytest.raises(UserError, match="device index"):
        TrtRunner(rtx_engine, device=-1)


def test_check_input_shape() -> None:
    profile = ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 64, 64))
    check_input_shape("images", (3, 3, 64, 32), profile, (-1, 3, -1, -1))
    check_input_shape("images", (1, 3, 32, 32), None, (1, 3, 32, 32))
    for shape, fixed, message in [((5, 3, 32, 32), (-1, 3, -1, -1), "outside the engine's profile"),
                                  ((1, 3, 32), (-1, 3, -1, -1), "rank"),
                                  ((1, 3, 32, 48), (1, 3, 32, 32), "built for")]:
        with pytest.raises(UserError, match=message):
            check_input_shape("images", shape, profile if -1 in fixed else None, fixed)


# --- loopback: host memory standing in for CUDA and an engine --------------------------------------


class _FakeCudart:
    """cuda.bindings.runtime's call shapes ((error, value...) tuples) over host memory."""

    cudaError_t = SimpleNamespace(cudaSuccess=0)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self) -> None:
        self.memory: dict[int, Any] = {}
        self.capturing = False
        self.captured: list[Any] = []
        self.graph_launches = 0
        self.streams = 0

    def _alloc(self, n: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(n)
        self.memory[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    cudaMallocHost = cudaMalloc = _alloc

    def _free(self, ptr: int) -> tuple[int]:
        del self.memory[ptr]
        return (0,)

    cudaFreeHost = cudaFree = _free

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: int, stream: Any) -> tuple[int]:
        assert dst in self.memory and src in self.memory  # only our own allocations are ever copied
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        self.streams += 1
        return 0, 1234

    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple[int]:
        self.capturing = True
        return (0,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[int, list]:
        self.capturing = False
        graph, self.captured = self.captured, []
        return 0, graph

    def cudaGraphInstantiate(self, graph: list, flags: int) -> tuple[int, list]:
        return 0, list(graph)

    def cudaGraphLaunch(self, graph_exec: list, stream: Any) -> tuple[int]:
        self.graph_launches += 1
        for fn in graph_exec:
            fn()
        return (0,)

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return 0, b"fake error"

    def cudaEventElapsedTime(self, start: Any, end: Any) -> tuple[int, float]:
        return 0, 0.25

    def __getattr__(self, name: str) -> Any:  # SetDevice, EventCreate/Record/Destroy, StreamSynchronize/Destroy, Graph*Destroy
        return lambda *args: (0, object()) if name.endswith("Create") else (0,)


class _FakeContext:
    """An 'engine' computing boxes = 0 and scores = per-image mean of images, through raw addresses."""

    def __init__(self, cudart: _FakeCudart, classes: int) -> None:
        self.cudart, self.classes = cudart, classes
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.enqueues = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self.shapes[spec.INPUT_IMAGES][0]
        return {"boxes": (n, 7, 4), "scores": (n, 7, self.classes)}[name]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def _compute(self, addresses: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> None:
        shape = shapes[spec.INPUT_IMAGES]
        count = int(np.prod(shape))
        images = np.ctypeslib.as_array((ctypes.c_float * count).from_address(addresses["images"])).reshape(shape)
        n = shape[0]
        scores = np.ctypeslib.as_array((ctypes.c_float * (n * 7 * self.classes)).from_address(addresses["scores"]))
        scores[:] = np.repeat(images.reshape(n, -1).mean(axis=1), 7 * self.classes)
        boxes = np.ctypeslib.as_array((ctypes.c_float * (n * 28)).from_address(addresses["boxes"]))
        boxes[:] = 0.0

    def execute_async_v3(self, stream: int) -> bool:
        assert isinstance(stream, int)
        self.enqueues += 1
        job = lambda a=dict(self.addresses), s=dict(self.shapes): self._compute(a, s)  # noqa: E731
        if self.cudart.capturing:
            self.cudart.captured.append(job)  # recorded, run at graph launch
        else:
            job()
        return True


def _fake_trt(cudart: _FakeCudart, classes: int = 3) -> SimpleNamespace:
    io = SimpleNamespace(INPUT="in", OUTPUT="out")
    names = ["images", "img_shape", "boxes", "scores"]
    shapes = {"images": (-1, 3, 32, 32), "img_shape": (-1, 2), "boxes": (-1, 7, 4), "scores": (-1, 7, classes)}
    context = _FakeContext(cudart, classes)
    engine = SimpleNamespace(
        num_io_tensors=4, get_tensor_name=names.__getitem__,
        get_tensor_mode=lambda n: io.INPUT if n in ("images", "img_shape") else io.OUTPUT,
        get_tensor_dtype=lambda n: SimpleNamespace(name="FLOAT"), get_tensor_shape=shapes.__getitem__,
        get_tensor_profile_shape=lambda n, p: ((1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32)) if n == "images"
        else ((1, 2), (1, 2), (4, 2)),
        create_execution_context=lambda: context)
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: engine)
    return SimpleNamespace(TensorIOMode=io, Runtime=lambda logger: runtime, context=context)


@pytest.fixture
def loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, _FakeCudart, SimpleNamespace]:
    from gflv2_deploy.engine import trt_api

    cudart = _FakeCudart()
    fake = _fake_trt(cudart)
    info = RuntimeInfo(flavour="tensorrt", module=fake, version="10.9.0", major=10, strongly_typed_only=False,
                       has_precision_flags=True)
    monkeypatch.setattr(trt_api, "load_runtime", lambda kind: info)
    monkeypatch.setattr(trt_api, "query_device", lambda index=0: DeviceInfo("Loopback GPU", "8.6"))
    monkeypatch.setattr(trt_api, "create_logger", lambda rt: (object(), SimpleNamespace(errors=[])))
    monkeypatch.setattr(trt_api, "init_standard_plugins", lambda rt, logger: True)
    monkeypatch.setattr(trt_runner, "import_cudart", lambda: cudart)
    engine = tmp_path / "loop.engine"
    engine.write_bytes(b"plan")
    manifest = {
        "format": "gflv2-deploy/engine-manifest", "format_version": 2,
        "engine": {"file": engine.name, "sha256": hashlib.sha256(b"plan").hexdigest(), "bytes": 4},
        "runtime": {"flavour": "tensorrt", "version": "10.9.0", "major": 10},
        "target": {"kind": "gpu", "gpu_name": "Loopback GPU", "compute_capability": "8.6"},
        "precision": "fp32", "onnx": {"file": "loop.onnx"},
        "contract": GraphContract(
            model=ModelInfo(config_name="loop", class_names=("a", "b", "c")),
            inputs=(TensorInfo("images", "float32", ("batch", 3, 32, 32)), TensorInfo("img_shape", "float32", ("batch", 2))),
            outputs=(TensorInfo("boxes", "float32", ("batch", 7, 4)), TensorInfo("scores", "float32", ("batch", 7, 3))),
            preprocessing=Preprocessing(test_scale=(64, 32), input_hw=(32, 32)), postprocessing=Postprocessing(),
            producer=Producer(tool_version="0.1.0")).to_dict(),
    }
    manifest_path(engine).write_text(json.dumps(manifest))
    return engine, cudart, fake


def test_loopback_infer_binds_by_name_and_copies_through_pinned_buffers(loopback) -> None:
    engine, cudart, fake = loopback
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with TrtRunner(engine) as runner:
        assert isinstance(runner, Runner) and runner.name == "tensorrt"
        assert runner.output_names == ("boxes", "scores") and runner.contract.model.class_names == ("a", "b", "c")
        assert runner.contract.preprocessing.test_scale == (64, 32) and runner.static_hw == (32, 32)
        out = runner.infer(images)
        assert set(fake.context.addresses) == {"images", "img_shape", "boxes", "scores"}
        assert out["scores"].shape == (2, 7, 3) and out["boxes"].shape == (2, 7, 4)
        np.testing.assert_allclose(out["scores"][:, 0, 0], images.reshape(2, -1).mean(axis=1), rtol=1e-5)
        assert runner.gpu_compute_ms == 0.25
        first = out["scores"].copy()
        runner.infer(images[:1] * 0)  # outputs are copies, not views of the reused pinned buffers
        np.testing.assert_array_equal(out["scores"], first)
        with pytest.raises(UserError, match="outside the engine's profile"):
            runner.infer(np.zeros((5, 3, 32, 32), np.float32))
        with pytest.raises(UserError, match="img_shape"):
            runner.infer(images, np.zeros((3, 2), np.float32))
        with pytest.raises(UserError, match="float32"):
            runner.infer(images.astype(np.float64))
    assert cudart.memory == {}  # every pinned and device buffer freed on close
    with pytest.raises(UserError, match="closed"):
        runner.infer(images)


def test_loopback_cuda_graph_is_captured_once_per_shape_and_dropped_when_buffers_move(loopback) -> None:
    engine, cudart, fake = loopback
    small = np.ones((1, 3, 32, 32), np.float32)
    big = np.full((4, 3, 32, 32), 2.0, np.float32)
    with TrtRunner(engine, cuda_graph=True) as runner:
        for _ in range(3):
            out = runner.infer(small)
        assert cudart.graph_launches == 3 and fake.context.enqueues == 2  # warm-up enqueue + captured enqueue
        np.testing.assert_allclose(out["scores"], 1.0)
        out = runner.infer(big)  # larger buffers: old graphs hold stale addresses and are dropped
        np.testing.assert_allclose(out["scores"], 2.0)
        assert len(runner._graphs) == 1
        out = runner.infer(small)  # re-captured against the new buffers
        np.testing.assert_allclose(out["scores"], 1.0)
        assert fake.context.enqueues == 6
