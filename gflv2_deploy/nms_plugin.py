"""Our batched NMS operator ``gflv2::GFLV2NMS_TRT`` (plugins/gflv2_nms): names, and where its libraries are.

One op, three implementations with one contract (plugins/README.md): the CPU twin as an ONNX Runtime
custom-op library (``libgflv2_nms_ort.so``), the TensorRT IPluginV3 plugin (``libgflv2_nms_trt10.so`` /
``libgflv2_nms_trt11.so``) and the CUDA kernels behind a C entry point (``libgflv2_nms_cuda.so``).
``bash scripts/build_cpp.sh`` builds them into ``build/gflv2_nms/``. The constants here must match
``plugins/gflv2_nms/include/gflv2_nms/nms.h``.

Nothing is loaded at import time; onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gflv2_deploy.errors import UserError

OP_TYPE = "GFLV2NMS_TRT"  # ONNX op_type == TensorRT plugin name
OP_DOMAIN = "gflv2"  # ONNX domain == ONNX Runtime custom-op domain
OP_DOMAIN_VERSION = 1
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""  # the parser looks plugin_namespace up first, then the node domain (TensorRT >= 10.10)

ENV_ORT_LIB = "GFLV2_NMS_LIB"  # path of libgflv2_nms_ort.so, overrides the build folder
_REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = _REPO_ROOT / "build" / "gflv2_nms"
ORT_LIB_NAME = "libgflv2_nms_ort.so"
_HOW_TO_BUILD = "build it with `bash scripts/setup_cpp.sh && bash scripts/build_cpp.sh`"


def ort_library_path() -> Path:
    """The ONNX Runtime custom-op library: ``$GFLV2_NMS_LIB``, else ``build/gflv2_nms/libgflv2_nms_ort.so``.

    Raises UserError (one line, saying how to build it) when the file does not exist.
    """
    env = os.environ.get(ENV_ORT_LIB)
    path = Path(env) if env else BUILD_DIR / ORT_LIB_NAME
    if not path.is_file():
        where = f"${ENV_ORT_LIB} = {env}" if env else str(path)
        raise UserError(f"the {OP_TYPE} ONNX Runtime library is missing ({where}): {_HOW_TO_BUILD}, or set ${ENV_ORT_LIB}")
    return path


def trt_library_path(major: int) -> Path:
    """The TensorRT plugin library built for TensorRT ``major`` (10 or 11) in the build folder; UserError if absent."""
    path = BUILD_DIR / f"libgflv2_nms_trt{int(major)}.so"
    if not path.is_file():
        raise UserError(f"the {OP_TYPE} TensorRT {major} plugin library is missing ({path}): {_HOW_TO_BUILD}")
    return path


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
