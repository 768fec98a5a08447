"""The lr schedule of the recipe: linear warmup from warmup_ratio * lr, then x0.1 steps at epoch boundaries."""

from __future__ import annotations

import pytest
import torch

from gflv2_deploy.train.schedule import WarmupStepSchedule


def test_warmup_starts_at_ratio_and_rises_linearly_to_lr() -> None:
    s = WarmupStepSchedule(0.01, warmup_iters=500, warmup_ratio=0.001, steps=(8, 11))
    assert s.lr(0, 0) == pytest.approx(1e-5)
    assert s.lr(250, 0) == pytest.approx(0.01 * (1 - 0.5 * 0.999))
    values = [s.lr(i, 0) for i in range(501)]
    diffs = [b - a for a, b in zip(values, values[1:500])]
    assert all(d == pytest.approx(diffs[0]) for d in diffs)  # linear
    assert s.lr(500, 0) == 0.01 and s.lr(10_000, 0) == 0.01


def test_steps_divide_by_ten_from_the_named_epochs_on() -> None:
    s = WarmupStepSchedule(0.01, warmup_iters=0, warmup_ratio=0.001, steps=(8, 11))
    lrs = [s.lr(10_000, e) for e in range(12)]
    assert lrs[:8] == [0.01] * 8
    assert lrs[8:11] == [pytest.approx(0.001)] * 3 and lrs[11] == pytest.approx(0.0001)
    # warmup multiplies the regular lr of the epoch it falls in
    w = WarmupStepSchedule(0.01, warmup_iters=100, warmup_ratio=0.1, steps=(1,))
    assert w.lr(50, 1) == pytest.approx(0.001 * (1 - 0.5 * 0.9))


def test_apply_sets_every_group_and_state_round_trips() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=1.0)
    s = WarmupStepSchedule(0.02, warmup_iters=10, warmup_ratio=0.5, steps=(3,))
    assert s.apply(opt, 5, 0) == pytest.approx(0.015)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.015)] * 2
    other = WarmupStepSchedule(1.0, warmup_iters=0, warmup_ratio=1.0, steps=())
    other.load_state_dict(s.state_dict())
    assert [other.lr(i, e) for i in (0, 5, 20) for e in (0, 4)] == [s.lr(i, e) for i in (0, 5, 20) for e in (0, 4)]
