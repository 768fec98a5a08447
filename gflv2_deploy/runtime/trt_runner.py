"""TensorRT backend (TensorRT 10/11 and TensorRT-RTX) behind the Runner interface.

Loading (``TrtRunner.__init__``), in this order so that every refusal is one clear message:
1. the sidecar manifest (``engine.manifest.read_manifest``: present, readable, engine hash matches);
2. the TensorRT flavour that built the engine (``trt_api.load_runtime``; missing -> the extra to install);
3. flavour and exact version against the manifest (``check_manifest`` without a device);
4. cuda-python's runtime bindings (``cuda.bindings.runtime``; never pycuda) and the GPU, then
   ``check_manifest`` again with the GPU's compute capability;
5. the standard plugins (``init_libnvinfer_plugins``) BEFORE deserialising (an engine with
   ``EfficientNMS_TRT`` fails to load otherwise, deploy_landscape §3.3), then the engine and one
   execution context.

``infer``: tensors are bound by name (``set_input_shape`` / ``set_tensor_address``, no binding
indices: gone since TensorRT 10), inputs go through pinned host buffers with asynchronous copies on
one stream, ``execute_async_v3`` runs between two CUDA events, so ``gpu_compute_ms`` (the last call's
GPU time of the engine alone, what trtexec calls GPU compute) is available to benchmarks. With
``cuda_graph=True`` the engine launch is captured once per input shape set and replayed
(TensorRT needs one plain enqueue before capture; engines with data-dependent output shapes, e.g. an
ONNX ``NonMaxSuppression``, are refused because they cannot be captured or pre-allocated).

Nothing TensorRT- or CUDA-related is imported at module import: ``import gflv2_deploy.runtime.trt_runner``
works on machines without either (tests/unit/runtime checks it).

Never executed on a real GPU in this project's CI (no GPU, no TensorRT there); what runs in CI is
the loading order up to the missing CUDA bindings, the manifest refusals and argument checks.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy import spec as io_spec
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import check_batch

_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int64, "int8": np.int8,
           "uint8": np.uint8, "bool": np.bool_}


def import_cudart() -> Any:
    """cuda-python's runtime module; MissingDependencyError naming the ``tensorrt`` extra when absent."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python layout
        except ImportError:
            raise MissingDependencyError("cuda.bindings", "tensorrt", "Running TensorRT engines") from None
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


