"""The sidecar manifest: reading it back, and refusing engines this runtime or GPU cannot load."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from gflv2_deploy.engine import DeviceInfo, build_engine, check_manifest, manifest_path, read_manifest
from gflv2_deploy.engine.trt_api import RuntimeInfo
from gflv2_deploy.errors import UserError

SHAPES = {"images": ((1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 32, 32))}


@pytest.fixture
def built(tmp_path: Path, toy_fp32: Path) -> tuple[Path, dict]:
    out = tmp_path / "toy.plan"
    return out, build_engine(toy_fp32, out, runtime="tensorrt-rtx", shapes=SHAPES)


def test_manifest_path_appends_json() -> None:
    assert manifest_path("out/model.plan") == Path("out/model.plan.json")
    assert manifest_path(Path("m.engine")) == Path("m.engine.json")


def test_matching_runtime_and_gpu_pass(built: tuple[Path, dict], rtx: RuntimeInfo) -> None:
    out, manifest = built
    check_manifest(read_manifest(out), rtx, None)
    check_manifest(manifest, rtx, DeviceInfo("NVIDIA GeForce RTX 3090", "8.6"))
    check_manifest(manifest, rtx, DeviceInfo("NVIDIA GeForce RTX 5090", "12.0"))


def test_other_runtime_version_is_refused(built: tuple[Path, dict], rtx: RuntimeInfo) -> None:
    _, manifest = built
    other = copy.deepcopy(manifest)
    other["runtime"]["version"] = "1.6.0.10"
    with pytest.raises(UserError, match=rf"built with TensorRT-RTX 1\.6\.0\.10, but this runtime is TensorRT-RTX {rtx.version}"
                       r".*rebuild the engine on this machine from .*toy_fp32\.onnx"):
        check_manifest(other, rtx, None)


def test_other_flavour_is_refused(built: tuple[Path, dict], rtx: RuntimeInfo) -> None:
    _, manifest = built
    other = copy.deepcopy(manifest)
    other["runtime"] = {"flavour": "tensorrt", "version": "11.1.0.6", "major": 11}
    with pytest.raises(UserError, match=r"built with TensorRT 11\.1\.0\.6.*--runtime tensorrt-rtx"):
        check_manifest(other, rtx, None)


def test_gpu_outside_rtx_targets_is_refused(built: tuple[Path, dict], rtx: RuntimeInfo) -> None:
    _, manifest = built
    with pytest.raises(UserError, match=r"this GPU is NVIDIA H100 \(9\.0\)"):
        check_manifest(manifest, rtx, DeviceInfo("NVIDIA H100", "9.0"))
    with pytest.raises(UserError, match=r"RTX 2080 Ti \(7\.5\)"):  # Turing needs an explicit 7.5 target
        check_manifest(manifest, rtx, DeviceInfo("NVIDIA GeForce RTX 2080 Ti", "7.5"))


def test_gpu_target_compute_capability_must_match(built: tuple[Path, dict], rtx: RuntimeInfo) -> None:
    _, manifest = built
    gpu_built = copy.deepcopy(manifest)
    gpu_built["target"] = {"kind": "gpu", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}
    check_manifest(gpu_built, rtx, DeviceInfo("NVIDIA A100 80GB", "8.0"))
    with pytest.raises(UserError, match=r"built for NVIDIA A100 \(compute capability 8\.0\), but this GPU is NVIDIA L4 \(8\.9\)"):
        check_manifest(gpu_built, rtx, DeviceInfo("NVIDIA L4", "8.9"))


def test_missing_manifest(tmp_path: Path) -> None:
    engine = tmp_path / "lonely.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(UserError, match="no manifest beside"):
        read_manifest(engine)


def test_replaced_engine_is_refused(built: tuple[Path, dict]) -> None:
    out, _ = built
    out.write_bytes(out.read_bytes() + b"\0")
    with pytest.raises(UserError, match="does not match its manifest"):
        read_manifest(out)
    read_manifest(out, verify_engine=False)  # the manifest itself is still readable


def test_foreign_or_newer_manifest(built: tuple[Path, dict]) -> None:
    out, manifest = built
    path = manifest_path(out)
    path.write_text(json.dumps({"names": ["images"]}))
    with pytest.raises(UserError, match="not a gflv2-deploy engine manifest"):
        read_manifest(out)
    path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(UserError, match="manifest format 99"):
        read_manifest(out)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a readable manifest"):
        read_manifest(out)


def test_recipe_must_be_json(tmp_path: Path, toy_fp32: Path) -> None:
    with pytest.raises(UserError, match="JSON-serialisable"):
        build_engine(toy_fp32, tmp_path / "out" / "r.plan", runtime="tensorrt-rtx", shapes=SHAPES,
                     recipe={"calib": object()})
    assert not (tmp_path / "out" / "r.plan").exists()


def test_manifest_records_the_cuda_runtime(built: tuple[Path, dict]) -> None:
    """The C++ runtime checks the engine's CUDA major and the driver against this record (cpp/src/manifest.cpp)."""
    from gflv2_deploy.engine.trt_api import cuda_runtime_version

    out, manifest = built
    version = cuda_runtime_version()  # None without cuda-python (part of the tensorrt extra): recorded as null
    assert version is None or re.fullmatch(r"\d+\.\d+", version)
    expected = {"runtime_version": version} if version else None
    assert manifest["cuda"] == expected
    assert read_manifest(out)["cuda"] == expected
