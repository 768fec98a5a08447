"""Cross-backend parity as a user runs it: ``compare`` (CI gate), ``eval --backend``, backend selection.

The model is gflv2_tiny (6 classes) with head weights that give many detections. The checkpoint keeps the
reference ``nms_pre = 1000`` and the exported graphs select the top 1000 points per level themselves, so
``eval`` of the checkpoint (torch) and of its ONNX run the same algorithm and their AP must agree.
AP is measured against pseudo ground truth (the torch model's own confident detections on synthetic
pictures), so it is high and any disagreement of the backends shows in it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper


from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.checkpoint import save_checkpoint
from gflv2_deploy.runtime.factory import make_detector, parse_model_spec

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess, one intra-op thread (a shared 2-core machine: see README, bench)."""
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args), "--threads", "1"], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, detecting_tiny, write_pseudo_gt) -> dict[str, Path]:
    """checkpoint, its pre-NMS and end-to-end ONNX (dynamic size), a perturbed pre-NMS ONNX, and a COCO folder."""
    root = tmp_path_factory.mktemp("parity")
    model = detecting_tiny(0)
    cfg = model.config
    files = {"ckpt": root / "tiny.pth", "prenms": root / "tiny.prenms.onnx", "e2e": root / "tiny.e2e.onnx",
             "perturbed": root / "tiny.perturbed.onnx", "data": root / "data"}
    save_checkpoint(files["ckpt"], model, cfg)
    export_onnx(files["ckpt"], files["prenms"], nms="none", dynamic_hw=True, input_hw=(96, 128))
    export_onnx(files["ckpt"], files["e2e"], nms="onnx", dynamic_hw=True, input_hw=(96, 128))

    # the perturbed graph: the classification conv's bias + 0.02 (all scores move by ~0.01)
    graph = onnx.load(str(files["prenms"]))
    target = next(i for i in graph.graph.initializer if "gfl_cls.bias" in i.name)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) + np.float32(0.02), target.name))
    onnx.save(graph, str(files["perturbed"]))

    synth = root / "synth"
    generate_synthetic_coco(synth, 24, seed=3, image_size=(192, 256))  # 5 val pictures
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI calls below; restored for the other tests of the session
    try:
        write_pseudo_gt(files["ckpt"], synth, files["data"])
    finally:
        torch.set_num_threads(threads)
    return files


def test_identical_runners_have_zero_error_and_pass(work: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "same.json"
    proc = run_cli("compare", "--ref", f"torch:{work['ckpt']}", "--test", f"torch:{work['ckpt']}", "--images", work["data"] / "val",
                   "--batch-size", "2", "--report", report)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["passed"] and r["failures"] == [] and r["ap"] is None
    for t in r["tensors"].values():
        assert t["max_abs"] == t["mean_abs"] == t["p99_abs"] == 0.0 and t["passed"]
    d = r["detections"]
    assert d["num_ref"] == d["num_test"] == d["matched"] > 50 and d["matched_fraction"] == 1.0
    assert d["score_delta_max"] == 0.0 and d["unmatched_ref"] == d["unmatched_test"] == 0
    assert "parity: all budgets hold" in proc.stdout


def test_end_to_end_onnx_matches_torch_with_pre_nms_tensors_exposed(work: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "e2e.json"
    proc = run_cli("compare", "--ref", f"torch:{work['ckpt']}", "--test", f"onnxruntime:{work['e2e']}", "--data", work["data"],
                   "--batch-size", "3", "--report", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(report.read_text())
    assert r["passed"] and r["test"]["model"] == str(work["e2e"]) and "num_dets" in r["test"]["outputs"]
    assert r["tensors"]["scores"]["max_abs"] <= 1e-4 and r["tensors"]["boxes"]["max_abs"] <= 1e-3
    assert r["detections"]["matched_fraction"] >= 0.995 and r["detections"]["num_ref"] > 50
    assert r["ap"]["ref"]["AP"] > 0.5 and abs(r["ap"]["ap_drop"]) <= 0.001


def test_perturbed_onnx_fails_the_gate_with_exit_1_and_a_report(work: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "perturbed.json"
    proc = run_cli("compare", "--ref", f"torch:{work['ckpt']}", "--test", f"onnxruntime:{work['perturbed']}", "--data", work["data"],
                   "--report", report)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "budget exceeded: scores:" in proc.stderr and "Traceback" not in proc.stderr
    r = json.loads(report.read_text())
    assert not r["passed"] and r["failures"]
    assert not r["tensors"]["scores"]["passed"] and r["tensors"]["scores"]["max_abs"] > 1e-3
    # the box branch was not touched, but the graph keeps each level's top points by score, so moved
    # scores change which points are kept: box rows are not asserted here
    assert "boxes" in r["tensors"]
    assert r["detections"]["score_delta_max"] > 1e-4
    # the same file, compared to itself, passes: the failure is the perturbation, not the tool
    same = run_cli("compare", "--ref", f"onnxruntime:{work['perturbed']}", "--test", f"onnxruntime:{work['perturbed']}",
                   "--images", work["data"] / "val", "--limit", "2")
    assert same.returncode == 0, same.stderr


def test_eval_backend_onnxruntime_equals_torch_ap(work: dict[str, Path], tmp_path: Path) -> None:
    out_t, out_o = tmp_path / "torch.json", tmp_path / "ort.json"
    pt = run_cli("eval", str(work["ckpt"]), "--data", work["data"], "--out", out_t)  # the original form
    po = run_cli("eval", "--backend", "onnxruntime", "--model", work["e2e"], "--data", work["data"], "--split", "val",
                 "--out", out_o)  # batch 1 as above: a batch pads pictures to one size, which moves border outputs
    assert pt.returncode == 0 and po.returncode == 0, pt.stderr + po.stderr
    m_t, m_o = json.loads(out_t.read_text()), json.loads(out_o.read_text())
    assert m_o["backend"] == "onnxruntime" and m_t["backend"] == "torch"
    assert m_t["stats"][0] > 0.5  # pseudo ground truth: a meaningful AP
    assert abs(m_t["stats"][0] - m_o["stats"][0]) <= 0.001
    assert np.allclose(m_t["stats"], m_o["stats"], atol=0.001)


def test_backend_selection_errors(work: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="choose one of torch, onnxruntime"):
        make_detector("tensorrt-llm", work["ckpt"])
    with pytest.raises(UserError, match="use the onnxruntime backend"):
        make_detector("torch", work["e2e"])
    with pytest.raises(UserError, match="export it first"):
        make_detector("onnxruntime", work["ckpt"])
    with pytest.raises(UserError, match="BACKEND:PATH"):
        parse_model_spec("model.onnx")
    detector = make_detector("onnxruntime", work["e2e"], threads=1, expose_pre_nms=True)
    assert {"boxes", "scores", "num_dets"} <= set(detector.runner.output_names)
    assert detector.runner.path == work["e2e"]
    proc = run_cli("compare", "--ref", f"tf:{work['ckpt']}", "--test", f"torch:{work['ckpt']}", "--images", work["data"] / "val")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown backend 'tf'")
