"""Two processes under torchrun (gloo, CPU) train like one process with the same total batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gflv2_deploy.config import load_config
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.model.checkpoint import read_checkpoint
from gflv2_deploy.train.loop import train
from gflv2_deploy.train.training_log import read_log

REPO = Path(__file__).resolve().parents[2]


# tiny tensors on a shared 2-core machine: a second intra-op thread mostly spins against other processes
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The train command exactly as the CLI defines it, on a bare typer app (cli.py wiring not needed).
DRIVER = """
import sys
import typer
from gflv2_deploy.cli.train import register
from gflv2_deploy.errors import UserError

app = typer.Typer(pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
"""

# gflv2_tiny with a fixed small scale: every image of the size_jitter=0 dataset has the same input
# size, so a 2-process batch is padded exactly like the 1-process batch it is split from. Its
# backbone trains from scratch with BatchNorm in training mode (statistics synchronised over the
# processes); OFFICIAL_BACKBONE swaps in the official frozen stem + frozen BatchNorm.
TINY = (REPO / "gflv2_deploy" / "configs" / "gflv2_tiny.toml").read_text()
OFFICIAL_BACKBONE = "[backbone]\ndepth = 18\nbase_width = 16\nfrozen_stages = 1\nnorm_eval = true\n\n"
CONFIG = TINY[TINY.index("[backbone]"):].split("[test]")[0] + """
[test]
scale = [256, 128]

[train]
lr = 0.02
warmup_iters = 2
epochs = 2
lr_steps = [1]
batch_size = 4
scale_range = [128, 128]
scale_long = 256
num_workers = 0
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    data = root / "ds"
    generate_synthetic_coco(data, num_images=10, seed=4, val_fraction=0.2, image_size=(128, 160), size_jitter=0.0)
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    return data, driver


@pytest.mark.parametrize("backbone", ["from_scratch", "official"])
def test_two_gloo_processes_match_one_process_with_the_same_total_batch(setup: tuple[Path, Path], tmp_path: Path,
                                                                        backbone: str) -> None:
    data, driver = setup
    config = tmp_path / "tiny_ddp.toml"
    if backbone == "official":
        config.write_text('name = "tiny_ddp"\n' + OFFICIAL_BACKBONE + CONFIG[CONFIG.index("[neck]"):])
    else:
        config.write_text('name = "tiny_ddp"\n' + CONFIG)
    assert load_config(config).backbone.norm_eval == (backbone == "official")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(driver), "train",
         "--config", str(config), "--data", str(data), "--work-dir", str(tmp_path / "ddp"), "--max-iters", "3",
         "--eval-interval", "0", "--log-interval", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("trained tiny_ddp") == 1, proc.stdout  # rank 0 reports alone

    single = train(load_config(config), data, tmp_path / "single", max_iters=3, eval_interval=0, log_interval=1,
                   progress=False)
    assert single["world_size"] == 1

    ddp_log = read_log(tmp_path / "ddp" / "log.jsonl")
    runs = [r for r in ddp_log if r["type"] == "run"]
    assert len(runs) == 1 and runs[0]["world_size"] == 2  # one writer
    ddp = [r for r in ddp_log if r["type"] == "train"]
    one = [r for r in read_log(tmp_path / "single" / "log.jsonl") if r["type"] == "train"]
    assert [r["iteration"] for r in ddp] == [r["iteration"] for r in one] == [1, 2, 3]
    for a, b in zip(one, ddp):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
        for key in ("loss", "loss_qfl", "loss_bbox", "loss_dfl"):
            assert b[key] == pytest.approx(a[key], abs=1e-4, rel=0), (a["iteration"], key, a[key], b[key])
    # the losses moved between iterations, so the match is not a trivial one
    assert len({round(r["loss"], 3) for r in one}) == 3
    assert (tmp_path / "ddp" / "summary.json").is_file()
    # same weights and BatchNorm statistics after 3 steps (running stats move only when BN trains)
    sd_ddp = read_checkpoint(tmp_path / "ddp" / "latest.pth")["state_dict"]
    sd_one = read_checkpoint(tmp_path / "single" / "latest.pth")["state_dict"]
    assert sd_ddp.keys() == sd_one.keys()
    for k, v in sd_one.items():
        torch.testing.assert_close(sd_ddp[k].float(), v.float(), rtol=0, atol=1e-4, msg=k)
    moved = sd_one["backbone.layer2.0.bn1.running_mean"].abs().sum() > 0
    assert moved == (backbone == "from_scratch")
