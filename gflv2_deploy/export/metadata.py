"""The I/O contract an exported ONNX carries in its ``metadata_props`` (key ``gflv2_deploy.spec``).

One JSON object, so that runners, the engine builder and its manifest know how to feed the graph
and read its outputs without the checkpoint or the configuration. Members (format version 1):

```
format, format_version   "gflv2-deploy/onnx-spec", 1
tool                     {"name": "gflv2-deploy", "version": gflv2_deploy.__version__}
config_name              name of the model configuration (e.g. "gflv2_r50_fpn")
source                   {"checkpoint": file name or null, "checkpoint_sha256": hex or null}
exporter                 {"name": "torchscript" | "dynamo", "torch_version", "opset", "why": ...}
opset                    default-domain opset of the graph
inputs / outputs         [{"name", "dtype", "shape" (ints, or names of dynamic axes), "layout"?}]
input_names, output_names, img_shape_input (bool), clamp (bool)
dynamic_axes             {"batch": bool, "height_width": bool}; input_hw: traced (static) [H, W]
preprocessing            {"layout": "NCHW", "dtype": "float32", "color": "RGB", "to_rgb": true,
                          "value_range": "0-255", "mean", "std", "pad_divisor", "pad_value",
                          "pad": "bottom-right", "resize": "keep-ratio bilinear", "test_scale"}
boxes                    {"format": "xyxy", "units": "input pixels", "clamped_to": "img_shape" | null}
class_names, num_classes, strides, reg_max, reg_topk
nms                      {"form": "none" | "onnx" | "trt", "in_graph", "score_threshold",
                          "iou_threshold", "max_dets", "padding": {"box", "score", "class"} | null}
test                     the configuration's test settings (scale, nms_pre, score_thr, iou_thr,
                          max_per_img) with the NMS thresholds above, for host post-processing
```
This module imports neither torch nor onnx at import time (runners use it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gflv2_deploy.errors import MissingDependencyError, UserError

SPEC_METADATA_KEY = "gflv2_deploy.spec"
SPEC_FORMAT = "gflv2-deploy/onnx-spec"
SPEC_FORMAT_VERSION = 1
_NOT_OURS = "not exported by gflv2-deploy; re-export with `gflv2-deploy export`"


def parse_spec(text: str | None, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse the metadata JSON string of ``source``; UserError when absent, malformed or of another version."""
    if text is None:
        raise UserError(f"{source} has no '{SPEC_METADATA_KEY}' metadata: {_NOT_OURS}")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: metadata '{SPEC_METADATA_KEY}' is not valid JSON ({exc}); {_NOT_OURS}") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise UserError(f"{source}: metadata '{SPEC_METADATA_KEY}' is not a gflv2-deploy I/O spec; {_NOT_OURS}")
    if spec.get("format_version") != SPEC_FORMAT_VERSION:
        raise UserError(
            f"{source} has I/O spec format {spec.get('format_version')}, this gflv2-deploy reads "
            f"{SPEC_FORMAT_VERSION}: re-export with `gflv2-deploy export`"
        )
    return spec


def load_onnx_model(path: str | os.PathLike[str], purpose: str = "reading ONNX metadata") -> Any:
    """The ``onnx.ModelProto`` at ``path`` without its external weights.

    Raises UserError for a missing file or one that is not ONNX; MissingDependencyError (naming
    ``purpose``) without the ``onnx`` package. The one place ONNX files are opened for inspection.
    """
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", purpose) from None
    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX file not found: {p}")
    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
        raise UserError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def spec_text(model: Any) -> str | None:
    """The raw ``gflv2_deploy.spec`` metadata string of a loaded ONNX model, or None."""
    return next((prop.value for prop in model.metadata_props if prop.key == SPEC_METADATA_KEY), None)


def read_onnx_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``gflv2_deploy.spec`` metadata of the ONNX file at ``path`` as a dict (weights are not loaded).

    Raises UserError for a missing file, a file that is not ONNX, or an ONNX without our metadata.
    """
    return parse_spec(spec_text(load_onnx_model(path)), Path(path))
