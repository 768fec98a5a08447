"""Fixtures for the serving tests: small gflv2_tiny graphs (6 classes) and a fake engine with its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def serve_onnx(tmp_path_factory: pytest.TempPathFactory, detecting_tiny) -> dict[str, Path]:
    """'e2e' (NMS onnx, dynamic batch, fixed 384 x 384), 'prenms' (dynamic batch and H/W), 'static' (batch 2),
    'u8' (e2e with --input uint8), 'trt' (the e2e graph whose contract says EfficientNMS_TRT: only the contract
    matters to the repository writer)."""
    from gflv2_deploy.export.onnx import export_onnx

    model = detecting_tiny(0)
    folder = tmp_path_factory.mktemp("serve_onnx")
    kinds = {
        "e2e": dict(nms="onnx", input_hw=(384, 384)),  # fits every tiny50 picture at scale (384, 256)
        "prenms": dict(nms="none", dynamic_hw=True, input_hw=(96, 128)),
        "static": dict(nms="none", dynamic_batch=False, batch_size=2, input_hw=(96, 128)),
        "u8": dict(nms="onnx", input_hw=(384, 384), input_dtype="uint8"),
    }
    out = {}
    for name, kwargs in kinds.items():
        out[name] = folder / f"{name}.onnx"
        export_onnx(model, out[name], **kwargs)
    out["trt"] = _with_contract_change(out["e2e"], folder / "trt.onnx", lambda c: c["postprocessing"].update(nms="trt"))
    return out


def _with_contract_change(source: Path, dest: Path, change) -> Path:
    """A copy of ``source`` whose graph contract went through ``change(dict)``."""
    import onnx

    from gflv2_deploy.contract import CONTRACT_METADATA_KEY

    model = onnx.load(str(source))
    entry = next(p for p in model.metadata_props if p.key == CONTRACT_METADATA_KEY)
    contract = json.loads(entry.value)
    change(contract)
    entry.value = json.dumps(contract)
    onnx.save(model, str(dest))
    return dest


@pytest.fixture(scope="session")
def fake_engine(tmp_path_factory: pytest.TempPathFactory, serve_onnx) -> Path:
    """A stand-in plan file with a manifest carrying the e2e graph's contract (NMS plugin), a stand-in plugin
    library and a batch profile up to 16.

    Config generation reads only the manifest; no TensorRT is needed (the bytes are never deserialised).
    """
    from gflv2_deploy.serve.model_contract import model_contract

    from gflv2_deploy.engine.manifest import MANIFEST_FORMAT, MANIFEST_VERSION
    from gflv2_deploy.hashing import file_sha256

    contract = model_contract(serve_onnx["e2e"]).to_dict()
    contract["postprocessing"]["nms"] = "plugin"
    folder = tmp_path_factory.mktemp("serve_engine")
    engine = folder / "model.engine"
    engine.write_bytes(b"not a real plan")
    plugin = folder / "libgflv2_nms.so"
    plugin.write_bytes(b"not a real library")
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "contract": contract,
                "engine": {"file": engine.name, "sha256": file_sha256(engine), "bytes": engine.stat().st_size},
                "plugin_libraries": [{"path": str(plugin), "sha256": file_sha256(plugin), "bytes": plugin.stat().st_size}],
                "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 3, 384, 384],
                            "profile": {"min": [1, 3, 384, 384], "opt": [8, 3, 384, 384], "max": [16, 3, 384, 384]}}]}
    Path(str(engine) + ".json").write_text(json.dumps(manifest))
    return engine


@pytest.fixture(scope="session")
def rtx_engine(tmp_path_factory: pytest.TempPathFactory, fake_engine: Path) -> Path:
    """``fake_engine``'s stand-in plan with a manifest saying TensorRT-RTX built it."""
    from gflv2_deploy.hashing import file_sha256

    folder = tmp_path_factory.mktemp("serve_rtx")
    engine = folder / "model.engine"
    engine.write_bytes(fake_engine.read_bytes())
    manifest = json.loads(Path(str(fake_engine) + ".json").read_text())
    manifest["runtime"] = {"flavour": "tensorrt-rtx", "version": "1.7.1.116", "major": 1}
    manifest["plugin_libraries"] = []
    manifest["engine"]["sha256"] = file_sha256(engine)
    Path(str(engine) + ".json").write_text(json.dumps(manifest))
    return engine
