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

from gflv2_deploy import spec
from gflv2_deploy.engine import manifest_path
from gflv2_deploy.engine import trt_api
from gflv2_deploy.engine.trt_api import DeviceInfo, RuntimeInfo
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime import trt_runner
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.trt_runner import TrtRunner, check_engine_loadable, check_input_shape

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


def test_missing_cuda_bindings_is_one_clear_error(rtx_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)  # import cuda.* now raises ImportError, installed or not
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(MissingDependencyError,
                       match=r"cuda\.bindings \(cuda-python\).*pip install 'gflv2-deploy\[tensorrt-rtx\]'"):
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


# --- decision functions ----------------------------------------------------------------------------


def test_host_dtype_refuses_types_without_numpy_twin() -> None:
    assert trt_runner.host_dtype("scores", "float16") == np.float16
    assert trt_runner.host_dtype("num_dets", "int32") == np.int32
    for name in ("bfloat16", "float8", "int4", "float4", "e8m0"):
        with pytest.raises(UserError, match=rf"'scores' has dtype {name}, which this runner cannot bind"):
            trt_runner.host_dtype("scores", name)


def test_engine_dtype_names_are_all_decided(rtx: RuntimeInfo) -> None:
    """Every DataType of the real TensorRT-RTX either binds or is refused: none falls back to float32."""
    from gflv2_deploy.engine.trt_api import dtype_name

    for member in rtx.module.DataType.__members__.values():
        name = dtype_name(member)
        try:
            assert trt_runner.host_dtype("t", name).name == name or name == "bool"
        except UserError:
            assert name in ("bfloat16", "float8", "int4", "float4", "e8m0")


@pytest.mark.parametrize(("requested", "flavour", "nms", "strategy", "mode"), [
    (False, "tensorrt", "onnx", False, "off"),  # nothing asked: nothing refused
    (True, "tensorrt", "none", False, "capture"),
    (True, "tensorrt", "trt", False, "capture"),  # EfficientNMS_TRT has fixed-size outputs
    (True, "tensorrt", "plugin", False, "capture"),  # our own fixed-output NMS plugin
    (True, "tensorrt-rtx", "none", True, "rtx-runtime"),
])
def test_choose_graph_mode(requested: bool, flavour: str, nms: str, strategy: bool, mode: str) -> None:
    assert trt_runner.choose_graph_mode(requested, flavour, nms, strategy) == mode


def test_choose_graph_mode_refusals() -> None:
    for flavour in ("tensorrt", "tensorrt-rtx"):
        with pytest.raises(UserError, match=r"cannot capture this engine: .*INMSLayer, exported with --nms onnx"):
            trt_runner.choose_graph_mode(True, flavour, "onnx", True)
    with pytest.raises(UserError, match="cuda_graph_strategy"):
        trt_runner.choose_graph_mode(True, "tensorrt-rtx", "none", False)


def test_rtx_graph_api_names_exist_in_the_wheel(rtx: RuntimeInfo) -> None:
    """The names the runner uses for TensorRT-RTX's own capture (RTX >= 1.2), checked on the installed wheel."""
    trt = rtx.module
    assert hasattr(trt.ICudaEngine, "create_runtime_config")
    assert isinstance(trt.IRuntimeConfig.cuda_graph_strategy, property)
    assert trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE != trt.CudaGraphStrategy.DISABLED
    assert callable(trt.IExecutionContext.is_stream_capturable)


