"""Deployment without torch: predict, eval and compare on an exported ONNX in a process where
``import torch`` fails (what `pip install 'gflv2-deploy[onnxruntime]'` gives: pyproject's core has no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI with an import hook that refuses torch (and anything below it) before anything is imported.
_NO_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
sys.argv = ["gflv2-deploy"] + sys.argv[1:]
from gflv2_deploy.cli import main
main()
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
"""


def run_without_torch(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gflv2_tiny with COCO's 80 classes (random weights) at a fixed 320 x 320: evaluated on the COCO photos."""
    import torch

    from gflv2_deploy import build_model
    from gflv2_deploy.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("torch_free") / "tiny.onnx"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("gflv2_tiny", num_classes=80).eval()
        model.bbox_head.gfl_cls.bias.data.fill_(-1.0)  # scores above the threshold: predict writes detections
    export_onnx(model, path, dynamic_hw=False, input_hw=(320, 320))
    return path


def test_blocker_really_blocks() -> None:
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH.replace("from gflv2_deploy.cli import main\nmain()", "import torch")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


def test_predict_eval_compare_run_without_torch(onnx_model: Path, tiny50: Path, tmp_path: Path) -> None:
    photos = sorted((tiny50 / "val2017").glob("*.jpg"))[:3]
    pred = run_without_torch("predict", f"onnxruntime:{onnx_model}", *photos, "--out", tmp_path / "pred")
    assert pred.returncode == 0, pred.stderr
    record = json.loads((tmp_path / "pred" / f"{photos[0].stem}.json").read_text())
    assert len(record["boxes"]) == len(record["scores"]) > 0

    ev = run_without_torch("eval", "--backend", "onnxruntime", "--model", onnx_model, "--data", tiny50, "--limit", "5",
                           "--out", tmp_path / "m.json", "--threads", "1")
    assert ev.returncode == 0, ev.stderr
    assert json.loads((tmp_path / "m.json").read_text())["num_images"] == 5

    cmp = run_without_torch("compare", "--ref", f"onnxruntime:{onnx_model}", "--test", f"onnxruntime:{onnx_model}",
                            "--images", photos[0], "--threads", "1")
    assert cmp.returncode == 0, cmp.stderr


def test_torch_backend_without_torch_names_the_extra(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not really")
    proc = run_without_torch("predict", f"torch:{ckpt}", REPO / "README.md", "--out", tmp_path / "p")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pip install 'gflv2-deploy[torch]'" in proc.stderr


def test_configs_lists_every_configuration_without_torch() -> None:
    """`configs` in a deployment install: every shipped configuration, parameters left uncounted with a note."""
    from gflv2_deploy.config import available_configs

    proc = run_without_torch("configs")
    assert proc.returncode == 0, proc.stderr
    names = available_configs()
    assert len(names) >= 8
    for name in names:
        assert name in proc.stdout, name
    assert "not counted (torch is not installed" in proc.stdout