class TrtRunner:
    """Runner over a serialized TensorRT / TensorRT-RTX engine written by ``gflv2-deploy build``.

    engine_path: the plan; its manifest ``<engine>.json`` must sit beside it. device: CUDA device
    index. cuda_graph: capture and replay the engine launch per input shape set.
    ``infer(images, img_shape=None)`` as ``OrtRunner.infer``: N x 3 x H x W float32 normalised images
    (cast to the engine's input dtype when that is float16), img_shape N x 2 float32; returns the
    engine's outputs by name as numpy arrays. After each call ``gpu_compute_ms`` holds the GPU time
    of the engine (CUDA events around the enqueue or graph launch, no copies).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike[str], *, device: int = 0, cuda_graph: bool = False) -> None:
        from gflv2_deploy.engine import manifest as manifest_mod
        from gflv2_deploy.engine import trt_api

        if not isinstance(device, int) or device < 0:
            raise UserError(f"device must be a CUDA device index >= 0, got {device!r}")
        self.path = Path(engine_path)
        self.cuda_graph = bool(cuda_graph)
        self._closed = True
        self.manifest = manifest_mod.read_manifest(self.path)
        self.rt = trt_api.load_runtime(str(self.manifest.get("runtime", {}).get("flavour")))
        manifest_mod.check_manifest(self.manifest, self.rt, None)  # flavour and version: no GPU needed
        cuda = _Cuda(import_cudart())
        gpu = trt_api.query_device(device)
        if gpu is None:
            raise UserError(f"no CUDA GPU {device} is visible here: TensorRT engines run on a GPU")
        manifest_mod.check_manifest(self.manifest, self.rt, gpu)
        self.cuda, self.gpu = cuda, gpu
        self.cuda(cuda.rt.cudaSetDevice(device))
        trt = self.rt.module
        self._logger, self._captured = trt_api.create_logger(self.rt)
        trt_api.init_standard_plugins(self.rt, self._logger)  # before deserialising (plugin nodes)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            detail = "; ".join(self._captured.errors[-3:]) or "no details reported"
            raise UserError(f"{self.rt.label} could not load {self.path.name} ({detail}): rebuild the engine on this "
                            f"machine with `gflv2-deploy build`")
        self.context = self.engine.create_execution_context()
        io_mode = trt.TensorIOMode
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == io_mode.INPUT]
        self._outputs = tuple(n for n in names if self.engine.get_tensor_mode(n) == io_mode.OUTPUT)
        self._dtypes = {n: np.dtype(_DTYPES.get(trt_api.dtype_name(self.engine.get_tensor_dtype(n)), np.float32)) for n in names}
        self._fixed = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n)) for n in self._inputs}
        self._profiles = {n: self._profile(n) for n in self._inputs}
        self._buffers = {n: _Buffer(cuda, self._dtypes[n]) for n in names}
        self.stream = cuda(cuda.rt.cudaStreamCreate())
        self._start, self._end = cuda(cuda.rt.cudaEventCreate()), cuda(cuda.rt.cudaEventCreate())
        self._graphs: dict[tuple[tuple[int, ...], ...], Any] = {}
        self._closed = False
        self.gpu_compute_ms: float | None = None
        from gflv2_deploy.engine.manifest import manifest_contract

        contract = manifest_contract(self.manifest, str(self.path))
        if contract is None:
            raise UserError(f"{self.path} was built from an ONNX without a gflv2-deploy graph contract: build it from "
                            "an ONNX written by `gflv2-deploy export` to run it here")
        self.contract = contract

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
        return (dims[2], dims[3]) if len(dims) == 4 and dims[2] >= 0 and dims[3] >= 0 else None

    def __enter__(self) -> "TrtRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the device and pinned buffers, the stream, the events and captured graphs (idempotent)."""
        if self._closed:
            return
        self._closed = True
        rt = self.cuda.rt
        self._drop_graphs()
        for buffer in self._buffers.values():
            buffer.free()
        self.cuda(rt.cudaEventDestroy(self._start))
        self.cuda(rt.cudaEventDestroy(self._end))
        self.cuda(rt.cudaStreamDestroy(self.stream))

    def _drop_graphs(self) -> None:
        for graph_exec in self._graphs.values():
            self.cuda(self.cuda.rt.cudaGraphExecDestroy(graph_exec))
        self._graphs.clear()

    def _feeds(self, images: np.ndarray, img_shape: np.ndarray | None) -> dict[str, np.ndarray]:
        batch = check_batch(images)
        n, _, h, w = batch.shape
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

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Named outputs of the engine for one batch (see the class docstring)."""
        if self._closed:
            raise UserError("this TensorRT runner was closed")
        rt, cuda, ctx = self.cuda.rt, self.cuda, self.context
        feeds = self._feeds(images, img_shape)
        for name, array in feeds.items():
            check_input_shape(name, array.shape, self._profiles[name], self._fixed[name])
            ctx.set_input_shape(name, tuple(int(d) for d in array.shape))
        out_shapes = {name: tuple(int(d) for d in ctx.get_tensor_shape(name)) for name in self._outputs}
        dynamic = [name for name, shape in out_shapes.items() if any(d < 0 for d in shape)]
        if dynamic:
            raise UserError(f"{self.path.name} has data-dependent output shapes ({', '.join(dynamic)}; an ONNX "
                            f"NonMaxSuppression): build the pre-NMS ONNX or the EfficientNMS_TRT one instead")
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        sizes = {**{name: a.size for name, a in feeds.items()}, **{name: int(np.prod(s)) for name, s in out_shapes.items()}}
        if any([self._buffers[name].ensure(count) for name, count in sizes.items()]):
            self._drop_graphs()  # captured launches hold the old device addresses
        for name, array in feeds.items():
            buffer = self._buffers[name]
            np.copyto(buffer.host[: array.size].reshape(array.shape), array, casting="same_kind")
            cuda(rt.cudaMemcpyAsync(buffer.device_ptr, buffer.host_ptr, array.size * buffer.dtype.itemsize, h2d, self.stream))
        for name, buffer in self._buffers.items():
            ctx.set_tensor_address(name, buffer.device_ptr)
        key = tuple(tuple(a.shape) for a in feeds.values())
        cuda(rt.cudaEventRecord(self._start, self.stream))
        if self.cuda_graph:
            self._launch_graph(key)
        elif not ctx.execute_async_v3(int(self.stream)):
            raise RuntimeError(f"{self.rt.label} failed to enqueue {self.path.name}: {'; '.join(self._captured.errors[-3:])}")
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

    def _launch_graph(self, key: tuple[tuple[int, ...], ...]) -> None:
        """Replay the captured launch for these input shapes, capturing it first (after one plain enqueue)."""
        rt, cuda = self.cuda.rt, self.cuda
        graph_exec = self._graphs.get(key)
        if graph_exec is None:
            if not self.context.execute_async_v3(int(self.stream)):  # TensorRT sets itself up outside capture
                raise RuntimeError(f"{self.rt.label} failed to enqueue {self.path.name}")
            cuda(rt.cudaStreamBeginCapture(self.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            self.context.execute_async_v3(int(self.stream))
            graph = cuda(rt.cudaStreamEndCapture(self.stream))
            graph_exec = cuda(rt.cudaGraphInstantiate(graph, 0))
            cuda(rt.cudaGraphDestroy(graph))
            self._graphs[key] = graph_exec
        cuda(rt.cudaGraphLaunch(graph_exec, self.stream))


def load_trt_detector(engine_path: str | os.PathLike[str], *, device: int = 0, cuda_graph: bool = False) -> Any:
    """A ``runtime.detector.Detector`` over an engine, configured from its manifest's graph contract."""
    from gflv2_deploy.runtime.detector import Detector

    runner = TrtRunner(engine_path, device=device, cuda_graph=cuda_graph)
    return Detector.from_contract(runner, runner.contract)