def test_graph_cache_drops_the_graph_when_shapes_change_or_buffers_move() -> None:
    cache = trt_runner.GraphCache()
    a, b = {"images": (1, 3, 32, 32)}, {"images": (2, 3, 32, 32)}
    assert cache.changed_inputs(a) == ["images"] and cache.needs_capture
    assert cache.invalidate(a, buffers_moved=False) is None
    cache.store("graph-a")
    assert cache.changed_inputs(a) == [] and not cache.needs_capture
    assert cache.invalidate(a, buffers_moved=False) is None and cache.graph == "graph-a"  # same shapes: replay
    assert cache.changed_inputs(b) == ["images"]
    assert cache.invalidate(b, buffers_moved=False) == "graph-a" and cache.needs_capture  # #3798: recapture
    cache.store("graph-b")
    assert cache.invalidate(b, buffers_moved=True) == "graph-b" and cache.graph is None  # stale addresses
    cache.store("graph-b2")
    assert cache.invalidate(a, buffers_moved=False) == "graph-b2"  # back to a: no graph of a survived
    cache.store("graph-a2")
    assert cache.forget_shapes() == "graph-a2" and cache.changed_inputs(a) == ["images"]
    cache.disable("capture failed")
    assert not cache.needs_capture and cache.fallback == "capture failed"


# --- loopback: host memory standing in for CUDA and an engine --------------------------------------


class _FakeCudart:
    """cuda.bindings.runtime's call shapes ((error, value...) tuples) over host memory; logs every call."""

    cudaError_t = SimpleNamespace(cudaSuccess=0)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self) -> None:
        self.memory: dict[int, Any] = {}
        self.capturing = False
        self.captured: list[Any] = []
        self.graph_launches = 0
        self.calls: list[str] = []
        self.graphs_alive = 0

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("cuda") and name[4].isupper():
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

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
        return 0, 1234

    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple[int]:
        self.capturing = True
        return (0,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[int, list]:
        self.capturing = False
        graph, self.captured = self.captured, []
        self.graphs_alive += 1
        return 0, graph

    def cudaGraphInstantiate(self, graph: list, flags: int) -> tuple[int, list]:
        self.graphs_alive += 1
        return 0, list(graph)

    def cudaGraphDestroy(self, graph: Any) -> tuple[int]:
        self.graphs_alive -= 1
        return (0,)

    cudaGraphExecDestroy = cudaGraphDestroy

    def cudaGraphLaunch(self, graph_exec: list, stream: Any) -> tuple[int]:
        self.graph_launches += 1
        for fn in graph_exec:
            fn()
        return (0,)

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return 0, b"fake error"

    def cudaEventElapsedTime(self, start: Any, end: Any) -> tuple[int, float]:
        return 0, 0.25

    def __getattr__(self, name: str) -> Any:  # SetDevice, EventCreate/Record/Destroy, StreamSynchronize/Destroy, GetLastError
        return lambda *args: (0, object()) if name.endswith("Create") else (0,)


class _FakeContext:
    """An 'engine' computing boxes = 0 and scores = per-image mean of images, through raw addresses.

    ``fail_in_capture``: execute_async_v3 answers False while the stream captures (an engine TensorRT
    cannot capture). ``refuse``: set_input_shape / set_tensor_address answer False for these names.
    """

    def __init__(self, cudart: _FakeCudart, classes: int) -> None:
        self.cudart, self.classes = cudart, classes
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.enqueues = 0
        self.shape_sets = 0
        self.fail_in_capture = False
        self.refuse: set[str] = set()
        self.runtime_config: Any = None
        self.capturable = True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape_sets += 1
        if name in self.refuse:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self.shapes[spec.INPUT_IMAGES][0]
        return {"boxes": (n, 7, 4), "scores": (n, 7, self.classes)}[name]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        if f"address:{name}" in self.refuse:
            return False
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
        self.cudart.calls.append("execute_async_v3")
        self.enqueues += 1
        if self.cudart.capturing and self.fail_in_capture:
            return False
        job = lambda a=dict(self.addresses), s=dict(self.shapes): self._compute(a, s)  # noqa: E731
        if self.cudart.capturing:
            self.cudart.captured.append(job)  # recorded, run at graph launch
        else:
            job()
        return True

    def is_stream_capturable(self, stream: int) -> bool:
        return self.capturable


def _fake_trt(cudart: _FakeCudart, classes: int = 3, rtx: bool = False) -> SimpleNamespace:
    io = SimpleNamespace(INPUT="in", OUTPUT="out")
    names = ["images", "img_shape", "boxes", "scores"]
    shapes = {"images": (-1, 3, 32, 32), "img_shape": (-1, 2), "boxes": (-1, 7, 4), "scores": (-1, 7, classes)}
    context = _FakeContext(cudart, classes)
    strategy = SimpleNamespace(DISABLED="disabled", WHOLE_GRAPH_CAPTURE="whole-graph")

    def create_context(config: Any = None) -> _FakeContext:
        context.runtime_config = config
        return context

    engine = SimpleNamespace(
        num_io_tensors=4, get_tensor_name=names.__getitem__,
        get_tensor_mode=lambda n: io.INPUT if n in ("images", "img_shape") else io.OUTPUT,
        get_tensor_dtype=lambda n: SimpleNamespace(name="FLOAT"), get_tensor_shape=shapes.__getitem__,
        get_tensor_profile_shape=lambda n, p: ((1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32)) if n == "images"
        else ((1, 2), (1, 2), (4, 2)),
        create_execution_context=create_context)
    module = SimpleNamespace(TensorIOMode=io, Runtime=lambda logger: runtime, context=context, engine=engine)
    if rtx:  # TensorRT-RTX >= 1.2: the runtime captures graphs itself
        engine.create_runtime_config = lambda: SimpleNamespace(cuda_graph_strategy=strategy.DISABLED)
        module.CudaGraphStrategy = strategy
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: engine)
    return module


