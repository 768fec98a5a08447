"""The graph contract of a model file (ONNX or engine), read in one place for the serving code.

``model_contract(path)`` returns the ``GraphContract`` of an exported ONNX (metadata key
``gflv2_deploy.contract``, ``contract_io``) or of a built engine (its ``<engine>.json`` manifest, whose
engine checksum must match; ``engine.manifest``).
"""

from __future__ import annotations

import os
from pathlib import Path

from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError

ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan")


def model_contract(path: str | os.PathLike[str]) -> GraphContract:
    """The contract of the ONNX or engine at ``path``; UserError for a missing file or one without a contract."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model file not found: {p}")
    if p.suffix == ".onnx":
        from gflv2_deploy.contract_io import read_onnx_contract

        return read_onnx_contract(p)
    if p.suffix in ENGINE_SUFFIXES:
        from gflv2_deploy.engine.manifest import manifest_contract, manifest_path, read_manifest

        contract = manifest_contract(read_manifest(p), str(manifest_path(p)))
        if contract is None:
            raise UserError(f"{p} was built from an ONNX without a gflv2-deploy graph contract: "
                            "build it from an ONNX exported by `gflv2-deploy export`")
        return contract
    raise UserError(f"{p}: expected an exported ONNX (.onnx) or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")
