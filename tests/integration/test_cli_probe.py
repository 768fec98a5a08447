"""Replays of the new-user probe's failures (the Python CLI): each through the real entry point, each one line or a
clean result, no traceback, no output over an input. One test per probe item, named after it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gflv2_deploy import build_model
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.checkpoint import save_checkpoint

from cli_run import assert_one_error_line, run_main  # tests/integration/cli_run.py

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """gflv2_tiny with COCO's 80 classes: 'ckpt' (random weights), 'blind' (no score above 0.05), 'onnx' (fixed
    128 x 128 pre-NMS export of 'ckpt'), 'truncated' (its first half)."""
    folder = tmp_path_factory.mktemp("probe_models")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("gflv2_tiny", num_classes=80)
    out = {"ckpt": folder / "tiny.pth", "blind": folder / "blind.pth", "onnx": folder / "tiny.onnx",
           "truncated": folder / "truncated.onnx"}
    save_checkpoint(out["ckpt"], model, model.config)
    export_onnx(model, out["onnx"], input_hw=(128, 128))
    data = out["onnx"].read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 2])
    torch.nn.init.constant_(model.bbox_head.gfl_cls.bias, -30.0)  # every score ~1e-13
    save_checkpoint(out["blind"], model, model.config)
    return out


@pytest.fixture()
def photo_dir(tiny50: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sorted((tiny50 / "val2017").glob("*.jpg"))[0], folder / "x.jpg")
    return folder


def small_coco(tiny50: Path, out: Path, count: int = 3) -> Path:
    """The first ``count`` tiny50 photos with their ground truth, as a COCO folder (split val2017)."""
    data = json.loads((tiny50 / "annotations" / "instances_val2017.json").read_text())
    images = sorted(data["images"], key=lambda i: i["id"])[:count]
    ids = {i["id"] for i in images}
    (out / "annotations").mkdir(parents=True)
    (out / "val2017").mkdir()
    for info in images:
        shutil.copy(tiny50 / "val2017" / info["file_name"], out / "val2017" / info["file_name"])
    data.update(images=images, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
    (out / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return out


# --- High 2: predict never writes over an input ----------------------------------------------------------------------
def test_predict_into_the_photos_own_folder_is_refused(models, photo_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    photo = photo_dir / "x.jpg"
    before = photo.read_bytes()
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", str(models["ckpt"]), str(photo), "--out", str(photo_dir)),
                          "would replace the input picture", "--out")
    link = tmp_path / "link"
    link.symlink_to(photo_dir)  # the same folder under another name
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", str(models["ckpt"]), str(photo), "--out", str(link)),
                          "would replace the input picture")
    assert photo.read_bytes() == before and sorted(p.name for p in photo_dir.iterdir()) == ["x.jpg"]
    code, out, err = run_main(monkeypatch, capsys, "predict", str(models["ckpt"]), str(photo), "--out", str(tmp_path / "pred"))
    assert code == 0 and sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["x.jpg", "x.json"], err
    record = json.loads((tmp_path / "pred" / "x.json").read_text())
    assert record["math"] == "fp32"  # the torch reference says how it computed


# --- High 4: compare --scale bounded, and refused where a fixed-size graph cannot honour it -----------------------------
def test_compare_scale_follows_the_input_size_rule(models, photo_dir: Path, monkeypatch, capsys) -> None:
    base = ["compare", "--ref", f"torch:{models['ckpt']}", "--test", f"onnxruntime:{models['onnx']}", "--images", str(photo_dir)]
    assert_one_error_line(run_main(monkeypatch, capsys, *base, "--scale", "100000x100000"), "--scale", "at most 8192")
    assert_one_error_line(run_main(monkeypatch, capsys, *base, "--scale", "1333x800"), "does not fit the fixed input 128x128")
    code, out, err = run_main(monkeypatch, capsys, *base, "--scale", "128x96", "--min-ref-dets", "0")
    assert code in (0, 1) and "Traceback" not in err and "error:" not in err, err  # a scale within the graph's size runs


# --- High 5: a truncated ONNX is one line in predict and eval -------------------------------------------------------------
def test_truncated_onnx_is_one_line(models, photo_dir: Path, tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    truncated = str(models["truncated"])
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", truncated, str(photo_dir / "x.jpg"), "--out", str(tmp_path / "o")),
                          "truncated.onnx is not a readable ONNX model")
    assert_one_error_line(run_main(monkeypatch, capsys, "eval", "--backend", "onnxruntime", "--model", truncated, "--data", str(tiny50)),
                          "truncated.onnx is not a readable ONNX model")
    assert not (tmp_path / "o").exists()


# --- bounds --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["export", "CKPT", "--max-dets", "5000", "--nms", "onnx", "--onnx", "OUT/m.onnx"], "1..3840"),
    (["compare", "--ref", "torch:CKPT", "--test", "torch:CKPT", "--images", "PHOTOS", "--iou", "2"], "--iou must be in (0, 1]"),
    (["compare", "--ref", "torch:CKPT", "--test", "torch:CKPT", "--images", "PHOTOS", "--iou", "nan"], "--iou must be in"),
    (["predict", "CKPT", "PHOTOS/x.jpg", "--out", "OUT", "--score-thr", "5"], "--score-thr must be in [0, 1]"),
    (["predict", "triton:127.0.0.1:99999/gflv2", "PHOTOS/x.jpg", "--out", "OUT"], "1..65535"),
], ids=["max-dets", "iou", "iou-nan", "score-thr", "triton-port"])
def test_option_bounds(args: list[str], fragment: str, models, photo_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    argv = [a.replace("CKPT", str(models["ckpt"])).replace("PHOTOS", str(photo_dir)).replace("OUT", str(out)) for a in args]
    assert_one_error_line(run_main(monkeypatch, capsys, *argv), fragment)
    assert not out.exists()


def test_results_with_foreign_category_ids_warn(tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    gt = tiny50 / "annotations" / "instances_val2017.json"
    image_id = json.loads(gt.read_text())["images"][0]["id"]
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([{"image_id": image_id, "category_id": 0, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    code, out, err = run_main(monkeypatch, capsys, "eval", "--gt", str(gt), "--results", str(results))
    assert code == 0 and "warning:" in err and "category id(s) [0]" in err and "contiguous labels" in err, err


# --- messages that misled ----------------------------------------------------------------------------------------------
def test_messages_say_what_is_wrong(models, photo_dir: Path, tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    line = assert_one_error_line(run_main(monkeypatch, capsys, "predict", f"torch:{tmp_path}", str(photo_dir / "x.jpg"),
                                          "--out", str(tmp_path / "o")), "is a folder", "latest.pth")
    assert "not found" not in line
    assert_one_error_line(run_main(monkeypatch, capsys, "bench", "--backend", ","), "--backend names no backend", "cpp")
    line = assert_one_error_line(run_main(monkeypatch, capsys, "eval", "--bogus"), "no such option: --bogus", "eval --help")
    assert "--out" not in line  # click's far-fetched suggestion
    assert_one_error_line(run_main(monkeypatch, capsys, "eval", "--outt", "x"), "did you mean --out?")
    two = tmp_path / "two"
    shutil.copytree(tiny50, two)
    shutil.copy(two / "annotations" / "instances_val2017.json", two / "annotations" / "instances_train2017.json")
    assert_one_error_line(run_main(monkeypatch, capsys, "eval", str(models["ckpt"]), "--data", str(two)), "choose one with --split")
    plugin = tmp_path / "plugin.onnx"
    export_onnx(models["ckpt"], plugin, nms="plugin", input_hw=(64, 64))
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", "--backend", "openvino", str(plugin), str(photo_dir / "x.jpg"),
                                   "--out", str(tmp_path / "o")), "GFLV2NMS_TRT", "OpenVINO cannot run")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, fragment", [
    (["eval", "--batch-size", "x"], "invalid value for '--batch-size'"),
    (["predict"], "missing argument 'model'"),
    (["nosuch"], "no such command 'nosuch'"),
])
def test_command_line_mistakes_are_one_error_line(args: list[str], fragment: str, monkeypatch, capsys) -> None:
    line = assert_one_error_line(run_main(monkeypatch, capsys, *args), fragment)
    assert "╭" not in line and "Usage:" not in line


def test_piped_help_is_not_wrapped_at_80_columns() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "predict", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")})
    assert proc.returncode == 0
    widths = [len(line) for line in proc.stdout.splitlines()]
    assert max(widths) > 120 and "engine, or BACKEND:PATH" in proc.stdout  # one line where 80 columns broke it


def test_every_backend_help_lists_every_backend() -> None:
    from typer.main import get_command

    from gflv2_deploy.cli import app
    from gflv2_deploy.runtime.factory import BACKENDS

    root = get_command(app)
    helps = {name: p.help for name, c in root.commands.items() for p in getattr(c, "params", ()) if "--backend" in p.opts}
    assert set(helps) == {"predict", "eval", "bench"}
    for name, text in helps.items():
        assert [b for b in BACKENDS if f"{b} (" not in text] == [], name


# --- eval: corrupt images skipped and counted like missing ones; 0 detections said -------------------------------------
def test_eval_skips_and_counts_a_corrupt_image(models, tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    data = small_coco(tiny50, tmp_path / "coco")
    victim = sorted((data / "val2017").glob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:2000])  # truncated JPEG
    out = tmp_path / "m.json"
    code, stdout, err = run_main(monkeypatch, capsys, "eval", str(models["ckpt"]), "--data", str(data), "--out", str(out))
    assert code == 0 and "Traceback" not in err, err
    assert "skipped 1 unreadable image(s) of 3" in err and victim.name in err
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 2 and len(metrics["unreadable_images"]) == 1 and metrics["math"] == "fp32"


def test_eval_says_when_the_model_made_no_detection(models, tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    data = small_coco(tiny50, tmp_path / "coco", count=2)
    code, out, err = run_main(monkeypatch, capsys, "eval", str(models["blind"]), "--data", str(data))
    assert code == 0 and "warning: 0 detections on the 2 image(s)" in err, err


# --- progress when piped; SIGINT / SIGTERM clean up and say so --------------------------------------------------------------
def test_progress_lines_when_piped(models, tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run_main(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "s"), "--images", "3")
    assert code == 0 and "synth: 3/3 (100%)" in err, err
    code, out, err = run_main(monkeypatch, capsys, "export", str(models["ckpt"]), "--shape", "64x64", "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0 and "export: tracing gflv2_tiny at 64x64" in err and "export: checking the graph" in err, err
    code, out, err = run_main(monkeypatch, capsys, "bench", "--shape", "64x64", "--iterations", "2", "--warmup", "1", "--threads", "1")
    assert code == 0 and "bench gflv2_tiny 64x64 batch 1: 6/6 (100%)" in err, err


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_removes_the_temporary_folder_and_says_interrupted(signum: int, status: int, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "data", "synth", "--out", str(tmp_path / "s"),
                             "--images", "20000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".s.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # until the hidden working folder exists: the work has started
    assert list(tmp_path.glob(".s.*")), "the command never started its work"
    time.sleep(0.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status and err.strip().splitlines()[-1] == "interrupted", (proc.returncode, err[-500:])
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
