"""``gflv2-deploy demo --quick``: the whole pipeline runs from nothing and writes every artifact it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]


def test_demo_quick_runs_end_to_end_and_reuses_its_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, str(REPO / "cli.py"), "demo", "--quick", "--out", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[7/7]" in proc.stdout and "onnxruntime" in proc.stdout and "NMS in graph" in proc.stdout
    assert f"report: {out / 'report.html'}" in proc.stdout  # the demo ends by naming its report

    for name in ("data/annotations/instances_val.json", "train/latest.pth", "model.prenms.onnx", "model.e2e.onnx",
                 "compare_prenms.json", "compare_e2e.json", "eval.json", "bench.json", "summary.json", "report.html"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert page.count('<section class="result"') == 4 and '<section id="summary">' in page
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["backend"] == "onnxruntime" and len(evaluation["per_class"]) == 6 and "confusion" in evaluation
    picture = cv2.imread(str(out / "detections.jpg"))
    assert picture is not None and picture.ndim == 3

    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and summary["passed"] and summary["failures"] == []
    variants = [(r["backend"], r["variant"]) for r in summary["rows"]]
    assert variants[0][0] == "torch" and ("onnxruntime", "NMS in graph") in variants
    ort = next(r for r in summary["rows"] if r["variant"] == "pre-NMS graph + host NMS")
    assert ort["scores_max_abs"] <= 1e-4 and ort["boxes_max_abs"] <= 1e-3 and ort["infer_p50_ms"] > 0
    e2e = json.loads((out / "compare_e2e.json").read_text())
    assert e2e["tensors"] is not None and e2e["ap"] is not None  # pre-NMS tensors exposed from the end-to-end graph
    bench = json.loads((out / "bench.json").read_text())
    assert [r["backend"] for r in bench["results"]] == ["torch", "onnxruntime"] and bench["settings"]["threads"] == 1

    # a second run reuses the data and the trained checkpoint
    ckpt_mtime = (out / "train" / "latest.pth").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (out / "train" / "latest.pth").stat().st_mtime_ns == ckpt_mtime
    assert json.loads((out / "summary.json").read_text())["seconds"]["train"] < 1.0
