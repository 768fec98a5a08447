"""INT8 sensitivity search: per-stage quantisation, one shared calibration, greedy float stages to a budget.

The search is real (real quantisations and onnxruntime runs); the "AP" is a proxy injected as the
evaluator, 1 - mean |scores - fp32 scores| on a few images, so that the test needs no trained model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.preprocess import preprocess
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.export.precision import STAGES
from gflv2_deploy.export.sensitivity import format_report, run_sensitivity

HW = (128, 160)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[Path, Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("sens")
    cfg = tiny_model.config
    small = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, scale=(160, 128)))
    onnx_path = folder / "tiny.prenms.onnx"
    export_onnx(tiny_model, onnx_path, config=small, dynamic_batch=True, input_hw=HW)
    generate_synthetic_coco(folder / "synth", 8, seed=5, image_size=(96, 128))
    images = [read_image(p) for p in sorted((folder / "synth" / "val").glob("*.jpg"))]
    batch, metas = preprocess(images, scale=(160, 128), pad_to=HW)
    feeds = {"images": batch, "img_shape": np.array([m.img_shape for m in metas], np.float32)}
    return onnx_path, folder / "synth" / "train", feeds


def _proxy_ap(feeds: dict[str, np.ndarray], reference: Path):
    def scores(path: Path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], feeds)[0]

    ref = scores(reference)
    calls: list[Path] = []

    def evaluate(path: Path) -> float:
        calls.append(Path(path))
        return 1.0 - float(np.abs(scores(path) - ref).mean()) * 20

    return evaluate, calls


def test_per_stage_and_greedy(tmp_path: Path, setup) -> None:
    onnx_path, calib, feeds = setup
    evaluate, calls = _proxy_ap(feeds, onnx_path)
    lines: list[str] = []
    report = run_sensitivity(onnx_path, calib_data=calib, evaluate=evaluate, work_dir=tmp_path / "work", ap_budget=0.0,
                             target="onnxruntime", calib_images=4, log=lines.append)
    assert report["baseline_ap"] == pytest.approx(1.0)
    assert [row["stage"] for row in report["stages"]] == list(STAGES)
    assert all(0.0 <= row["drop"] <= report["full"]["drop"] + 0.05 for row in report["stages"])
    # one calibration shared by every variant, and each variant records what was quantised
    assert (tmp_path / "work" / "calib_ranges.json").is_file()
    shas = {read_onnx_contract(row["onnx"]).precision.recipe["calib_sha256"] for row in report["stages"]}
    assert len(shas) == 1
    assert read_onnx_contract(report["stages"][0]["onnx"]).precision.recipe["only_patterns"] == ["stage:stem"]
    # greedy order follows the solo drops; with a zero budget it stops one stage short of everything
    ranked = [row["stage"] for row in sorted(report["stages"], key=lambda r: r["drop"], reverse=True)]
    kept = [s.split(":", 1)[1] for s in report["recommended_exclude"]]
    assert kept == ranked[: len(kept)] and 1 <= len(kept) <= len(STAGES) - 1
    assert report["greedy"][-1]["exclude"] == kept and report["met_budget"] is (report["recommended_ap"] >= 1.0)
    drops = [step["drop"] for step in report["greedy"]]
    assert drops[-1] <= report["full"]["drop"]
    assert json.loads((tmp_path / "work" / "sensitivity.json").read_text()) == report
    assert len(calls) == 2 + len(STAGES) + len(report["greedy"])
    assert any("only stem" in line for line in lines) and "recommended" in format_report(report)[-1]


def test_generous_budget_needs_no_float_stage(tmp_path: Path, setup) -> None:
    onnx_path, calib, feeds = setup
    evaluate, _ = _proxy_ap(feeds, onnx_path)
    report = run_sensitivity(onnx_path, calib_data=calib, evaluate=evaluate, work_dir=tmp_path, ap_budget=0.9,
                             calib_images=2, stages=["layer1", "head_cls_tower"], target="tensorrt")
    assert report["met_budget"] and report["recommended_exclude"] == [] and report["greedy"] == []
    assert [row["stage"] for row in report["stages"]] == ["layer1", "head_cls_tower"]
    with pytest.raises(UserError, match="0..1 units"):
        run_sensitivity(onnx_path, calib_data=calib, evaluate=evaluate, work_dir=tmp_path, ap_budget=1.5)
    with pytest.raises(UserError, match="unknown stage"):
        run_sensitivity(onnx_path, calib_data=calib, evaluate=evaluate, work_dir=tmp_path, stages=["layer7"])
