"""The general distribution of box sides: softmax integral (DFL decode) and DGQP statistics.

Both take the per-level regression logits after the level's Scale, ``N x 4*(reg_max+1) x H x W`` with
channel index ``side * (reg_max + 1) + bin`` and sides ordered left, top, right, bottom (spec §1.5).
They keep the batch axis and NCHW layout, so the exported graph has no batch folding
(spec §7.3: mmdet's Integral reshapes to (-1, 17) and merges the batch into rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def side_probabilities(bbox_pred: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Softmax over the bins of each side: N x 4(reg_max+1) x H x W -> N x 4 x (reg_max+1) x H x W (fp32)."""
    n, _, h, w = bbox_pred.shape
    return F.softmax(bbox_pred.float().reshape(n, 4, reg_max + 1, h, w), dim=2)


def integral(prob: torch.Tensor) -> torch.Tensor:
    """Expected distance per side: N x 4 x B x H x W probabilities -> N x 4 x H x W, in stride units.

    Written as multiply + reduce-sum against the bin values 0..B-1 (no rank-1 MatMul, spec §7.3).
    """
    bins = torch.arange(prob.shape[2], dtype=prob.dtype, device=prob.device).reshape(1, 1, -1, 1, 1)
    return (prob * bins).sum(dim=2)


def dgqp_statistics(prob: torch.Tensor, topk: int, add_mean: bool = True) -> torch.Tensor:
    """DGQP input: per side the top-k probabilities (sorted descending) and their mean (spec §1.6).

    prob: N x 4 x B x H x W -> N x 4(k+1) x H x W, side-major channels
    [L: top1..topk, mean, T: ..., R: ..., B: ...]. k is a Python constant, so the exported TopK has an
    initializer K as the TensorRT parser requires (spec §7.4).
    """
    n, sides, _, h, w = prob.shape
    top, _ = prob.topk(topk, dim=2, largest=True, sorted=True)
    stats = torch.cat([top, top.mean(dim=2, keepdim=True)], dim=2) if add_mean else top
    return stats.reshape(n, sides * stats.shape[2], h, w)
