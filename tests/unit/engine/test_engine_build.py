"""build_engine with the real TensorRT-RTX on the CPU (ahead-of-time engines, no GPU needed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest

from gflv2_deploy.engine.manifest import manifest_contract

from gflv2_deploy.engine import build_engine, manifest_path, read_manifest
from gflv2_deploy.engine.trt_api import RuntimeInfo
from gflv2_deploy.errors import UserError

SHAPES = {"images": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))}


def _build(onnx_path: Path, out: Path, **kwargs):
    kwargs.setdefault("runtime", "tensorrt-rtx")
    kwargs.setdefault("shapes", SHAPES)
    return build_engine(onnx_path, out, **kwargs)


def _assert_nothing_written(folder: Path) -> None:
    """A failed build leaves no engine, no manifest and no temporary file behind."""
    assert not folder.exists() or list(folder.iterdir()) == []


def test_fp32_build_writes_plan_and_manifest(tmp_path: Path, toy_fp32: Path, rtx: RuntimeInfo) -> None:
    out = tmp_path / "engines" / "toy.plan"
    manifest = _build(toy_fp32, out, precision="fp32", workspace_mib=64, recipe={"calibration": None})

    assert out.is_file() and out.stat().st_size > 0
    assert manifest_path(out) == tmp_path / "engines" / "toy.plan.json"
    assert json.loads(manifest_path(out).read_text()) == manifest
    assert read_manifest(out) == manifest

    assert manifest["runtime"] == {"flavour": "tensorrt-rtx", "version": rtx.version, "major": rtx.major}
    assert manifest["precision"] == "fp32"
    assert manifest["recipe"] == {"calibration": None}
    assert manifest["target"]["kind"] == "aot" and manifest["target"]["default"] is True
    assert "8.6" in manifest["target"]["compute_capabilities"]
    assert "7.5" not in manifest["target"]["compute_capabilities"]  # Turing only on request
    assert manifest["engine"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["onnx"]["sha256"] == hashlib.sha256(toy_fp32.read_bytes()).hexdigest()
    assert manifest["onnx"]["detected_precision"] == "fp32"
    assert manifest["build"]["workspace_mib"] == 64
    assert manifest["inputs"] == [
        {
            "name": "images",
            "dtype": "float32",
            "shape": [-1, 3, 32, 32],
            "profile": {"min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [4, 3, 32, 32]},
        }
    ]
    assert manifest["outputs"] == [{"name": "feat", "dtype": "float32", "shape": [-1, 8, 32, 32]}]
    assert manifest["contract"] is None


def test_fp16_onnx_builds_as_fp16(tmp_path: Path, toy_fp16: Path) -> None:
    manifest = _build(toy_fp16, tmp_path / "toy16.plan", precision="fp16")
    assert (tmp_path / "toy16.plan").stat().st_size > 0
    assert manifest["precision"] == "fp16"
    assert manifest["onnx"]["detected_precision"] == "fp16"
    assert manifest["inputs"][0]["dtype"] == "float16"
    assert manifest["outputs"][0]["dtype"] == "float16"


def test_qdq_onnx_builds_as_int8(tmp_path: Path, toy_qdq: Path) -> None:
    manifest = _build(toy_qdq, tmp_path / "toy8.plan", precision="int8", recipe={"method": "max"})
    assert manifest["precision"] == "int8" and manifest["onnx"]["detected_precision"] == "int8"
    assert manifest["recipe"] == {"method": "max"}


def test_static_input_needs_no_shapes(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    static = make_onnx("conv_relu", "static.onnx", batch=1)
    manifest = build_engine(static, tmp_path / "static.plan", runtime="tensorrt-rtx")
    assert manifest["inputs"][0]["shape"] == [1, 3, 32, 32] and "profile" not in manifest["inputs"][0]


def test_external_weights_are_found_and_hashed(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    model = make_onnx("conv_relu", "ext.onnx", external=True)
    manifest = _build(model, tmp_path / "ext.plan")
    data = model.parent / "ext.onnx.data"
    assert manifest["onnx"]["external_data"] == {"ext.onnx.data": hashlib.sha256(data.read_bytes()).hexdigest()}


def test_contract_goes_into_manifest(tmp_path: Path, make_onnx: Callable[..., Path], contract_schema, sample_contract) -> None:
    contract = sample_contract(score_thr=0.1)
    model = make_onnx("conv_relu", "with_contract.onnx", spec=contract.to_dict())
    manifest = _build(model, tmp_path / "contract.plan")
    contract_schema(manifest["contract"])
    assert manifest_contract(manifest) == contract  # the fixed 32 x 32 input was already in the contract


def test_rtx_targets_are_recorded(tmp_path: Path, toy_fp32: Path) -> None:
    manifest = _build(toy_fp32, tmp_path / "turing.plan", rtx_targets=["7.5", "8.6"])
    assert manifest["target"] == {"kind": "aot", "compute_capabilities": ["7.5", "8.6"], "default": False}


def test_hopper_is_not_an_rtx_target(tmp_path: Path, toy_fp32: Path) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(UserError, match="9.0"):
        _build(toy_fp32, out_dir / "h100.plan", rtx_targets=["9.0"])
    _assert_nothing_written(out_dir)


def test_timing_cache_is_ignored_on_rtx(tmp_path: Path, toy_fp32: Path) -> None:
    cache = tmp_path / "timing.cache"
    manifest = _build(toy_fp32, tmp_path / "tc.plan", timing_cache=cache)
    assert not cache.exists() and manifest["build"]["timing_cache"] is None
    assert manifest["build"]["timing_cache_status"] == "unsupported"


# --- user mistakes: one clear UserError, nothing written --------------------------------------------


def test_broken_onnx_names_the_node(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    broken = make_onnx("broken", "broken.onnx")
    out_dir = tmp_path / "out"
    with pytest.raises(UserError, match=r"cannot parse broken\.onnx: node 'bad_conv' \(Conv\)"):
        _build(broken, out_dir / "broken.plan")
    _assert_nothing_written(out_dir)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a protobuf" * 10)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        _build(junk, tmp_path / "out" / "junk.plan")
    _assert_nothing_written(tmp_path / "out")


def test_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="ONNX file not found"):
        _build(tmp_path / "absent.onnx", tmp_path / "out" / "absent.plan")


def test_int8_without_qdq_says_to_quantize(tmp_path: Path, toy_fp32: Path) -> None:
    with pytest.raises(UserError, match="gflv2-deploy quantize"):
        _build(toy_fp32, tmp_path / "out" / "toy8.plan", precision="int8")
    _assert_nothing_written(tmp_path / "out")


def test_fp16_on_fp32_onnx_says_to_pass_fp16_onnx(tmp_path: Path, toy_fp32: Path) -> None:
    with pytest.raises(UserError, match="strongly typed.*pass the fp16 ONNX"):
        _build(toy_fp32, tmp_path / "out" / "toy16.plan", precision="fp16")
    _assert_nothing_written(tmp_path / "out")


def test_fp32_on_fp16_onnx_is_refused(tmp_path: Path, toy_fp16: Path) -> None:
    with pytest.raises(UserError, match="contains fp16 tensors"):
        _build(toy_fp16, tmp_path / "out" / "toy.plan", precision="fp32")


def test_qdq_onnx_only_builds_as_int8(tmp_path: Path, toy_qdq: Path) -> None:
    with pytest.raises(UserError, match="quantized .* --precision int8"):
        _build(toy_qdq, tmp_path / "out" / "toy.plan", precision="fp32")


def test_dynamic_input_without_shapes(tmp_path: Path, toy_fp32: Path) -> None:
    with pytest.raises(UserError, match="input 'images' has dynamic shape \\?x3x32x32"):
        build_engine(toy_fp32, tmp_path / "out" / "toy.plan", runtime="tensorrt-rtx")
    _assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"image": SHAPES["images"]}, "unknown input"),
        ({"images": ((4, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32))}, "min <= opt <= max"),
        ({"images": ((1, 3, 32, 32), (2, 3, 64, 64), (4, 3, 64, 64))}, "contradicts its fixed shape"),
        ({"images": ((1, 3, 32), (2, 3, 32), (4, 3, 32))}, "rank 3"),
    ],
)
def test_bad_shapes(tmp_path: Path, toy_fp32: Path, shapes: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_engine(toy_fp32, tmp_path / "out" / "toy.plan", runtime="tensorrt-rtx", shapes=shapes)
    _assert_nothing_written(tmp_path / "out")


def test_bad_arguments(tmp_path: Path, toy_fp32: Path) -> None:
    with pytest.raises(UserError, match="unknown precision"):
        _build(toy_fp32, tmp_path / "a.plan", precision="fp8")
    with pytest.raises(UserError, match="unknown TensorRT runtime"):
        _build(toy_fp32, tmp_path / "a.plan", runtime="onnxruntime")
    with pytest.raises(UserError, match="positive number of MiB"):
        _build(toy_fp32, tmp_path / "a.plan", workspace_mib=0)
    with pytest.raises(UserError, match="over an ONNX path"):
        _build(toy_fp32, toy_fp32)


def test_failed_build_keeps_previous_engine(tmp_path: Path, toy_fp32: Path) -> None:
    out = tmp_path / "toy.plan"
    first = _build(toy_fp32, out)
    before = out.read_bytes(), manifest_path(out).read_text()
    with pytest.raises(UserError):
        _build(toy_fp32, out, precision="int8")
    assert (out.read_bytes(), manifest_path(out).read_text()) == before
    assert read_manifest(out) == first


# --- NMS in the engine on TensorRT-RTX (findings recorded in plugins/README.md) --------------------


def test_efficient_nms_plugin_is_refused_clearly_on_rtx(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    """TensorRT-RTX 1.7 ships no EfficientNMS_TRT plugin: the parser would fail with "Plugin not
    found"; the builder names the plugin and the way out instead."""
    model = make_onnx("efficient_nms", "e2e.onnx")
    shapes = {"boxes": ((1, 100, 4),) * 3, "scores": ((1, 100, 3),) * 3}
    with pytest.raises(UserError, match=r"needs plugin EfficientNMS_TRT .*node 'nms'.*pre-NMS ONNX"):
        build_engine(model, tmp_path / "out" / "e2e.plan", runtime="tensorrt-rtx", shapes=shapes)
    _assert_nothing_written(tmp_path / "out")


