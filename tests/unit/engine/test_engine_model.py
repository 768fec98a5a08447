"""Real TensorRT-RTX engines (CPU, ahead of time) from gflv2_tiny's fp32, FP16 and INT8 (S8S8) pre-NMS ONNX,
their manifests, and the precision policy of ``gflv2-deploy build`` (engine.policy.build_from_onnx)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import onnx
import pytest
import torch
import typer
from typer.testing import CliRunner

from gflv2_deploy import build_model
from gflv2_deploy.cli import engine as cli_engine
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.engine import build_engine, read_manifest
from gflv2_deploy.engine.policy import build_from_onnx
from gflv2_deploy.engine.profiles import parse_shapes
from gflv2_deploy.engine.trt_api import RuntimeInfo
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.fp16 import convert_fp16
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.engine.manifest import manifest_contract
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.export.quantize import quantize_int8

HW = (128, 160)
SHAPES = {"images": ((1, 3, *HW), (1, 3, *HW), (2, 3, *HW)), "img_shape": ((1, 2), (1, 2), (2, 2))}
TARGETS = ["8.6"]  # one compute capability keeps each build at ~1-2 s


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32 / fp16 / int8 (tensorrt, S8S8) / int8 (onnxruntime, U8S8) pre-NMS ONNX of a 6-class gflv2_tiny."""
    folder = tmp_path_factory.mktemp("model_onnx")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("gflv2_tiny", num_classes=6).eval()
    cfg = model.config
    small = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, scale=(160, 128)))
    calib = folder / "synth"
    generate_synthetic_coco(calib, 6, seed=1, image_size=(96, 128))
    files = {"fp32": folder / "tiny.prenms.onnx", "fp16": folder / "tiny.fp16.onnx",
             "int8": folder / "tiny.int8.onnx", "int8_ort": folder / "tiny.int8-ort.onnx", "calib": calib / "train"}
    export_onnx(model, files["fp32"], config=small, dynamic_batch=True, input_hw=HW)
    convert_fp16(files["fp32"], files["fp16"])
    quantize_int8(files["fp32"], files["int8"], calib_data=files["calib"], calib_images=4, target="tensorrt")
    quantize_int8(files["fp32"], files["int8_ort"], calib_data=files["calib"], calib_images=4, target="onnxruntime")
    return files


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_from_model_onnx(tmp_path: Path, onnx_files: dict[str, Path], rtx: RuntimeInfo, precision: str,
                                contract_schema) -> None:
    source = onnx_files[precision]
    contract = read_onnx_contract(source)
    out = tmp_path / f"tiny.{precision}.engine"
    manifest = build_engine(source, out, precision=precision, runtime="tensorrt-rtx", shapes=SHAPES,
                            recipe=contract.precision.recipe, rtx_targets=TARGETS)
    assert out.stat().st_size > 0 and read_manifest(out) == manifest
    assert manifest["precision"] == precision and manifest["onnx"]["detected_precision"] == precision
    assert manifest["onnx"]["sha256"] == _sha(source)
    assert manifest["runtime"]["flavour"] == "tensorrt-rtx" and manifest["target"]["compute_capabilities"] == TARGETS
    assert [(t["name"], t["dtype"]) for t in manifest["inputs"]] == [("images", "float32"), ("img_shape", "float32")]
    assert [(t["name"], t["dtype"]) for t in manifest["outputs"]] == [("boxes", "float32"), ("scores", "float32")]
    assert manifest["inputs"][0]["profile"]["max"] == [2, 3, *HW]
    assert manifest_contract(manifest) == contract  # the ONNX's contract (its input size was already fixed)
    contract_schema(manifest["contract"])
    assert manifest["build"]["strongly_typed"] and manifest["build"]["builder_flags"] == []  # RTX: types from the ONNX
    if precision == "fp32":
        assert contract.precision.compute == "fp32" and contract.precision.recipe is None
        return
    recipe = manifest["recipe"]
    assert recipe == contract.precision.recipe and recipe["mode"] == precision
    kept_float = set(recipe.get("excluded_nodes", recipe.get("fp32_nodes", [])))
    softmax = {n.name for n in onnx.load(str(onnx_files["fp32"])).graph.node if n.op_type in ("Softmax", "TopK")}
    assert len(softmax) == 20 and softmax <= kept_float  # DFL, DGQP and nms_pre TopK of every level stayed float
    if precision == "int8":
        assert recipe["target"] == "tensorrt" and recipe["activations"].startswith("int8 symmetric")
        assert recipe["calib_sha256"] and recipe["calib_images"] == 4


