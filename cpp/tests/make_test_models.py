"""Write the ONNX models the C++ tests run: the detecting tiny model (tests/conftest.py), exported three ways.

    python cpp/tests/make_test_models.py OUT_DIR

OUT_DIR/tiny_prenms.onnx  pre-NMS outputs, dynamic batch and size (host NMS in C++)
OUT_DIR/tiny_e2e.onnx     end-to-end (ONNX NonMaxSuppression), dynamic batch and size
OUT_DIR/tiny_static.onnx  pre-NMS, fixed 256 x 384 input (the letterbox rule)
OUT_DIR/tiny_plugin.onnx  end-to-end with our GFLV2NMS_TRT node (needs libgflv2_nms_ort.so in ONNX Runtime)
OUT_DIR/tiny_trt10.plan + .json   a stand-in engine file with the manifest the Python writer
                                  (gflv2_deploy.engine.manifest.make_manifest) writes for a TensorRT 10.16 build with
                                  one plugin library (OUT_DIR/fake_plugin.so, a few bytes) and the CUDA runtime 13.0
OUT_DIR/tiny_trt10_std.plan + .json  the same built with TensorRT's standard plugins initialised, no plugin library
OUT_DIR/tiny_u8.onnx      tiny_prenms.onnx exported with --input uint8 (uint8 N x H x W x 3 BGR pictures)
OUT_DIR/tiny_newer_contract.onnx, tiny_no_contract.onnx  the pre-NMS graph with contract version 4 / without metadata

Each ONNX carries the graph contract the exporter writes (``gflv2_deploy.contract``). Idempotent: existing
ONNX files are kept; the manifests are rewritten (they name absolute paths).
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
                         ("tiny_plugin.onnx", dict(nms="plugin", dynamic_hw=True)),
                         ("tiny_u8.onnx", dict(nms="none", dynamic_hw=True, input_dtype="uint8"))):
        path = out / name
        if not path.is_file():
            model = model or _detecting_tiny()
            tmp = path.with_suffix(".tmp.onnx")
            export_onnx(model, tmp, **kwargs)
            tmp.rename(path)
        print(path)
    _write_variants(out / "tiny_prenms.onnx", out)
    _write_engine_manifests(out / "tiny_prenms.onnx", out)


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


def _write_engine_manifests(onnx_path: Path, out: Path) -> None:
    """Manifests as ``gflv2-deploy build`` writes them (make_manifest), beside stand-in plan files: TensorRT cannot
    be installed here, so the C++ tests check everything up to loading libnvinfer against these."""
    import hashlib

    from gflv2_deploy.atomic import write_bytes_atomic, write_json_atomic
    from gflv2_deploy.engine.manifest import engine_contract, make_manifest, manifest_path, plugin_library_record
    from gflv2_deploy.engine.onnx_info import inspect_onnx
    from gflv2_deploy.engine.trt_api import RuntimeInfo

    summary = inspect_onnx(onnx_path)
    runtime = RuntimeInfo(flavour="tensorrt", module=None, version="10.16.0", major=10,  # type: ignore[arg-type]
                          strongly_typed_only=False, has_precision_flags=True)
    profile = {"min": [1, 3, 256, 256], "opt": [1, 3, 800, 1344], "max": [4, 3, 1344, 1344]}
    inputs = [{"name": "images", "dtype": "float32", "shape": [-1, 3, -1, -1], "profile": profile},
              {"name": "img_shape", "dtype": "float32", "shape": [-1, 2]}]
    outputs = [{"name": "boxes", "dtype": "float32", "shape": [-1, -1, 4]},
               {"name": "scores", "dtype": "float32", "shape": [-1, -1, 6]}]
    plugin = out / "fake_plugin.so"
    write_bytes_atomic(plugin, b"a stand-in plugin library: only its size and SHA-256 matter here\n")
    for name, standard, libraries in (("tiny_trt10.plan", False, [plugin_library_record(plugin)]),
                                      ("tiny_trt10_std.plan", True, [])):
        plan = out / name
        data = b"a stand-in TensorRT plan"
        write_bytes_atomic(plan, data)
        manifest = make_manifest(
            engine_path=plan, engine_sha256=hashlib.sha256(data).hexdigest(), engine_bytes=len(data), runtime=runtime,
            target={"kind": "gpu", "gpu_name": "NVIDIA H200", "compute_capability": "9.0"}, precision="fp32",
            recipe=None, onnx=summary, inputs=inputs, outputs=outputs,
            contract=None if summary.contract is None else engine_contract(summary.contract, inputs),
            build={"workspace_mib": None, "plugins_initialised": standard, "seconds": 0.0},
            plugin_libraries=libraries, cuda_runtime="13.0")
        write_json_atomic(manifest_path(plan), manifest)
        print(plan)


if __name__ == "__main__":
    main(sys.argv[1])
