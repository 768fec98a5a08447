"""Write the ONNX models the C++ tests run: the detecting tiny model (tests/conftest.py), exported three ways.

    python cpp/tests/make_test_models.py OUT_DIR

OUT_DIR/tiny_prenms.onnx  pre-NMS outputs, dynamic batch and size (host NMS in C++)
OUT_DIR/tiny_e2e.onnx     end-to-end (ONNX NonMaxSuppression), dynamic batch and size
OUT_DIR/tiny_static.onnx  pre-NMS, fixed 256 x 384 input (the letterbox rule)
OUT_DIR/tiny_u8.onnx      tiny_prenms.onnx exported with --input uint8 (uint8 N x H x W x 3 BGR pictures)
OUT_DIR/tiny_newer_contract.onnx, tiny_no_contract.onnx  the pre-NMS graph with contract version 4 / without metadata

Each carries the graph contract the exporter writes (``gflv2_deploy.contract``). Idempotent: existing
files are kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _detecting_tiny():
    """tests/conftest.py's detecting tiny model, loaded by path (a bare ``import conftest`` may find another)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gflv2_tests_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module._detecting_tiny(0)


def main(out_dir: str) -> None:
    from gflv2_deploy.export.onnx import export_onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = None
    for name, kwargs in (("tiny_prenms.onnx", dict(nms="none", dynamic_hw=True)),
                         ("tiny_e2e.onnx", dict(nms="onnx", dynamic_hw=True)),
                         ("tiny_static.onnx", dict(nms="none", dynamic_hw=False, input_hw=(256, 384))),
                         ("tiny_u8.onnx", dict(nms="none", dynamic_hw=True, input_dtype="uint8"))):
        path = out / name
        if not path.is_file():
            model = model or _detecting_tiny()
            tmp = path.with_suffix(".tmp.onnx")
            export_onnx(model, tmp, **kwargs)
            tmp.rename(path)
        print(path)
    _write_variants(out / "tiny_prenms.onnx", out)


def _write_variants(source: Path, out: Path) -> None:
    import onnx

    from gflv2_deploy.contract import CONTRACT_METADATA_KEY

    for name, version in (("tiny_newer_contract.onnx", 4), ("tiny_no_contract.onnx", None)):
        path = out / name
        if path.is_file():
            continue
        model = onnx.load(str(source))
        props = {p.key: p.value for p in model.metadata_props}
        del model.metadata_props[:]
        if version is not None:
            contract = json.loads(props[CONTRACT_METADATA_KEY])
            contract["format_version"] = version
            entry = model.metadata_props.add()
            entry.key, entry.value = CONTRACT_METADATA_KEY, json.dumps(contract)
        onnx.save(model, str(path))
        print(path)


if __name__ == "__main__":
    main(sys.argv[1])
