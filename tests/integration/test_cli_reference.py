"""The reference CLI end to end, as a user runs it: predict, eval, bad input (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gflv2_deploy import build_model
from gflv2_deploy.model.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose scores clear the 0.05 threshold, so detections and NMS really run."""
    torch.manual_seed(0)
    model = build_model("gflv2_tiny")
    torch.nn.init.constant_(model.bbox_head.gfl_cls.bias, -2.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, model, model.config)
    return path


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_predict_writes_json_and_picture_for_grayscale_and_rgba(tiny_ckpt: Path, tiny50: Path, tmp_path: Path) -> None:
    src = cv2.imread(str(tiny50 / "val2017" / "000000006818.jpg"))
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.cvtColor(src, cv2.COLOR_BGR2GRAY))
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), cv2.cvtColor(src, cv2.COLOR_BGR2BGRA))
    out = tmp_path / "out"
    proc = run_cli("predict", str(tiny_ckpt), str(tiny50 / "val2017" / "000000006818.jpg"), str(gray), str(rgba), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{e}" for s in ("000000006818", "gray", "rgba") for e in ("json", "jpg"))
    record = json.loads((out / "rgba.json").read_text())
    assert (record["height"], record["width"]) == src.shape[:2]
    assert len(record["boxes"]) == len(record["scores"]) == len(record["labels"]) > 0
    boxes = np.asarray(record["boxes"])
    assert boxes[:, 2].max() <= src.shape[1] + 1e-3 and boxes[:, 3].max() <= src.shape[0] + 1e-3  # original-image pixels
    gray_record = json.loads((out / "gray.json").read_text())
    assert (gray_record["height"], gray_record["width"]) == src.shape[:2]


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing"])
def test_predict_bad_image_gives_one_error_line_and_no_output(kind: str, tiny_ckpt: Path, tiny50: Path, tmp_path: Path) -> None:
    bad = tmp_path / f"{kind}.jpg"
    if kind == "corrupt":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        bad.write_bytes(b"")
    out = tmp_path / "out"
    proc = run_cli("predict", str(tiny_ckpt), str(tiny50 / "val2017" / "000000006818.jpg"), str(bad), "--out", str(out))
    assert_one_error_line(proc, bad.name)
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_checkpoint_gives_one_error_line(tiny50: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    out = tmp_path / "out"
    proc = run_cli("predict", str(ckpt), str(tiny50 / "val2017" / "000000006818.jpg"), "--out", str(out))
    assert_one_error_line(proc, "broken.pth")
    assert not out.exists()


def test_eval_results_file_reproduces_official_numbers(test_data: Path, tmp_path: Path) -> None:
    fake = test_data / "cocoapi_fake_eval"
    out = tmp_path / "metrics.json"
    proc = run_cli("eval", "--gt", str(fake / "instances_val2014_100.json"),
                   "--results", str(fake / "instances_val2014_fakebbox100_results.json"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    expected = json.loads((fake / "expected_stats.json").read_text())["bbox"]["stats"]
    got = json.loads(out.read_text())["stats"]
    assert len(got) == 12
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-9


def test_eval_model_on_tiny50_real_images(tiny_ckpt: Path, tiny50: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    proc = run_cli("eval", str(tiny_ckpt), "--data", str(tiny50), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 50  # the two images without annotations are evaluated too
    assert len(metrics["stats"]) == 12 and all(-1 <= s <= 1 for s in metrics["stats"])
    assert metrics["num_detections"] > 0


def test_unknown_config_is_a_clear_error(tiny50: Path, tmp_path: Path) -> None:
    proc = run_cli("bench", "--config", "gflv2_r5O_fpn", "--shape", "64x64", "--iterations", "1")
    assert_one_error_line(proc, "gflv2_r50_fpn")


def test_configs_lists_every_configuration_with_its_parameter_count() -> None:
    from gflv2_deploy.config import available_configs

    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "configs"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for name in available_configs():
        row = next(line for line in proc.stdout.splitlines() if f" {name} " in line)
        count = sum(p.numel() for p in build_model(name).parameters()) if "101" not in name else None
        if count is not None:  # the 101-layer ones are counted against the architecture in tests/unit/model
            assert f"{count:,}" in row, row
    dcn = next(line for line in proc.stdout.splitlines() if " gflv2_r101_dcn_fpn " in line)
    assert "52,720,246" in dcn and "DCN c3-c5" in dcn and "19 (DeformConv)" in dcn