def test_build_converts_fp32_to_fp16(tmp_path: Path, onnx_files: dict[str, Path], rtx: RuntimeInfo) -> None:
    out = tmp_path / "auto.engine"
    manifest = build_from_onnx(onnx_files["fp32"], out, precision="fp16", runtime="tensorrt-rtx", shapes={},
                                          rtx_targets=TARGETS)
    converted = tmp_path / "auto.fp16.onnx"
    assert converted.is_file() and manifest["onnx"]["sha256"] == _sha(converted)
    assert manifest["precision"] == "fp16" and manifest["recipe"]["auto_converted_by"] == "gflv2-deploy build"
    assert manifest["recipe"]["source_onnx_sha256"] == _sha(onnx_files["fp32"])
    # default profile for a fixed input size: batch 1 / 1 / 8, img_shape following it
    assert manifest["inputs"][0]["profile"] == {"min": [1, 3, *HW], "opt": [1, 3, *HW], "max": [8, 3, *HW]}
    assert manifest["inputs"][1]["profile"] == {"min": [1, 2], "opt": [1, 2], "max": [8, 2]}


def test_int8_policy(tmp_path: Path, onnx_files: dict[str, Path], rtx: RuntimeInfo) -> None:
    with pytest.raises(UserError, match=r"gflv2-deploy quantize .* --int8 --target tensorrt --calib-data DIR"):
        build_from_onnx(onnx_files["fp32"], tmp_path / "a.engine", precision="int8", runtime="tensorrt-rtx",
                                   shapes={})
    with pytest.raises(UserError, match="quantised for onnxruntime"):
        build_from_onnx(onnx_files["int8_ort"], tmp_path / "b.engine", precision=None, runtime="tensorrt-rtx",
                                   shapes={})
    assert not list(tmp_path.iterdir())
    manifest = build_from_onnx(onnx_files["fp32"], tmp_path / "c.engine", precision="int8",
                                          runtime="tensorrt-rtx", shapes={}, rtx_targets=TARGETS,
                                          calib_data=onnx_files["calib"], calib_images=3)
    assert manifest["precision"] == "int8" and manifest["recipe"]["calib_images"] == 3
    assert (tmp_path / "c.int8.onnx").is_file()


def test_build_cli(tmp_path: Path, onnx_files: dict[str, Path], rtx: RuntimeInfo) -> None:
    app = typer.Typer()
    cli_engine.register(app)
    out = tmp_path / "cli.engine"
    result = CliRunner().invoke(app, ["build", str(onnx_files["int8"]), "--int8", "--runtime", "tensorrt-rtx",
                                      "--shapes", "images:1x3x128x160/2x3x128x160/4x3x128x160", "--rtx-targets", "8.6,12.0",
                                      "--workspace", "256", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cli.engine.json").read_text())
    assert manifest["target"]["compute_capabilities"] == ["8.6", "12.0"] and manifest["build"]["workspace_mib"] == 256
    assert manifest["inputs"][1]["profile"]["max"] == [4, 2]
    assert manifest["recipe"]["target"] == "tensorrt"
    # `--precision fp16` (the form the manifest's rebuild hint prints) builds like --fp16
    result = CliRunner().invoke(app, ["build", str(onnx_files["fp16"]), "--precision", "fp16", "--runtime", "tensorrt-rtx",
                                      "--rtx-targets", "8.6", "--out", str(tmp_path / "p.engine")])
    assert result.exit_code == 0, result.output
    for args, message in [(["--fp16", "--int8"], "choose one precision"), (["--fp16", "--precision", "int8"], "contradicts"),
                          (["--precision", "bf16"], "--precision must be")]:
        bad = CliRunner().invoke(app, ["build", str(onnx_files["fp32"]), *args, "--out", str(tmp_path / "x.engine")])
        assert isinstance(bad.exception, UserError) and message in str(bad.exception), args
    assert not (tmp_path / "x.engine").exists()


def test_dynamic_size_needs_shapes(tmp_path: Path, rtx: RuntimeInfo) -> None:
    model = build_model("gflv2_tiny", num_classes=6).eval()
    dynamic = tmp_path / "dyn.onnx"
    export_onnx(model, dynamic, dynamic_batch=True, dynamic_hw=True, input_hw=HW)
    with pytest.raises(UserError, match=r"dynamic input size: give --shapes, e.g. images:1x3x256x384"):
        build_from_onnx(dynamic, tmp_path / "dyn.engine", precision=None, runtime="tensorrt-rtx", shapes={})


def test_parse_shapes() -> None:
    parsed = parse_shapes(["images:1x3x320x416/2x3x320x416/4x3x320x416", "img_shape:2x2"])
    assert parsed == {"images": ((1, 3, 320, 416), (2, 3, 320, 416), (4, 3, 320, 416)),
                      "img_shape": ((2, 2), (2, 2), (2, 2))}
    for bad in ("images", "images:1x3/2x3", "images:1xAx3", ":1x3"):
        with pytest.raises(UserError):
            parse_shapes([bad])
