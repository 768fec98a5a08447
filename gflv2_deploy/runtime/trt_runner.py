"""TensorRT backend (TensorRT 10/11 and TensorRT-RTX) behind the Runner interface.

Loading (``check_engine_loadable``, then ``TrtRunner.__init__``), in this order so that every refusal
is one clear line naming what is missing:
1. the sidecar manifest (``engine.manifest.read_manifest``: present, readable, engine hash matches),
   and the backend asked for (``tensorrt:`` / ``tensorrt-rtx:``) against the flavour that built it;
2. that flavour's Python module (``trt_api.load_runtime``; missing -> the extra to install);
3. flavour and exact version against the manifest (``check_manifest`` without a device);
4. cuda-python's runtime bindings (``cuda.bindings.runtime``; never pycuda), then a GPU with its
   driver, then ``check_manifest`` again with the GPU's compute capability;
5. the standard plugins (``init_libnvinfer_plugins``) BEFORE deserialising (an engine with
   ``EfficientNMS_TRT`` fails to load otherwise, deploy_landscape §3.3), then the engine and one
   execution context. All of it logs through the process's one TensorRT logger (``trt_api.shared_logger``).

``infer``: tensors are bound by name (``set_input_shape`` / ``set_tensor_address``, both checked; no
binding indices: gone since TensorRT 10), inputs go through pinned host buffers with asynchronous
copies on one stream, and ``execute_async_v3`` (or a graph launch) runs between two CUDA events, so
``gpu_compute_ms`` (the last call's GPU time of the engine alone, what trtexec calls GPU compute) is
available to benchmarks.

CUDA graphs (``cuda_graph=True``, ``choose_graph_mode``):
- TensorRT 10/11: the launch is captured on the runner's stream, as trtexec does it
  (samples/common/sampleInference.cpp): one plain enqueue first (TensorRT sets itself up outside
  capture), a stream synchronisation, then ``cudaStreamBeginCapture`` / ``execute_async_v3`` /
  ``cudaStreamEndCapture``. ``execute_async_v3`` returning False, or a failed end / instantiate, means
  "this engine cannot be captured": the capture is ended, the CUDA error cleared (``cudaGetLastError``)
  and the runner falls back to plain enqueues (``graph_fallback`` says why). The capture's time is
  reported as ``capture_ms``, never inside ``gpu_compute_ms``.
  One context keeps at most ONE graph, for the shapes currently set on it: after ``set_input_shape``
  a graph must be captured again (NVIDIA/TensorRT#3798), so a shape change or moved buffers drop it
  (``GraphCache``); alternating shapes therefore recapture, use one runner per shape to avoid that.
- TensorRT-RTX: manual capture needs engines built with REQUIRE_USER_ALLOCATION, which ours are not;
  the runtime's own capture is used instead (``IRuntimeConfig.cuda_graph_strategy =
  WHOLE_GRAPH_CAPTURE``, RTX >= 1.2). ``IExecutionContext.is_stream_capturable`` False is reported in
  ``graph_fallback``. RTX captures inside ``execute_async_v3``, so its first calls per shape include
  the capture.
- Graphs with a data-dependent ``INMSLayer`` (``--nms onnx``) are refused: they cannot be captured.

Nothing TensorRT- or CUDA-related is imported at module import: ``import gflv2_deploy.runtime.trt_runner``
works on machines without either (tests/unit/runtime checks it).

Never executed on a real GPU in this project's CI (no GPU, no TensorRT there); what runs in CI is
the loading order up to the missing CUDA bindings, the manifest refusals, argument checks and the
decision functions, and a loopback (host memory standing in for CUDA) of the binding and capture logic.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from gflv2_deploy import spec as io_spec
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import batch_hw, check_batch

_log = logging.getLogger(__name__)

# numpy types of the engine I/O dtypes this runner binds (names from trt_api.dtype_name). bfloat16,
# float8, int4 and float4 have no numpy type: host_dtype refuses them instead of guessing float32.
_HOST_DTYPES: dict[str, type] = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int64,
                                 "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}

GraphMode = Literal["off", "capture", "rtx-runtime"]


def host_dtype(tensor: str, dtype: str) -> np.dtype:
    """numpy dtype of engine tensor ``tensor`` whose TensorRT dtype is named ``dtype`` (``trt_api.dtype_name``).

    Raises UserError for a dtype without a numpy twin (bfloat16, float8, int4, float4, or one this
    runner does not know): binding such a buffer as float32 would read garbage.
    """
    if dtype not in _HOST_DTYPES:
        raise UserError(f"engine tensor '{tensor}' has dtype {dtype}, which this runner cannot bind "
                        f"(it binds {', '.join(_HOST_DTYPES)}): keep the graph's inputs and outputs in one of those "
                        f"(the converters keep them float32) and rebuild the engine")
    return np.dtype(_HOST_DTYPES[dtype])


def import_cudart(extra: str = "tensorrt", runtime_label: str = "TensorRT") -> Any:
    """cuda-python's runtime module; MissingDependencyError naming cuda-python and the ``extra`` when absent."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python layout
        except ImportError:
            raise MissingDependencyError("cuda.bindings (cuda-python)", extra, f"Running {runtime_label} engines") from None
    return cudart


