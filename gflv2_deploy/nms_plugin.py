"""Our batched NMS operator ``gflv2::GFLV2NMS_TRT`` (plugins/gflv2_nms): names, and where its libraries are.

One op, three implementations with one contract (plugins/README.md): the CPU twin as an ONNX Runtime
custom-op library (``libgflv2_nms_ort.so``), the TensorRT IPluginV3 plugin (``libgflv2_nms_trt10.so`` /
``libgflv2_nms_trt11.so``) and the CUDA kernels behind a C entry point (``libgflv2_nms_cuda.so``).
The wheel carries the ONNX Runtime library; ``gflv2_deploy.native`` says where each one is (in a checkout,
``bash scripts/build_cpp.sh`` builds them into ``build/gflv2_nms/``). The constants here must match
``plugins/gflv2_nms/include/gflv2_nms/nms.h``.

Nothing is loaded at import time; onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gflv2_deploy import native

OP_TYPE = "GFLV2NMS_TRT"  # ONNX op_type == TensorRT plugin name
OP_DOMAIN = "gflv2"  # ONNX domain == ONNX Runtime custom-op domain
OP_DOMAIN_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""  # the parser looks plugin_namespace up first, then the node domain (TensorRT >= 10.10)

ENV_ORT_LIB = native.ENV_NMS_ORT_LIBRARY  # path of libgflv2_nms_ort.so, overrides where the package looks
ORT_LIB_NAME = native.NMS_ORT_LIBRARY_NAME


def ort_library_path() -> Path:
    """The ONNX Runtime custom-op library (``native.nms_op_library``): ``$GFLV2_NMS_ORT_LIBRARY``, else the wheel's,
    else a checkout's ``build/gflv2_nms/``. Raises UserError (one line, saying how to get it) when it is missing."""
    return native.require(native.nms_op_library(), f"the {OP_TYPE} ONNX Runtime library", ENV_ORT_LIB)


def trt_library_path(major: int) -> Path:
    """The TensorRT plugin library built for TensorRT ``major`` (10 or 11); UserError if absent."""
    return native.require(native.tensorrt_plugin_library(major), f"the {OP_TYPE} TensorRT {major} plugin library")


def session_needs_ort_library(path: str | os.PathLike[str]) -> bool:
    """Whether an onnxruntime session of the ONNX at ``path`` registers the custom-op library: when the graph has
    our node; and, where the onnx package is missing (a deployment install) so the graph cannot be looked into,
    whenever the library is there (sessions of graphs without our node ignore it)."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        return native.nms_op_library().is_file()
    return onnx_file_uses_op(path)


def graph_uses_op(model: Any) -> bool:
    """True when the ONNX ``ModelProto`` has a ``gflv2::GFLV2NMS_TRT`` node (top-level graph)."""
    return any(n.op_type == OP_TYPE and n.domain == OP_DOMAIN for n in model.graph.node)


def onnx_file_uses_op(path: str | os.PathLike[str]) -> bool:
    """True when the ONNX file at ``path`` has our NMS node (reads the graph without external weights).

    False when the onnx package is missing: the caller's own loading error then speaks. A file that is not a
    readable ONNX model (truncated, another format) is a UserError naming it (``contract_io.load_onnx_model``).
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    from gflv2_deploy.contract_io import load_onnx_model

    return graph_uses_op(load_onnx_model(path, "reading an ONNX graph"))


def register_ort_library(session_options: Any) -> Path:
    """Register the custom-op library with an ``onnxruntime.SessionOptions``; returns its path (UserError if missing)."""
    path = ort_library_path()
    session_options.register_custom_ops_library(str(path))
    return path