def _loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flavour: str = "tensorrt",
              nms_form: str | None = None) -> tuple[Path, _FakeCudart, SimpleNamespace]:
    from gflv2_deploy.engine import trt_api

    cudart = _FakeCudart()
    rtx = flavour == "tensorrt-rtx"
    fake = _fake_trt(cudart, rtx=rtx)
    version = "1.7.1.116" if rtx else "10.16.0"
    info = RuntimeInfo(flavour=flavour, module=fake, version=version, major=int(version.split(".")[0]),  # type: ignore[arg-type]
                       strongly_typed_only=rtx, has_precision_flags=not rtx)
    monkeypatch.setattr(trt_api, "load_runtime", lambda kind, purpose="Building": info)
    monkeypatch.setattr(trt_api, "query_device", lambda index=0: DeviceInfo("Loopback GPU", "8.6"))
    monkeypatch.setattr(trt_api, "shared_logger", lambda rt: (object(), trt_api.CapturedLog()))
    monkeypatch.setattr(trt_api, "init_standard_plugins", lambda rt, logger: True)
    monkeypatch.setattr(trt_runner, "import_cudart", lambda extra="tensorrt", runtime_label="TensorRT": cudart)
    engine = tmp_path / "loop.engine"
    engine.write_bytes(b"plan")
    target = ({"kind": "aot", "compute_capabilities": ["8.6"], "default": False} if rtx
              else {"kind": "gpu", "gpu_name": "Loopback GPU", "compute_capability": "8.6"})
    manifest = {
        "format": "gflv2-deploy/engine-manifest", "format_version": 2,
        "engine": {"file": engine.name, "sha256": hashlib.sha256(b"plan").hexdigest(), "bytes": 4},
        "runtime": {"flavour": flavour, "version": version, "major": info.major},
        "target": target, "precision": "fp32", "onnx": {"file": "loop.onnx"},
        "contract": GraphContract(
            model=ModelInfo(config_name="loop", class_names=("a", "b", "c")),
            inputs=(TensorInfo("images", "float32", ("batch", 3, 32, 32)), TensorInfo("img_shape", "float32", ("batch", 2))),
            outputs=(TensorInfo("boxes", "float32", ("batch", 7, 4)), TensorInfo("scores", "float32", ("batch", 7, 3))),
            preprocessing=Preprocessing(test_scale=(64, 32), input_hw=(32, 32)),
            postprocessing=Postprocessing(nms=nms_form or "none"),
            producer=Producer(tool_version="0.1.0")).to_dict(),
    }
    manifest_path(engine).write_text(json.dumps(manifest))
    return engine, cudart, fake


