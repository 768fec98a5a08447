"""Reading and writing the graph contract in ONNX files (``metadata_props``, key ``gflv2_deploy.contract``).

The bottom-layer home of ONNX file inspection, so that runtime/ and engine/ read contracts without
importing export/. ``onnx`` is imported inside the functions (deployment installs without it still
read contracts through onnxruntime's model metadata: ``GraphContract.from_json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gflv2_deploy.contract import CONTRACT_METADATA_KEY, GraphContract, check_schema
from gflv2_deploy.errors import MissingDependencyError, UserError

_OLD_KEY = "gflv2_deploy.spec"  # format 1, before the typed contract


def load_onnx_model(path: str | os.PathLike[str], purpose: str = "reading ONNX metadata", *,
                    external_data: bool = False) -> Any:
    """The ``onnx.ModelProto`` at ``path``; its external weights too with ``external_data``.

    Raises UserError for a missing file or one that is not ONNX; MissingDependencyError (naming
    ``purpose``) without the ``onnx`` package. The one place ONNX files are opened for inspection.
    """
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", purpose) from None
    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX file not found: {p}" if not p.is_dir() else f"{p} is a folder, not an ONNX file")
    try:
        return onnx.load(str(p), load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
        raise UserError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def contract_text(metadata: Any) -> str | None:
    """The raw contract JSON from ``metadata_props`` of a ModelProto, or from a {key: value} mapping."""
    if isinstance(metadata, dict):
        return metadata.get(CONTRACT_METADATA_KEY)
    return next((p.value for p in metadata.metadata_props if p.key == CONTRACT_METADATA_KEY), None)


def contract_from_metadata(metadata: Any, source: str | os.PathLike[str]) -> GraphContract:
    """The contract in a ModelProto or an onnxruntime ``custom_metadata_map``; UserError when absent or unknown."""
    text = contract_text(metadata)
    if text is None:
        keys = metadata.keys() if isinstance(metadata, dict) else [p.key for p in metadata.metadata_props]
        if _OLD_KEY in keys:
            raise UserError(f"{source} was exported by an older gflv2-deploy (graph contract version 1): "
                            "re-export it with `gflv2-deploy export`")
    return GraphContract.from_json(text, os.fspath(source))


def has_contract(model: Any) -> bool:
    return contract_text(model) is not None


def read_onnx_contract(path: str | os.PathLike[str]) -> GraphContract:
    """The contract of the ONNX file at ``path`` (weights are not loaded); UserError as above."""
    return contract_from_metadata(load_onnx_model(path), Path(path))


def write_contract(model: Any, contract: GraphContract) -> None:
    """Replace every ``metadata_props`` entry of ``model`` with the one contract (exporter-internal keys go)."""
    check_schema(contract.to_dict())
    del model.metadata_props[:]
    model.metadata_props.add(key=CONTRACT_METADATA_KEY, value=contract.to_json())


def tensor_infos(values: Any) -> tuple[Any, ...]:
    """Contract ``TensorInfo``s of ONNX ValueInfos (graph inputs or outputs), dims as ints or axis names."""
    import onnx

    from gflv2_deploy.contract import TensorInfo

    return tuple(
        TensorInfo(name=v.name, dtype=onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                   shape=tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in v.type.tensor_type.shape.dim))
        for v in values)
