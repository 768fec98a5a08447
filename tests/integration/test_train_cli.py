"""``data synth`` and ``train`` through the typer commands that ``cli.train.register`` adds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from gflv2_deploy.cli.train import register
from gflv2_deploy.errors import UserError

REPO = Path(__file__).resolve().parents[2]


# tiny tensors on a shared 2-core machine: a second intra-op thread mostly spins against other processes
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def test_synth_then_train_then_refusals(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--out", str(data), "--images", "8", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "train: 6 images" in result.output and "val: 2 images" in result.output
    assert (data / "annotations" / "instances_train.json").is_file()

    again = runner.invoke(app, ["data", "synth", "--out", str(data), "--images", "8", "--seed", "2"])
    assert isinstance(again.exception, UserError) and "overwrite" in str(again.exception)

    config = tmp_path / "tiny_small.toml"
    config.write_text((REPO / "gflv2_deploy" / "configs" / "gflv2_tiny.toml").read_text().split("[train]")[0]
                      + "[train]\nscale_range = [128, 128]\nscale_long = 256\nbatch_size = 2\nnum_workers = 0\n")
    work = tmp_path / "work"
    result = runner.invoke(app, ["train", "--config", str(config), "--data", str(data), "--work-dir", str(work),
                                 "--max-iters", "2", "--eval-interval", "0", "--lr", "0.005", "--seed", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained gflv2_tiny for 2 iterations" in result.output  # the name inside the TOML
    summary = json.loads((work / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["total_batch"] == 2
    run = json.loads((work / "log.jsonl").read_text().splitlines()[0])
    assert run["recipe"]["lr"] == 0.005 and run["seed"] == 1 and run["recipe"]["scale_range"] == [128, 128]

    bad = runner.invoke(app, ["train", "--config", "gflv2_tiyn", "--data", str(data), "--work-dir", str(work)])
    assert isinstance(bad.exception, UserError) and "did you mean 'gflv2_tiny'" in str(bad.exception)
    cuda_amp = runner.invoke(app, ["train", "--config", str(config), "--data", str(data), "--work-dir", str(work), "--amp"])
    assert isinstance(cuda_amp.exception, UserError) and "CUDA" in str(cuda_amp.exception)