@pytest.fixture
def loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, _FakeCudart, SimpleNamespace]:
    return _loopback(tmp_path, monkeypatch)


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
        assert runner.gpu_compute_ms == 0.25 and runner.capture_ms is None
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


def test_loopback_refused_shape_or_address_is_an_error(loopback) -> None:
    engine, _, fake = loopback
    images = np.ones((1, 3, 32, 32), np.float32)
    with TrtRunner(engine) as runner:
        fake.context.refuse = {"img_shape"}
        with pytest.raises(UserError, match=r"refused shape \(1, 2\) for input 'img_shape'"):
            runner.infer(images)
        fake.context.refuse = {"address:scores"}
        with pytest.raises(RuntimeError, match="refused the address of tensor 'scores'"):
            runner.infer(images)
        fake.context.refuse = set()
        np.testing.assert_allclose(runner.infer(images)["scores"], 1.0)


def test_loopback_cuda_graph_is_recaptured_after_a_shape_change(loopback) -> None:
    engine, cudart, fake = loopback
    small = np.ones((1, 3, 32, 32), np.float32)
    big = np.full((4, 3, 32, 32), 2.0, np.float32)
    with TrtRunner(engine, cuda_graph=True) as runner:
        assert runner.graph_mode == "capture"
        out = runner.infer(small)
        assert runner.capture_ms is not None and runner.capture_ms >= 0.0
        for _ in range(2):
            out = runner.infer(small)
            assert runner.capture_ms is None  # replays capture nothing
        assert cudart.graph_launches == 3 and fake.context.enqueues == 2  # warm-up enqueue + captured enqueue
        assert fake.context.shape_sets == 2  # images and img_shape once: unchanged shapes are not set again
        np.testing.assert_allclose(out["scores"], 1.0)
        out = runner.infer(big)  # new shapes and larger buffers: the graph is dropped and captured again
        np.testing.assert_allclose(out["scores"], 2.0)
        assert runner._graphs.graph is not None and runner._graphs.shapes["images"] == (4, 3, 32, 32)
        out = runner.infer(small)  # back to small: #3798, the context's graph must be captured again
        np.testing.assert_allclose(out["scores"], 1.0)
        assert fake.context.enqueues == 6
    assert cudart.graphs_alive == 0  # every graph and graph exec destroyed


def test_loopback_capture_is_outside_the_timed_events(loopback) -> None:
    engine, cudart, _ = loopback
    with TrtRunner(engine, cuda_graph=True) as runner:
        cudart.calls.clear()
        runner.infer(np.ones((1, 3, 32, 32), np.float32))
    calls = [c for c in cudart.calls if c in ("cudaStreamSynchronize", "cudaStreamBeginCapture", "cudaStreamEndCapture",
                                              "cudaEventRecord", "cudaGraphLaunch", "execute_async_v3")]
    assert calls[:7] == ["execute_async_v3", "cudaStreamSynchronize", "cudaStreamBeginCapture", "execute_async_v3",
                         "cudaStreamEndCapture", "cudaEventRecord", "cudaGraphLaunch"]
    assert calls[7] == "cudaEventRecord"


def test_loopback_failed_capture_falls_back_to_plain_enqueue(loopback) -> None:
    engine, cudart, fake = loopback
    fake.context.fail_in_capture = True
    with TrtRunner(engine, cuda_graph=True) as runner:
        out = runner.infer(np.full((2, 3, 32, 32), 3.0, np.float32))
        np.testing.assert_allclose(out["scores"], 3.0)
        assert "execute_async_v3 returned False during capture" in runner.graph_fallback
        assert cudart.calls.index("cudaStreamEndCapture") < cudart.calls.index("cudaGetLastError")  # ended, error cleared
        out = runner.infer(np.full((2, 3, 32, 32), 5.0, np.float32))  # no second capture attempt
        np.testing.assert_allclose(out["scores"], 5.0)
        assert cudart.graph_launches == 0 and cudart.calls.count("cudaStreamBeginCapture") == 1
    assert cudart.graphs_alive == 0


