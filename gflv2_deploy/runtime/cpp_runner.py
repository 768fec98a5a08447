"""The ``cpp`` backend: the C++ runtime library (``cpp/``, libgflv2.so) through its C ABI, with ctypes.

The C++ library does the whole pipeline itself (OpenCV preprocessing, ONNX Runtime or TensorRT, NMS,
mapping to the picture), so ``CppRunner`` offers two entry points:
- ``infer(images, img_shape)``: the graph alone on a batch preprocessed in Python (the Runner protocol);
- ``detect_pictures(images, test_cfg, pad_to)``: pictures in, detections out, all in C++ (what
  ``Detector.detect`` calls for this runner).
Settings (scale, NMS thresholds) come from the graph contract unless the Detector's ``test_cfg`` differs.

The library is the wheel's (``gflv2_deploy.native.cpp_library``: ``$GFLV2_CPP_LIBRARY``, else the wheel's
``_native/lib``, else a checkout's ``build/cpp/libgflv2.so``). Nothing is loaded at import time. ctypes releases the GIL during
the calls, so several runners (``clone()``) can detect in parallel Python threads.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gflv2_deploy import native
from gflv2_deploy import spec as io_spec
from gflv2_deploy.config import TestConfig
from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.base import check_batch

_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
           "int8": np.int8, "bool": np.bool_}


class _Options(ctypes.Structure):  # gflv2.h: versioned by struct_size
    _fields_ = [("struct_size", ctypes.c_uint32), ("intra_op_threads", ctypes.c_int32), ("device", ctypes.c_char_p), ("cuda_graphs", ctypes.c_int32)]


class _Settings(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("test_scale", ctypes.c_int32 * 2), ("score_thr", ctypes.c_double), ("iou_thr", ctypes.c_double),
                ("max_per_img", ctypes.c_int32)]


class _Image(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("height", ctypes.c_int32), ("width", ctypes.c_int32),
                ("channels", ctypes.c_int32), ("stride", ctypes.c_int64), ("encoded_size", ctypes.c_int64)]


class _Detection(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_float), ("y1", ctypes.c_float), ("x2", ctypes.c_float), ("y2", ctypes.c_float),
                ("score", ctypes.c_float), ("label", ctypes.c_int32)]


_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "gflv2_abi_version": (ctypes.c_int32, []),
    "gflv2_version": (ctypes.c_char_p, []),
    "gflv2_last_error": (ctypes.c_char_p, []),
    "gflv2_detector_create": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(_P)]),
    "gflv2_detector_clone": (ctypes.c_int, [_P, ctypes.POINTER(_P)]),
    "gflv2_detector_destroy": (None, [_P]),
    "gflv2_detector_contract_json": (ctypes.c_char_p, [_P]),
    "gflv2_detector_get_settings": (ctypes.c_int, [_P, ctypes.POINTER(_Settings)]),
    "gflv2_detector_set_settings": (ctypes.c_int, [_P, ctypes.POINTER(_Settings)]),
    "gflv2_detector_detect": (ctypes.c_int, [_P, ctypes.POINTER(_Image), ctypes.c_size_t, ctypes.POINTER(_P)]),
    "gflv2_result_count": (ctypes.c_size_t, [_P, ctypes.c_size_t]),
    "gflv2_result_detections": (ctypes.POINTER(_Detection), [_P, ctypes.c_size_t]),
    "gflv2_result_release": (None, [_P]),
    "gflv2_detector_infer": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int64),
                                            ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_P)]),
    "gflv2_tensors_count": (ctypes.c_size_t, [_P]),
    "gflv2_tensors_get": (ctypes.c_int, [_P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.POINTER(ctypes.POINTER(ctypes.c_int64)), ctypes.POINTER(ctypes.c_size_t),
                                         ctypes.POINTER(ctypes.c_void_p)]),
    "gflv2_tensors_release": (None, [_P]),
    "gflv2_detector_last_timings": (ctypes.c_int, [_P, ctypes.POINTER(ctypes.c_double)]),
    "gflv2_detector_preprocess": (ctypes.c_int, [_P, ctypes.POINTER(_Image), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
                                                 ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64)]),
}
_ABI_VERSION = 2
_library: Any = None


def library_path() -> Path:
    """Where libgflv2.so is looked for (``gflv2_deploy.native.cpp_library``)."""
    return native.cpp_library()


def load_library() -> Any:
    """The C ABI of libgflv2.so with typed signatures (loaded once); UserError saying how to build it."""
    global _library
    if _library is not None:
        return _library
    path = native.require(library_path(), "the C++ runtime library", native.ENV_CPP_LIBRARY)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise UserError(f"cannot load the C++ runtime library {path}: {exc}") from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    if lib.gflv2_abi_version() != _ABI_VERSION:
        raise UserError(f"{path} has C ABI version {lib.gflv2_abi_version()}, this package needs {_ABI_VERSION}: rebuild it")
    _library = lib
    return lib


def _check(lib: Any, status: int, what: str) -> None:
    if status != 0:
        raise UserError(f"{what}: {lib.gflv2_last_error().decode('utf-8', 'replace')}")


def _images(images: Sequence[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
    """A ctypes array of gflv2_image over the pictures' pixels (no copy for C-contiguous rows) and the arrays it borrows."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise UserError("detect takes a sequence of images; wrap a single image in a list: [image]")
    keep: list[np.ndarray] = []
    array = (_Image * max(len(images), 1))()
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise UserError(f"image {i} must be an H x W x 3 uint8 array (BGR), got "
                            f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        if image.strides[0] < 0 or image.strides[-1] != 1 or (image.ndim == 3 and image.strides[1] != image.shape[2]):
            image = np.ascontiguousarray(image)
        keep.append(image)
        channels = image.shape[2] if image.ndim == 3 else 1
        array[i] = _Image(image.ctypes.data, image.shape[0], image.shape[1], channels, image.strides[0], 0)
    return array, keep


class _NativeDetector:
    """The one owner of a ``gflv2_detector*``: destroyed exactly once, by ``close()`` or when garbage-collected.

    Copying is refused: a second owner of the same pointer would destroy it twice (a double free).
    """

    __slots__ = ("ptr", "_finalizer", "__weakref__")

    def __init__(self, lib: Any, ptr: Any) -> None:
        self.ptr = ptr
        # a finaliser, not __del__: it runs once however many references there are, and at interpreter exit
        self._finalizer = weakref.finalize(self, lib.gflv2_detector_destroy, ptr)

    def close(self) -> None:
        self._finalizer()  # idempotent: a finaliser runs at most once
        self.ptr = None

    def __copy__(self) -> "_NativeDetector":
        raise TypeError("a native C++ detector handle has one owner and cannot be copied: use CppRunner.clone()")

    def __deepcopy__(self, memo: dict) -> "_NativeDetector":
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a native C++ detector handle cannot be pickled: load the model again in the other process")


class CppRunner:
    """One C++ detector (``gflv2_detector``) over an exported ONNX or a TensorRT engine with its manifest.

    path: the model; threads: ONNX Runtime intra-op threads (None: its choice); device: "cpu" or "cuda[:N]".
    Use one runner per thread; ``clone()`` gives another that shares the loaded model. ``copy.copy`` and
    ``copy.deepcopy`` give such a clone too (a new native detector through the C ABI), never a second owner
    of this runner's native handle.
    """

    name = "cpp"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu", *,
                 _native: _NativeDetector | None = None) -> None:
        from gflv2_deploy.contract import GraphContract

        self._lib = load_library()
        self.path = Path(path)
        self.device = device
        if _native is None:
            if threads is not None and threads < 1:
                raise UserError(f"threads must be at least 1, got {threads}")
            # The package's device default is "cpu", which for an engine means "the default GPU" as for the other
            # TensorRT runners (factory.cuda_device_index); the C library refuses an explicit cpu for an engine.
            engine_default = device == "cpu" and self.path.suffix != ".onnx"
            options = _Options(ctypes.sizeof(_Options), threads or 0, b"" if engine_default else device.encode(), 1)
            handle = _P()
            status = self._lib.gflv2_detector_create(os.fsencode(self.path), ctypes.byref(options), ctypes.byref(handle))
            _check(self._lib, status, f"the C++ runtime cannot load {self.path}")
            _native = _NativeDetector(self._lib, handle)  # owned from here on, whatever fails below
        self._native = _native
        self.contract = GraphContract.from_json(self._lib.gflv2_detector_contract_json(self._live()).decode(), str(self.path))
        self.class_names = self.contract.model.class_names
        input_hw = self.contract.preprocessing.input_hw
        self.static_hw = tuple(input_hw) if input_hw is not None else None

    # --- Runner protocol -----------------------------------------------------------------------------------
    @property
    def output_names(self) -> tuple[str, ...]:
        return self.contract.output_names

    def __enter__(self) -> "CppRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy the native detector now (idempotent; garbage collection does it otherwise)."""
        native = getattr(self, "_native", None)
        if native is not None:
            native.close()

    def clone(self) -> "CppRunner":
        """A runner for another thread sharing this one's loaded model (and its current settings)."""
        handle = _P()
        _check(self._lib, self._lib.gflv2_detector_clone(self._live(), ctypes.byref(handle)), "clone failed")
        return CppRunner(self.path, device=self.device, _native=_NativeDetector(self._lib, handle))

    def __copy__(self) -> "CppRunner":
        """``copy.copy(runner)``: a ``clone()`` with its own native detector (a shallow copy would share and
        destroy one handle twice)."""
        return self.clone()

    def __deepcopy__(self, memo: dict) -> "CppRunner":
        return self.clone()

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The graph alone in C++: images N x 3 x H x W float32 (normalised), or N x H x W x 3 uint8 pictures for a
        uint8-input graph (passed through the C ABI as float pixel values 0-255) -> the contract's outputs by name."""
        batch = check_batch(images, self.contract.preprocessing.input_format)
        if batch.dtype == np.uint8:
            batch = batch.astype(np.float32)
        shape = (ctypes.c_int64 * 4)(*batch.shape)
        shapes_ptr = None
        if img_shape is not None and self.contract.has_img_shape_input:
            shapes = np.ascontiguousarray(img_shape, dtype=np.float32)
            if shapes.shape != (batch.shape[0], 2):
                raise UserError(f"img_shape must be {batch.shape[0]} x 2 (height, width), got shape {shapes.shape}")
            shapes_ptr = shapes.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        tensors = _P()
        _check(self._lib, self._lib.gflv2_detector_infer(self._live(), batch.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                                         shape, shapes_ptr, ctypes.byref(tensors)), "C++ inference failed")
        try:
            out: dict[str, np.ndarray] = {}
            for i in range(self._lib.gflv2_tensors_count(tensors)):
                name, dtype, dims, rank, data = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.POINTER(ctypes.c_int64)(), ctypes.c_size_t(), ctypes.c_void_p()
                self._lib.gflv2_tensors_get(tensors, i, ctypes.byref(name), ctypes.byref(dtype), ctypes.byref(dims),
                                            ctypes.byref(rank), ctypes.byref(data))
                arr_shape = tuple(dims[k] for k in range(rank.value))
                np_dtype = np.dtype(_DTYPES[dtype.value.decode()])
                nbytes = int(np.prod(arr_shape, dtype=np.int64)) * np_dtype.itemsize
                raw = ctypes.string_at(data.value, nbytes) if nbytes else b""
                out[name.value.decode()] = np.frombuffer(raw, dtype=np_dtype).reshape(arr_shape).copy()
            return out
        finally:
            self._lib.gflv2_tensors_release(tensors)

    # --- the whole pipeline in C++ ---------------------------------------------------------------------------
    def detect_pictures(self, images: Sequence[np.ndarray], test_cfg: TestConfig | None = None,
                        pad_to: tuple[int, int] | None = None) -> list[io_spec.Detections]:
        """BGR uint8 H x W x 3 pictures -> one Detections per picture (original-picture pixels), all in C++.

        test_cfg: scale and NMS settings (default: the contract's); pad_to must be None or the graph's fixed size.
        """
        if pad_to is not None and tuple(pad_to) != self.static_hw:
            raise UserError(f"the C++ runtime pads to the graph's own input size ({self.static_hw}), not {tuple(pad_to)}")
        if test_cfg is not None:
            self._apply(test_cfg)
        array, keep = _images(images)
        result = _P()
        _check(self._lib, self._lib.gflv2_detector_detect(self._live(), array, len(images), ctypes.byref(result)),
               "C++ detection failed")
        try:
            dets = []
            for i in range(len(images)):
                n = self._lib.gflv2_result_count(result, i)
                rows = np.ctypeslib.as_array(self._lib.gflv2_result_detections(result, i), shape=(n,)) if n else None
                if rows is None:
                    dets.append(io_spec.Detections())
                    continue
                boxes = np.stack([rows["x1"], rows["y1"], rows["x2"], rows["y2"]], axis=1).astype(np.float32)
                dets.append(io_spec.Detections(boxes, rows["score"].astype(np.float32), rows["label"].astype(np.int64)))
            return dets
        finally:
            self._lib.gflv2_result_release(result)
            del keep

    def preprocess_pictures(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The tensor the C++ preprocessing feeds the graph (parity checks): N x 3 x H x W float32, or for a
        uint8-input graph the N x H x W x 3 uint8 pictures."""
        array, keep = _images(images)
        shape = (ctypes.c_int64 * 4)()
        _check(self._lib, self._lib.gflv2_detector_preprocess(self._live(), array, len(images), None, 0, shape), "C++ preprocessing failed")
        out = np.empty(tuple(shape), dtype=np.float32)
        _check(self._lib, self._lib.gflv2_detector_preprocess(self._live(), array, len(images),
                                                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size, shape),
               "C++ preprocessing failed")
        del keep
        return out.astype(np.uint8) if self.contract.preprocessing.uint8_input else out

    def last_timings(self) -> dict[str, float]:
        """Milliseconds of the last detect_pictures call: preprocess, inference, postprocess (measured in C++)."""
        ms = (ctypes.c_double * 3)()
        _check(self._lib, self._lib.gflv2_detector_last_timings(self._live(), ms), "timings")
        return {"preprocess_ms": ms[0], "inference_ms": ms[1], "postprocess_ms": ms[2]}

    def _apply(self, cfg: TestConfig) -> None:
        current = _Settings(ctypes.sizeof(_Settings))
        self._lib.gflv2_detector_get_settings(self._live(), ctypes.byref(current))
        wanted = _Settings(ctypes.sizeof(_Settings), (ctypes.c_int32 * 2)(*cfg.scale), float(cfg.score_thr), float(cfg.iou_thr), int(cfg.max_per_img))
        if (tuple(current.test_scale), current.score_thr, current.iou_thr, current.max_per_img) != (
                tuple(wanted.test_scale), wanted.score_thr, wanted.iou_thr, wanted.max_per_img):
            _check(self._lib, self._lib.gflv2_detector_set_settings(self._live(), ctypes.byref(wanted)), "C++ settings refused")

    def _live(self) -> Any:
        owner = getattr(self, "_native", None)
        if owner is None or not owner.ptr:
            raise UserError("this C++ runner was closed")
        return owner.ptr


def load_cpp_detector(path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> Any:
    """A ``runtime.detector.Detector`` whose pictures go through the C++ runtime end to end."""
    from gflv2_deploy.runtime.detector import Detector

    runner = CppRunner(path, threads=threads, device=device)
    return Detector.from_contract(runner, runner.contract)
