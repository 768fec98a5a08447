"""`gflv2-deploy quantize` end to end on synthetic COCO data: INT8 and FP16 ONNX files that the onnxruntime
detector and the COCO evaluation read through their metadata, and the INT8 sensitivity search with real AP."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from gflv2_deploy.cli import engine as cli_engine
from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.nms import box_iou
from gflv2_deploy.runtime.evaluate import evaluate_on_coco
from gflv2_deploy.runtime.ort_runner import load_onnx_detector

HW = (128, 160)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, detecting_tiny) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precision_cli")
    generate_synthetic_coco(root / "synth", 10, seed=7, image_size=(96, 128), val_fraction=0.3)
    model = detecting_tiny(1)
    cfg = model.config
    small = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, scale=(160, 128)))
    prenms = root / "tiny.prenms.onnx"
    export_onnx(model, prenms, config=small, dynamic_batch=True, dynamic_hw=True, input_hw=HW)
    return {"root": root, "data": root / "synth", "calib": root / "synth" / "train", "prenms": prenms}


def _cli(*args: str) -> object:
    app = typer.Typer()
    cli_engine.register(app)
    return CliRunner().invoke(app, list(args))


def _detect(path: Path, data: Path) -> list:
    ann, images = find_coco_files(data, "val")
    dataset = CocoDataset(ann, images)
    with load_onnx_detector(path, providers=["CPUExecutionProvider"], threads=1) as detector:
        return [detector.detect([read_image(dataset.image_path(i))])[0] for i in dataset.image_ids]


def test_quantize_and_fp16_files_evaluate_like_fp32(workspace: dict[str, Path]) -> None:
    outs = {}
    for name, args in {
        "int8": ["--int8", "--target", "onnxruntime", "--calib-data", str(workspace["calib"]), "--calib-images", "5",
                 "--method", "percentile"],
        "fp16": ["--fp16"],
    }.items():
        outs[name] = workspace["root"] / f"tiny.{name}.onnx"
        result = _cli("quantize", str(workspace["prenms"]), *args, "--out", str(outs[name]))
        assert result.exit_code == 0, result.output
        assert f"wrote {outs[name]}" in result.output.replace("\n", "")
        assert "int8 int8" not in result.output  # the activations field says int8 itself
    assert read_onnx_contract(outs["int8"]).precision.recipe["method"] == "percentile"
    reference = _detect(workspace["prenms"], workspace["data"])
    assert sum(len(d.scores) for d in reference) > 0
    for name, path in outs.items():
        metrics, detections = evaluate_on_coco(load_onnx_detector(path, providers=["CPUExecutionProvider"]),
                                               workspace["data"], "val", progress=False)
        assert len(metrics["stats"]) == 12 and metrics["num_images"] == len(detections) == 3
        got = _detect(path, workspace["data"])
        # detections of the converted graph match fp32 ones after IoU matching (never by position)
        matched = total = 0
        for ref, det in zip(reference, got):
            total += len(ref.scores)
            if len(ref.scores) and len(det.scores):
                iou = box_iou(torch.from_numpy(ref.boxes), torch.from_numpy(det.boxes)).numpy()
                same = (iou > 0.7) & (ref.labels[:, None] == det.labels[None, :])
                matched += int(same.any(axis=1).sum())
        assert matched >= (0.95 if name == "fp16" else 0.6) * total, (name, matched, total)


def test_sensitivity_cli_writes_report_and_recommended_onnx(workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "tiny.int8.sens.onnx"
    result = _cli("quantize", str(workspace["prenms"]), "--int8", "--calib-data", str(workspace["calib"]),
                  "--calib-images", "3", "--target", "onnxruntime", "--sensitivity", "--eval-data", str(workspace["data"]),
                  "--eval-split", "val", "--ap-budget", "0.01", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "only head_reg_tower" in result.output and "recommended:" in result.output
    report_path = workspace["root"] / "tiny.int8.sens.onnx.sensitivity" / "sensitivity.json"
    assert report_path.is_file()
    import json

    report = json.loads(report_path.read_text())
    precision = read_onnx_contract(out).precision.recipe
    assert precision["excluded_patterns"] == report["recommended_exclude"]
    assert np.isfinite(report["baseline_ap"]) and len(report["stages"]) == 9


def test_cli_user_errors(workspace: dict[str, Path]) -> None:
    out = workspace["root"] / "never.onnx"
    for args, message in [
        ([], "choose --int8 or --fp16"),
        (["--int8"], "needs --calib-data"),
        (["--int8", "--fp16"], "choose one precision"),
        (["--fp16", "--sensitivity"], "apply to --int8 only"),
        (["--int8", "--calib-data", str(workspace["calib"]), "--sensitivity"], "needs --eval-data"),
        (["--int8", "--calib-data", str(workspace["calib"]), "--method", "kl"], "--method"),
        (["--int8", "--calib-data", str(workspace["calib"]), "--target", "gpu"], "--target"),
    ]:
        result = _cli("quantize", str(workspace["prenms"]), *args, "--out", str(out))
        assert isinstance(result.exception, UserError) and message in str(result.exception), (args, result.exception)
    assert not out.exists()
