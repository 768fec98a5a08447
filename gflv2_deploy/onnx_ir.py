"""The IR version of every ONNX graph gflv2-deploy writes: the lowest one its opsets (and types) need.

``onnx.helper.make_model`` and the converters stamp the installed onnx's newest IR version (14 for onnx 1.23),
and a runtime refuses a file whose IR version is newer than it knows: onnxruntime 1.30 reads IR <= 13, so a
graph written here at 14 did not load there even though every operator in it is opset 17. The IR version a
graph needs follows from its ``ai.onnx`` / ``ai.onnx.ml`` opsets (``onnx.helper.VERSION_TABLE``: opset 17 ->
IR 8, opset 21 -> IR 10) and from a few element types and model-local functions that came with later IR versions.

Every writer (export, the FP16 / INT8 converters, NMS attachment, the session-only copies, test graphs) goes
through ``onnx_bytes`` or ``save_onnx``. ``onnx`` is imported inside the functions.
"""

from __future__ import annotations

import os
from typing import Any

# element types newer than the IR version their opsets imply (onnx.TensorProto names -> first IR version)
_TYPE_IR = {"FLOAT8E4M3FN": 9, "FLOAT8E4M3FNUZ": 9, "FLOAT8E5M2": 9, "FLOAT8E5M2FNUZ": 9, "UINT4": 10, "INT4": 10,
            "FLOAT4E2M1": 11}
_FUNCTIONS_IR = 8  # model-local functions (ModelProto.functions)


def lowest_ir_version(model: Any) -> int:
    """The lowest IR version that can carry ``model`` (an ``onnx.ModelProto``): the newest of what its standard
    opsets need (custom domains such as ``gflv2`` or ``trt.plugins`` add nothing), what its element types need,
    and 8 when it has model-local functions."""
    from onnx import TensorProto, helper

    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    codes = {getattr(TensorProto, name): ir for name, ir in _TYPE_IR.items() if hasattr(TensorProto, name)}
    if codes:
        graph = model.graph
        used = {t.data_type for t in graph.initializer}
        used |= {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
        needed = max([needed, *(codes[t] for t in used if t in codes)])
    if len(model.functions):
        needed = max(needed, _FUNCTIONS_IR)
    return int(needed)


def stamp_lowest_ir_version(model: Any) -> Any:
    """Set ``model.ir_version`` to ``lowest_ir_version(model)`` (in place) and return ``model``."""
    model.ir_version = lowest_ir_version(model)
    return model


def onnx_bytes(model: Any) -> bytes:
    """``model`` serialised at the lowest IR version it needs (``stamp_lowest_ir_version``, in place)."""
    return stamp_lowest_ir_version(model).SerializeToString()


def save_onnx(model: Any, path: str | os.PathLike[str]) -> None:
    """``onnx.save`` of ``model`` at the lowest IR version it needs (for files that are not final artifacts:
    calibration inputs, session-only copies; artifacts are written atomically from ``onnx_bytes``)."""
    import onnx

    onnx.save(stamp_lowest_ir_version(model), os.fspath(path))
