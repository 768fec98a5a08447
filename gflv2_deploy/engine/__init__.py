"""Engine stage: ONNX -> TensorRT / TensorRT-RTX engine plus its sidecar manifest.

Never imports torch; TensorRT is imported only inside the functions that build
(``trt_api.load_runtime``), so this package imports on machines without TensorRT or a GPU.
"""

from gflv2_deploy.engine.build import PRECISIONS, build_engine, check_precision
from gflv2_deploy.engine.manifest import check_manifest, manifest_path, read_manifest
from gflv2_deploy.engine.trt_api import DeviceInfo, RuntimeInfo, load_runtime, query_device

__all__ = [
    "PRECISIONS",
    "DeviceInfo",
    "RuntimeInfo",
    "build_engine",
    "check_manifest",
    "check_precision",
    "load_runtime",
    "manifest_path",
    "query_device",
    "read_manifest",
]
