"""Bad input through the real entry point (``gflv2_deploy.cli.main``): one ``error:`` line, status 2, no traceback,
no partial output. Replays the rows of issue 9's table; each test names its row."""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gflv2_deploy import build_model
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.model.checkpoint import save_checkpoint

from cli_run import assert_one_error_line, run_main  # tests/integration/cli_run.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("gflv2_tiny", num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, model, model.config)
    return path


# --- rows 1 and 2: every command, an output that cannot be written, in a path full of Rich markup -------------
# (command, arguments before the output, how the output is given: a file or a folder)
WRITERS = [
    ("export", ["CKPT"], ["--onnx"], "m.onnx"),
    ("predict", ["CKPT", "img.jpg"], ["--out"], "pred"),
    ("infer", ["img.jpg", "--model", "torch:CKPT", "--ray", "off"], ["--out"], "infer"),
    ("eval", ["--gt", "gt.json", "--results", "dets.json"], ["--out"], "metrics.json"),
    ("compare", ["--ref", "torch:CKPT", "--test", "onnxruntime:m.onnx", "--images", "img.jpg"], ["--report"], "report.json"),
    ("bench", ["--shape", "64x64", "--iterations", "1"], ["--out"], "bench.json"),
    ("quantize", ["m.onnx", "--fp16"], ["--out"], "m.fp16.onnx"),
    ("build", ["m.onnx", "--fp32"], ["--out"], "m.engine"),
    ("train", ["--config", "gflv2_tiny", "--data", "data"], ["--work-dir"], "work"),
    ("data synth", ["--images", "2"], ["--out"], "synth"),
    ("demo", ["--quick"], ["--out"], "demo"),
    ("triton", ["m.onnx"], ["--repo"], "repo"),
]


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
@pytest.mark.parametrize("command, before, option, name", WRITERS, ids=[w[0] for w in WRITERS])
def test_unwritable_output_with_markup_in_its_path(command: str, before: list[str], option: list[str], name: str, where: str,
                                                   tiny_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder\n")
    parent = Path("/proc/x[/bad]") if where == "proc" else a_file / "[red]y[/red]"
    target = parent / name
    args = [*command.split(), *(str(tiny_ckpt) if a == "CKPT" else a.replace("CKPT", str(tiny_ckpt)) for a in before),
            *option, str(target)]
    line = assert_one_error_line(run_main(monkeypatch, capsys, *args), "cannot write", str(target))
    assert ("x[/bad]" if where == "proc" else "[red]y[/red]") in line  # markup shown as typed, not interpreted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]  # nothing written anywhere


def test_existing_file_as_output_folder(tiny_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    out.write_text("a file\n")
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", str(tiny_ckpt), "img.jpg", "--out", str(out)),
                          "is a file: give a folder")


def test_markup_in_input_paths_prints_as_typed(tiny_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "x[/bad]" / "nope.jpg"
    assert_one_error_line(run_main(monkeypatch, capsys, "predict", str(tiny_ckpt), str(missing), "--out", str(tmp_path / "o")),
                          str(missing))
    assert not (tmp_path / "o").exists()
    assert_one_error_line(run_main(monkeypatch, capsys, "export", str(tmp_path / "[bold]ck[/bold].pth")), "[bold]ck[/bold].pth")
    gt = tmp_path / "gt.json"
    gt.write_text('{"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "a"}], "annotations": []}')
    dets = tmp_path / "dets.json"
    dets.write_text('[{"image_id": 1, "category_id": 1, "bbox": "oops", "score": 0.5}]')
    assert_one_error_line(run_main(monkeypatch, capsys, "eval", "--gt", str(gt), "--results", str(dets)), "bbox [x, y, w, h]")


def test_export_into_a_markup_path_succeeds(tiny_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "x[/y]" / "m.onnx"
    code, stdout, err = run_main(monkeypatch, capsys, "export", str(tiny_ckpt), "--shape", "64x64", "--onnx", str(out))
    assert code == 0 and out.is_file(), err
    assert f"wrote {out}" in stdout


# --- row 3: a PyTorch Lightning checkpoint, and other unusable checkpoint files ---------------------------------
def test_lightning_checkpoint_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    fake = types.ModuleType("pytorch_lightning")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = "pytorch_lightning"
    AttributeDict.__qualname__ = "AttributeDict"
    fake.AttributeDict = AttributeDict
    ckpt = tmp_path / "face.ckpt"
    monkeypatch.setitem(sys.modules, "pytorch_lightning", fake)
    torch.save({"state_dict": {}, "hyper_parameters": AttributeDict(lr=1)}, ckpt)
    monkeypatch.delitem(sys.modules, "pytorch_lightning")
    img = tmp_path / "img.jpg"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    refused = run_main(monkeypatch, capsys, "predict", str(ckpt), str(img), "--out", str(tmp_path / "o"))
    assert_one_error_line(refused, "--allow-unsafe-pickle")
    line = assert_one_error_line(run_main(monkeypatch, capsys, "predict", str(ckpt), str(img), "--out", str(tmp_path / "o"),
                                          "--allow-unsafe-pickle"), "PyTorch Lightning", "state_dict")
    assert "ModuleNotFoundError" not in line
    data = tmp_path / "synth"
    generate_synthetic_coco(data, 3, seed=0, image_size=(96, 96), val_fraction=0.34)
    assert_one_error_line(run_main(monkeypatch, capsys, "train", "--config", "gflv2_tiny", "--data", str(data),
                                   "--work-dir", str(tmp_path / "w"), "--backbone-weights", str(ckpt), "--eval-interval", "0",
                                   "--no-progress", "--allow-unsafe-pickle"), "PyTorch Lightning", after_progress=True)
    assert not (tmp_path / "o").exists()


def test_folder_as_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    assert_one_error_line(run_main(monkeypatch, capsys, "export", str(tmp_path)), "is a folder", "latest.pth")


# --- rows 4 and 5: counts and sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--batch-size", "-3"), ("--limit", "0"), ("--limit", "-77")])
def test_eval_counts(option: str, value: str, tiny_ckpt: Path, tiny50: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.json"
    result = run_main(monkeypatch, capsys, "eval", str(tiny_ckpt), "--data", str(tiny50), option, value, "--out", str(out))
    assert_one_error_line(result, option, value)
    assert not out.exists()


@pytest.mark.parametrize("shape, message", [("100000x100000", "at most 8192"), ("8224x64", "at most 8192"),
                                            ("100x100", "multiples of 32")])
def test_export_shape_bound(shape: str, message: str, tiny_ckpt: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert_one_error_line(run_main(monkeypatch, capsys, "export", str(tiny_ckpt), "--shape", shape, "--onnx", str(out)), message)
    assert not out.exists()


# --- row 6: a parity gate that compared nothing fails ---------------------------------------------------------------
def test_compare_gate_fails_on_zero_reference_detections(tmp_path: Path, monkeypatch, capsys) -> None:
    torch.manual_seed(0)
    model = build_model("gflv2_tiny", num_classes=3)
    torch.nn.init.constant_(model.bbox_head.gfl_cls.bias, -30.0)  # every score ~1e-13: nothing clears 0.05
    ckpt = tmp_path / "blind.pth"
    save_checkpoint(ckpt, model, model.config)
    img = tmp_path / "img.jpg"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    code, out, err = run_main(monkeypatch, capsys, "compare", "--ref", f"torch:{ckpt}", "--test", f"torch:{ckpt}",
                              "--images", str(img), "--scale", "96x64")
    assert code == 1 and "parity: all budgets hold" not in out, (out, err)
    assert "budget exceeded: detections: the reference made 0 detection(s)" in err and "Traceback" not in err
    code, out, err = run_main(monkeypatch, capsys, "compare", "--ref", f"torch:{ckpt}", "--test", f"torch:{ckpt}",
                              "--images", str(img), "--scale", "96x64", "--min-ref-dets", "0")
    assert code == 0 and "parity: all budgets hold" in out, (out, err)


# --- smaller items ----------------------------------------------------------------------------------------------------
def test_data_synth_messages_name_real_flags(tmp_path: Path, monkeypatch, capsys) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    assert_one_error_line(run_main(monkeypatch, capsys, "data", "synth", "--out", str(full)), "--overwrite")
    assert_one_error_line(run_main(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path / "n"), "--images", "0"),
                          "--images")


def test_library_warnings_print_as_clean_lines(monkeypatch, capsys) -> None:
    from gflv2_deploy import cli

    monkeypatch.setattr(warnings, "showwarning", cli._show_warning)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("instances_val.json: skipped 2 bad item(s) (2 bbox)", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.strip() == "warning: instances_val.json: skipped 2 bad item(s) (2 bbox)"