def test_plugin_nodes_need_plugins_enabled(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    model = make_onnx("efficient_nms", "e2e.onnx")
    with pytest.raises(UserError, match="plugins were disabled"):
        build_engine(model, tmp_path / "e2e.plan", runtime="tensorrt-rtx", plugins=False)


def test_onnx_nms_parses_but_does_not_build_on_rtx(tmp_path: Path, make_onnx: Callable[..., Path]) -> None:
    """TensorRT-RTX 1.7 imports ONNX NonMaxSuppression (INMSLayer) but has no runner for it."""
    model = make_onnx("onnx_nms", "onnx_nms.onnx")
    shapes = {"boxes": ((1, 100, 4),) * 3, "scores": ((1, 3, 100),) * 3}
    with pytest.raises(UserError, match=r"could not build.*no runners.*NonMaxSuppression node"):
        build_engine(model, tmp_path / "out" / "nms.plan", runtime="tensorrt-rtx", shapes=shapes)
    _assert_nothing_written(tmp_path / "out")


def _trt10() -> RuntimeInfo:
    """TensorRT 10.16's version facts (the module cannot be installed here; check_precision needs none)."""
    return RuntimeInfo(flavour="tensorrt", module=None, version="10.16.0", major=10,  # type: ignore[arg-type]
                       strongly_typed_only=False, has_precision_flags=True)


def test_weakly_typed_fp16_of_efficient_nms_is_refused_on_tensorrt10(make_onnx: Callable[..., Path],
                                                                       toy_fp32: Path) -> None:
    """BuilderFlag.FP16 lets TensorRT 10 run EfficientNMS_TRT in fp16 (TensorRT #1758, #2903)."""
    from gflv2_deploy.engine.build import check_precision
    from gflv2_deploy.engine.onnx_info import inspect_onnx

    e2e = inspect_onnx(make_onnx("efficient_nms", "e2e.onnx"))
    with pytest.raises(UserError, match=r"weakly typed fp16 build .*EfficientNMS_TRT.*quantize --fp16 --nms trt"):
        check_precision(e2e, "fp16", _trt10())
    check_precision(e2e, "fp32", _trt10())  # fp32 stays allowed
    check_precision(inspect_onnx(toy_fp32), "fp16", _trt10())  # no plugin: the weak fp16 build stays allowed