def check_input_shape(name: str, shape: Sequence[int], profile: tuple[Sequence[int], Sequence[int], Sequence[int]] | None,
                      fixed: Sequence[int]) -> None:
    """Refuse ``shape`` for input ``name`` unless it fits the engine: the fixed dims (-1 = dynamic) and,
    for dynamic inputs, the optimisation profile's min..max. Raises UserError saying how to rebuild."""
    if len(shape) != len(fixed):
        raise UserError(f"input '{name}' has rank {len(fixed)} in the engine, got shape {tuple(shape)}")
    for got, want in zip(shape, fixed):
        if want >= 0 and got != want:
            raise UserError(f"the engine was built for '{name}' of shape {tuple(fixed)}, got {tuple(shape)}: "
                            f"pad to that size or rebuild with --shapes")
    if profile is not None:
        lo, _, hi = profile
        if not all(a <= g <= b for a, g, b in zip(lo, shape, hi)):
            raise UserError(f"input '{name}' of shape {tuple(shape)} is outside the engine's profile "
                            f"min {tuple(lo)} .. max {tuple(hi)}: rebuild with wider --shapes")


def choose_graph_mode(requested: bool, flavour: str, nms_form: str, rtx_graph_strategy: bool) -> GraphMode:
    """How ``cuda_graph=requested`` is honoured for an engine of ``flavour`` whose graph contract has NMS
    form ``nms_form`` (``GraphContract.postprocessing.nms``; see the module docstring).

    "off": plain enqueues; "capture": stream capture by this runner (TensorRT 10/11); "rtx-runtime":
    TensorRT-RTX captures itself (``IRuntimeConfig.cuda_graph_strategy``; ``rtx_graph_strategy`` says
    the installed RTX has it). Raises UserError for a graph with a data-dependent INMSLayer
    (``nms_form == "onnx"``) and for an RTX without the strategy.
    """
    if not requested:
        return "off"
    if nms_form == "onnx":
        raise UserError("CUDA graphs cannot capture this engine: its graph has an ONNX NonMaxSuppression "
                        "(INMSLayer, exported with --nms onnx) whose output size depends on the data; run it without "
                        "CUDA graphs, or build the pre-NMS graph (--nms none, host NMS) or the --nms trt one")
    if flavour == "tensorrt-rtx":
        if not rtx_graph_strategy:
            raise UserError("this TensorRT-RTX has no IRuntimeConfig.cuda_graph_strategy (added in 1.2): upgrade "
                            "tensorrt-rtx, or run without CUDA graphs")
        return "rtx-runtime"
    return "capture"