def test_loopback_onnx_nms_graph_refuses_cuda_graphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _, _ = _loopback(tmp_path, monkeypatch, nms_form="onnx")
    with pytest.raises(UserError, match="INMSLayer"):
        TrtRunner(engine, cuda_graph=True)
    with TrtRunner(engine) as runner:  # without CUDA graphs it loads
        assert runner.graph_mode == "off"


def test_loopback_rtx_uses_the_runtime_graph_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, cudart, fake = _loopback(tmp_path, monkeypatch, flavour="tensorrt-rtx")
    with pytest.raises(UserError, match=r"built with tensorrt-rtx 1\.7\.1\.116, not tensorrt: run it with the tensorrt-rtx backend"):
        TrtRunner(engine, backend="tensorrt")
    with TrtRunner(engine, backend="tensorrt-rtx", cuda_graph=True) as runner:
        assert runner.graph_mode == "rtx-runtime" and runner.name == "tensorrt-rtx"
        assert fake.context.runtime_config.cuda_graph_strategy == "whole-graph"
        for _ in range(2):
            np.testing.assert_allclose(runner.infer(np.ones((1, 3, 32, 32), np.float32))["scores"], 1.0)
        assert "cudaStreamBeginCapture" not in cudart.calls and runner.graph_fallback is None  # RTX captures itself
    fake.context.capturable = False
    with TrtRunner(engine, cuda_graph=True) as runner:
        assert "not stream capturable" in runner.graph_fallback


def test_capture_graph_reports_a_failed_instantiate_and_frees_the_graph() -> None:
    class _NoInstantiate(_FakeCudart):
        def cudaGraphInstantiate(self, graph: list, flags: int) -> tuple[int, None]:
            return 901, None  # e.g. cudaErrorStreamCaptureUnsupported

    cudart = _NoInstantiate()
    context = _FakeContext(cudart, classes=3)
    context.shapes = {"images": (1, 3, 32, 32)}
    context.addresses = {name: cudart.cudaMalloc(4 * 3 * 32 * 32)[1] for name in ("images", "boxes", "scores")}
    graph, reason = trt_runner.capture_graph(trt_runner._Cuda(cudart), context, 1234)
    assert graph is None and reason == "cudaGraphInstantiate failed (901)"
    assert cudart.graphs_alive == 0 and cudart.calls[-1] == "cudaGetLastError" and not cudart.capturing


def test_engine_with_a_missing_or_changed_plugin_library_is_refused_before_cuda(tmp_path) -> None:
    """check_engine_loadable refuses it right after the manifest checks (our NMS plugin, issue 12)."""
    from gflv2_deploy.engine.manifest import plugin_library_record

    lib = tmp_path / "libgflv2_nms_trt10.so"
    lib.write_bytes(b"first build")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    manifest = {
        "format": "gflv2-deploy/engine-manifest", "format_version": 2,
        "engine": {"file": engine.name, "sha256": hashlib.sha256(b"plan").hexdigest(), "bytes": 4},
        "runtime": {"flavour": "tensorrt-rtx", "version": trt_api.load_runtime("tensorrt-rtx", "Running").version, "major": 1},
        "target": {"kind": "aot", "compute_capabilities": ["8.6"]}, "precision": "fp32", "onnx": {"file": "m.onnx"},
        "plugin_libraries": [plugin_library_record(lib)], "contract": None,
    }
    manifest_path(engine).write_text(json.dumps(manifest))
    lib.write_bytes(b"rebuilt since")
    with pytest.raises(UserError, match="changed since the engine was built"):
        check_engine_loadable(engine)
    lib.unlink()
    with pytest.raises(UserError, match="is missing"):
        check_engine_loadable(engine)


def test_a_trt_runner_cannot_be_copied() -> None:
    """A copy would share (and free twice) the CUDA buffers, stream and events the runner owns."""
    import copy

    from gflv2_deploy.runtime.trt_runner import TrtRunner

    bare = object.__new__(TrtRunner)  # no engine needed: copying is refused before any state is read
    for duplicate in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be copied"):
            duplicate(bare)
