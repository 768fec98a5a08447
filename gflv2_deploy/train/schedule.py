"""Learning-rate schedule of the official recipe (spec §4): linear warmup, then steps by epoch.

As mmcv's ``StepLrUpdaterHook`` with linear warmup computes it:

- regular lr in (0-based) epoch ``e``: ``base_lr * gamma ** (number of steps s with e >= s)``; with
  steps (8, 11) epochs 0-7 use lr, 8-10 lr/10, 11 lr/100;
- during the first ``warmup_iters`` iterations (global, 0-based ``it``) the regular lr is multiplied by
  ``1 - (1 - it / warmup_iters) * (1 - warmup_ratio)``: from ``warmup_ratio * lr`` at ``it = 0``
  rising linearly towards ``lr``.

The schedule is a pure function of (iteration, epoch); its state dict holds its parameters so a
resumed run can check that they did not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["WarmupStepSchedule"]


class WarmupStepSchedule:
    """lr(iteration, epoch) of the recipe; ``apply`` writes it into every parameter group of an optimiser."""

    def __init__(self, base_lr: float, *, warmup_iters: int, warmup_ratio: float, steps: Sequence[int],
                 gamma: float = 0.1) -> None:
        if base_lr <= 0:
            raise ValueError(f"base lr must be positive, got {base_lr}")
        if warmup_iters < 0 or not 0.0 < warmup_ratio <= 1.0:
            raise ValueError(f"warmup_iters must be >= 0 and warmup_ratio in (0, 1], got {warmup_iters}, {warmup_ratio}")
        self.base_lr = float(base_lr)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        self.steps = tuple(int(s) for s in steps)
        self.gamma = float(gamma)

    def regular_lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** sum(1 for s in self.steps if epoch >= s)

    def lr(self, iteration: int, epoch: int) -> float:
        """lr of global iteration ``iteration`` (0-based) inside epoch ``epoch`` (0-based)."""
        lr = self.regular_lr(epoch)
        if iteration < self.warmup_iters:
            lr *= 1.0 - (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio)
        return lr

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch: int) -> float:
        lr = self.lr(iteration, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "warmup_iters": self.warmup_iters, "warmup_ratio": self.warmup_ratio,
                "steps": list(self.steps), "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])
        self.warmup_iters = int(state["warmup_iters"])
        self.warmup_ratio = float(state["warmup_ratio"])
        self.steps = tuple(int(s) for s in state["steps"])
        self.gamma = float(state["gamma"])