class GraphCache:
    """The captured CUDA graph of ONE execution context, valid for the input shapes now set on it.

    A graph replays the kernels and addresses of the enqueue it captured. After ``set_input_shape``
    TensorRT may pick other kernels or scratch memory, so a graph captured for other shapes must not
    be replayed (NVIDIA/TensorRT#3798): the cache holds at most one graph, dropped when the shapes
    change or the buffers move. Pure bookkeeping: the caller destroys what it hands back.
    """

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}  # what the context has been given with set_input_shape
        self.graph: Any = None
        self.fallback: str | None = None  # why capture is off for good (a capture failed), else None

    def changed_inputs(self, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
        """Inputs whose shape must be set on the context (all of them after ``forget_shapes``)."""
        return [name for name, shape in shapes.items() if self.shapes.get(name) != tuple(shape)]

    def invalidate(self, shapes: Mapping[str, tuple[int, ...]], buffers_moved: bool) -> Any:
        """Record ``shapes`` as set on the context; return the graph to destroy if it no longer fits, else None."""
        stale = None
        if self.graph is not None and (buffers_moved or self.changed_inputs(shapes) or set(shapes) != set(self.shapes)):
            stale, self.graph = self.graph, None
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        return stale

    def forget_shapes(self) -> Any:
        """After a failed ``set_input_shape`` the context's shapes are unknown: reset; return the graph to destroy."""
        stale, self.graph, self.shapes = self.graph, None, {}
        return stale

    @property
    def needs_capture(self) -> bool:
        return self.graph is None and self.fallback is None

    def store(self, graph: Any) -> None:
        self.graph = graph

    def disable(self, reason: str) -> None:
        """Capture failed: run plain enqueues from now on and remember why."""
        self.fallback = reason


def capture_graph(cuda: "_Cuda", context: Any, stream: Any) -> tuple[Any, str | None]:
    """Capture one ``execute_async_v3`` of ``context`` on ``stream``: (graph exec, None), or (None, why).

    As trtexec (sampleInference.cpp): one plain enqueue first, so TensorRT allocates and sets up
    outside the capture; the stream is synchronised so nothing pending is captured; a False from
    ``execute_async_v3`` during capture, or a failed ``cudaStreamEndCapture`` / ``cudaGraphInstantiate``,
    ends the capture, clears the CUDA error and returns the reason, so the caller falls back to plain
    enqueues. Raises RuntimeError only when the plain enqueue itself fails.
    """
    rt = cuda.rt
    ok = rt.cudaError_t.cudaSuccess
    if not context.execute_async_v3(int(stream)):
        raise RuntimeError("execute_async_v3 failed before CUDA-graph capture")
    cuda(rt.cudaStreamSynchronize(stream))
    capturable = getattr(context, "is_stream_capturable", None)  # TensorRT-RTX >= 1.2 only
    if capturable is not None and not capturable(int(stream)):
        return None, "the execution context is not stream capturable (is_stream_capturable False)"
    cuda(rt.cudaStreamBeginCapture(stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
    enqueued = context.execute_async_v3(int(stream))
    end_err, *rest = rt.cudaStreamEndCapture(stream)  # always end the capture, whatever happened in it
    graph = rest[0] if rest and end_err == ok else None
    if not enqueued or graph is None:
        if graph is not None:
            rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()  # clear the error the invalidated capture left, so later calls do not see it
        return None, ("execute_async_v3 returned False during capture" if not enqueued
                      else f"cudaStreamEndCapture failed ({end_err})")
    inst_err, *rest = rt.cudaGraphInstantiate(graph, 0)
    rt.cudaGraphDestroy(graph)
    if inst_err != ok or not rest:
        rt.cudaGetLastError()
        return None, f"cudaGraphInstantiate failed ({inst_err})"
    return rest[0], None


class _Cuda:
    """Thin checked wrappers over cuda-python calls, which return (error, value...) tuples."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def __call__(self, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}")
        return values[0] if len(values) == 1 else (tuple(values) or None)


class _Buffer:
    """A pinned host array and a device allocation of the same byte size, grown on demand."""

    def __init__(self, cuda: _Cuda, dtype: np.dtype) -> None:
        self.cuda, self.dtype, self.nbytes = cuda, np.dtype(dtype), 0
        self.host_ptr = self.device_ptr = 0
        self.host: np.ndarray = np.empty(0, self.dtype)

    def ensure(self, count: int) -> bool:
        """Make room for ``count`` elements; True when the buffers moved (captured graphs are then stale)."""
        nbytes = max(int(count) * self.dtype.itemsize, self.dtype.itemsize)
        if nbytes <= self.nbytes:
            return False
        self.free()
        self.host_ptr = int(self.cuda(self.cuda.rt.cudaMallocHost(nbytes)))
        self.device_ptr = int(self.cuda(self.cuda.rt.cudaMalloc(nbytes)))
        raw = (ctypes.c_uint8 * nbytes).from_address(self.host_ptr)
        self.host = np.frombuffer(raw, dtype=np.uint8).view(self.dtype)
        self.nbytes = nbytes
        return True

    def free(self) -> None:
        if self.host_ptr:
            self.cuda(self.cuda.rt.cudaFreeHost(self.host_ptr))
        if self.device_ptr:
            self.cuda(self.cuda.rt.cudaFree(self.device_ptr))
        self.host_ptr = self.device_ptr = self.nbytes = 0
        self.host = np.empty(0, self.dtype)


@dataclass(frozen=True)
class EngineReady:
    """What ``check_engine_loadable`` found: the manifest, the TensorRT flavour, the checked plugin libraries,
    cuda-python and the GPU."""

    manifest: dict[str, Any]
    rt: Any  # trt_api.RuntimeInfo
    cudart: Any
    gpu: Any  # trt_api.DeviceInfo
    plugin_libraries: list[Path]


def check_engine_loadable(engine_path: str | os.PathLike[str], *, backend: str | None = None,
                          device: int = 0) -> EngineReady:
    """Everything a TrtRunner needs before touching the engine, checked in the order of the module docstring.

    backend: "tensorrt" / "tensorrt-rtx" as the user asked for it (None: whatever built the engine).
    Raises UserError (MissingDependencyError for TensorRT or cuda-python) with one line naming what
    is missing: the manifest, the right backend, the TensorRT module, cuda-python, or a GPU and driver.
    """
    from gflv2_deploy.engine import manifest as manifest_mod
    from gflv2_deploy.engine import trt_api

    if not isinstance(device, int) or device < 0:
        raise UserError(f"device must be a CUDA device index >= 0, got {device!r}")
    path = Path(engine_path)
    manifest = manifest_mod.read_manifest(path)
    flavour = str(manifest.get("runtime", {}).get("flavour"))
    if backend is not None and flavour != backend:
        built = f"{flavour} {manifest.get('runtime', {}).get('version', '')}".strip()
        raise UserError(f"{path.name} was built with {built}, not {backend}: run it with the {flavour} backend")
    rt = trt_api.load_runtime(flavour, "Running")
    manifest_mod.check_manifest(manifest, rt, None)  # flavour and version: no GPU needed
    plugin_libraries = manifest_mod.check_plugin_libraries(manifest)  # our NMS plugin: present and unchanged
    cudart = import_cudart(trt_api.extra_of(flavour), rt.label)
    gpu = trt_api.query_device(device)
    if gpu is None:
        raise UserError(f"no CUDA GPU {device} is visible here (no NVIDIA driver, or no GPU): {rt.label} engines "
                        f"run on an NVIDIA GPU")
    manifest_mod.check_manifest(manifest, rt, gpu)
    return EngineReady(manifest=manifest, rt=rt, cudart=cudart, gpu=gpu, plugin_libraries=plugin_libraries)


class TrtRunner:
    """Runner over a serialized TensorRT / TensorRT-RTX engine written by ``gflv2-deploy build``.

    engine_path: the plan; its manifest ``<engine>.json`` must sit beside it. backend: the flavour the
    user asked for (None: the one that built it). device: CUDA device index. cuda_graph: replay the
    engine launch as a CUDA graph (module docstring: how per flavour, and when it falls back).
    ``infer(images, img_shape=None)`` as ``OrtRunner.infer``: N x 3 x H x W float32 normalised images
    (cast to the engine's input dtype when that is float16), or N x H x W x 3 uint8 pictures for an engine
    built from a ``--input uint8`` graph, img_shape N x 2 float32; returns the
    engine's outputs by name as numpy arrays. After each call ``gpu_compute_ms`` holds the GPU time
    of the engine (CUDA events around the enqueue or graph launch, no copies, no capture) and
    ``capture_ms`` the host time of a capture made in that call (None when none was made).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], *, backend: str | None = None, device: int = 0,
                 cuda_graph: bool = False) -> None:
        from gflv2_deploy.engine import trt_api

        self.path = Path(engine_path)
        self._closed = True
        ready = check_engine_loadable(self.path, backend=backend, device=device)
        self.manifest, self.rt, self.gpu = ready.manifest, ready.rt, ready.gpu
        self.name = self.rt.flavour
        from gflv2_deploy.engine.manifest import manifest_contract

        contract = manifest_contract(self.manifest, str(self.path))
        if contract is None:
            raise UserError(f"{self.path} was built from an ONNX without a gflv2-deploy graph contract: build it from "
                            "an ONNX written by `gflv2-deploy export` to run it here")
        self.contract = contract
        cuda = self.cuda = _Cuda(ready.cudart)
        self.cuda(cuda.rt.cudaSetDevice(device))
        trt = self.rt.module
        self._logger, self._log = trt_api.shared_logger(self.rt)
        mark = self._log.mark()
        trt_api.init_standard_plugins(self.rt, self._logger)  # before deserialising (plugin nodes)
        self._plugin_handles = [trt_api.load_plugin_library(self.rt, lib)  # ours (GFLV2NMS_TRT), checked above
                                for lib in ready.plugin_libraries]
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            detail = "; ".join(self._log.since(mark)[-3:]) or "no details reported"
            raise UserError(f"{self.rt.label} could not load {self.path.name} ({detail}): rebuild the engine on this "
                            f"machine with `gflv2-deploy build`")
        strategy = hasattr(trt, "CudaGraphStrategy") and hasattr(self.engine, "create_runtime_config")
        self.graph_mode = choose_graph_mode(bool(cuda_graph), self.rt.flavour, contract.postprocessing.nms, strategy)
        self.context = self._create_context(trt)
        io_mode = trt.TensorIOMode
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == io_mode.INPUT]
        self._outputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == io_mode.OUTPUT)
        self._dtypes = {n: host_dtype(n, trt_api.dtype_name(self.engine.get_tensor_dtype(n))) for n in names}
        self._fixed = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n)) for n in self._inputs}
        self._profiles = {n: self._profile(n) for n in self._inputs}
        self._buffers = {n: _Buffer(cuda, self._dtypes[n]) for n in names}
        self.stream = cuda(cuda.rt.cudaStreamCreate())
        self._start, self._end = cuda(cuda.rt.cudaEventCreate()), cuda(cuda.rt.cudaEventCreate())
        self._graphs = GraphCache()
        self.graph_fallback: str | None = None
        if self.graph_mode == "rtx-runtime" and not self.context.is_stream_capturable(int(self.stream)):
            self.graph_fallback = "TensorRT-RTX reports this engine not stream capturable: it runs without CUDA graphs"
            _log.warning("%s: %s", self.path.name, self.graph_fallback)
        self._closed = False
        self.gpu_compute_ms: float | None = None
        self.capture_ms: float | None = None

    def _create_context(self, trt: Any) -> Any:
        if self.graph_mode == "rtx-runtime":
            config = self.engine.create_runtime_config()
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            context = self.engine.create_execution_context(config)
        else:
            context = self.engine.create_execution_context()
        if context is None:
            raise UserError(f"{self.rt.label} could not create an execution context for {self.path.name} "
                            f"({'; '.join(self._log.errors[-3:]) or 'no details reported'}): is the GPU out of memory?")
        return context

    def _profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
        if all(d >= 0 for d in self._fixed[name]):
            return None
        lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(lo), tuple(opt), tuple(hi)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """(H, W) when the engine's ``images`` input has a fixed size, else None."""
        dims = self._fixed.get(io_spec.INPUT_IMAGES, ())
        h_axis, w_axis = self.contract.preprocessing.hw_axes
        return (dims[h_axis], dims[w_axis]) if len(dims) == 4 and dims[h_axis] >= 0 and dims[w_axis] >= 0 else None

    def __enter__(self) -> "TrtRunner":
        return self

    def __copy__(self) -> "TrtRunner":
        # a copy would share the device buffers, stream, events and captured graph, and free them twice
        raise TypeError("a TensorRT runner owns CUDA buffers, a stream and an execution context and cannot be copied: "
                        "load the engine again for a second runner")

    def __deepcopy__(self, memo: dict) -> "TrtRunner":
        return self.__copy__()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the device and pinned buffers, the stream, the events and the captured graph (idempotent)."""
        if self._closed:
            return
        self._closed = True
        rt = self.cuda.rt
        self._destroy_graph(self._graphs.forget_shapes())
        for buffer in self._buffers.values():
            buffer.free()
        self.cuda(rt.cudaEventDestroy(self._start))
        self.cuda(rt.cudaEventDestroy(self._end))
        self.cuda(rt.cudaStreamDestroy(self.stream))

    def _destroy_graph(self, graph_exec: Any) -> None:
        if graph_exec is not None:
            self.cuda(self.cuda.rt.cudaGraphExecDestroy(graph_exec))

    def _feeds(self, images: np.ndarray, img_shape: np.ndarray | None) -> dict[str, np.ndarray]:
        input_format = self.contract.preprocessing.input_format
        batch = check_batch(images, input_format)
        n, h, w = batch_hw(batch, input_format)
        feeds = {io_spec.INPUT_IMAGES: batch}
        if io_spec.INPUT_IMAGE_SHAPE in self._inputs:
            if img_shape is None:
                img_shape = np.tile(np.array([[h, w]], np.float32), (n, 1))
            arr = np.asarray(img_shape, dtype=np.float32)
            if arr.shape != (n, 2):
                raise UserError(f"img_shape must be {n} x 2 (height, width), got shape {arr.shape}")
            feeds[io_spec.INPUT_IMAGE_SHAPE] = arr
        missing = [name for name in self._inputs if name not in feeds]
        if missing:
            raise UserError(f"{self.path.name} has input(s) {', '.join(missing)} this runner does not know how to feed")
        return feeds

    def _errors(self, mark: int) -> str:
        return "; ".join(self._log.since(mark)[-3:]) or "no details reported"

    def _bind(self, feeds: Mapping[str, np.ndarray], mark: int) -> dict[str, tuple[int, ...]]:
        """Set changed input shapes and every tensor address on the context; return the output shapes."""
        ctx = self.context
        shapes = {name: tuple(int(d) for d in array.shape) for name, array in feeds.items()}
        for name, shape in shapes.items():
            check_input_shape(name, shape, self._profiles[name], self._fixed[name])
        for name in self._graphs.changed_inputs(shapes):  # unchanged shapes are not set again (#3798)
            if not ctx.set_input_shape(name, shapes[name]):
                self._destroy_graph(self._graphs.forget_shapes())
                raise UserError(f"{self.rt.label} refused shape {shapes[name]} for input '{name}' of {self.path.name} "
                                f"({self._errors(mark)})")
        out_shapes = {name: tuple(int(d) for d in ctx.get_tensor_shape(name)) for name in self._outputs}
        dynamic = [name for name, shape in out_shapes.items() if any(d < 0 for d in shape)]
        if dynamic:
            raise UserError(f"{self.path.name} has data-dependent output shapes ({', '.join(dynamic)}; an ONNX "
                            f"NonMaxSuppression): build the pre-NMS ONNX or the EfficientNMS_TRT one instead")
        sizes = {**{name: a.size for name, a in feeds.items()}, **{name: int(np.prod(s)) for name, s in out_shapes.items()}}
        moved = any([self._buffers[name].ensure(count) for name, count in sizes.items()])
        self._destroy_graph(self._graphs.invalidate(shapes, moved))  # a captured graph holds old shapes / addresses
        for name, buffer in self._buffers.items():
            if not ctx.set_tensor_address(name, buffer.device_ptr):
                raise RuntimeError(f"{self.rt.label} refused the address of tensor '{name}' of {self.path.name} "
                                   f"({self._errors(mark)})")
        return out_shapes

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Named outputs of the engine for one batch (see the class docstring)."""
        if self._closed:
            raise UserError("this TensorRT runner was closed")
        rt, cuda = self.cuda.rt, self.cuda
        mark = self._log.mark()
        feeds = self._feeds(images, img_shape)
        out_shapes = self._bind(feeds, mark)
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in feeds.items():
            buffer = self._buffers[name]
            np.copyto(buffer.host[: array.size].reshape(array.shape), array, casting="same_kind")
            cuda(rt.cudaMemcpyAsync(buffer.device_ptr, buffer.host_ptr, array.size * buffer.dtype.itemsize, h2d, self.stream))
        self.capture_ms = None
        if self.graph_mode == "capture" and self._graphs.needs_capture:
            self._capture()  # before the start event: gpu_compute_ms never includes the capture
        cuda(rt.cudaEventRecord(self._start, self.stream))
        if self._graphs.graph is not None:
            cuda(rt.cudaGraphLaunch(self._graphs.graph, self.stream))
        elif not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.rt.label} failed to enqueue {self.path.name}: {self._errors(mark)}")
        cuda(rt.cudaEventRecord(self._end, self.stream))
        for name, shape in out_shapes.items():
            buffer = self._buffers[name]
            count = int(np.prod(shape))
            cuda(rt.cudaMemcpyAsync(buffer.host_ptr, buffer.device_ptr, count * buffer.dtype.itemsize, d2h, self.stream))
        cuda(rt.cudaStreamSynchronize(self.stream))
        self.gpu_compute_ms = float(cuda(rt.cudaEventElapsedTime(self._start, self._end)))
        outputs = {}
        for name, shape in out_shapes.items():
            values = self._buffers[name].host[: int(np.prod(shape))].reshape(shape)
            outputs[name] = values.astype(np.float32) if values.dtype == np.float16 else values.copy()
        return outputs

    def _capture(self) -> None:
        """Capture the launch for the shapes and addresses now bound; on failure fall back to plain enqueues."""
        started = time.perf_counter()
        graph_exec, reason = capture_graph(self.cuda, self.context, self.stream)
        self.capture_ms = (time.perf_counter() - started) * 1000.0
        if graph_exec is not None:
            self._graphs.store(graph_exec)
            return
        self._graphs.disable(str(reason))
        self.graph_fallback = f"CUDA-graph capture failed ({reason}): running plain enqueues"
        _log.warning("%s: %s", self.path.name, self.graph_fallback)


def load_trt_detector(engine_path: str | os.PathLike[str], *, backend: str | None = None, device: int = 0,
                      cuda_graph: bool = False) -> Any:
    """A ``runtime.detector.Detector`` over an engine, configured from its manifest's graph contract."""
    from gflv2_deploy.runtime.detector import Detector

    runner = TrtRunner(engine_path, backend=backend, device=device, cuda_graph=cuda_graph)
    return Detector.from_contract(runner, runner.contract)
