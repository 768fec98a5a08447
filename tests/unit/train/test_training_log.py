"""log.jsonl bookkeeping across a resume, the loss-curve picture, RNG state capture for exact resume."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from gflv2_deploy.train.state import capture_rng_state, restore_rng_state
from gflv2_deploy.train.training_log import TrainingLog, plot_loss_curve, read_log


def _train(i: int) -> dict:
    return {"type": "train", "iteration": i, "epoch": 1 + i // 4, "lr": 0.01 * min(1.0, (i + 1) / 3), "loss": 3.0 / i,
            "loss_qfl": 1.0 / i, "loss_bbox": 1.5 / i, "loss_dfl": 0.5 / i}


def test_resume_drops_records_past_the_checkpoint_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = TrainingLog(path)
    log.write({"type": "run", "iteration": 0})
    for i in range(1, 8):
        log.write(_train(i))
    log.write({"type": "eval", "iteration": 4, "epoch": 1, "stats": [0.1] * 12, "AP": 0.1, "AP50": 0.2})
    log.close()
    with open(path, "a") as f:
        f.write('{"type": "train", "iteration": 8, "lo')  # torn line of a killed process
    assert [r.get("iteration") for r in read_log(path)][-1] == 4  # torn line skipped

    resumed = TrainingLog(path, resume_iteration=5)  # checkpoint at iteration 5: records 6 and 7 were lost work
    resumed.write({"type": "run", "iteration": 5})
    resumed.write(_train(6))
    resumed.close()
    records = read_log(path)
    assert [(r["type"], r["iteration"]) for r in records] == (
        [("run", 0)] + [("train", i) for i in range(1, 6)] + [("eval", 4), ("run", 5), ("train", 6)]
    )
    assert TrainingLog(path).path == path and read_log(path) == []  # a fresh run starts an empty log


def test_loss_curve_is_a_png_with_or_without_evaluations(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = TrainingLog(path)
    for i in range(1, 30):
        log.write(_train(i))
    log.close()
    out = plot_loss_curve(path, tmp_path / "curve.png", title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = TrainingLog(path, resume_iteration=29)
    log.write({"type": "eval", "iteration": 29, "epoch": 7, "stats": [0.3] * 12, "AP": 0.3, "AP50": 0.5})
    log.close()
    plot_loss_curve(path, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "log.jsonl"]  # written atomically


def test_rng_states_round_trip() -> None:
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
