"""BatchNorm over the whole multi-process batch, so W processes train like one process with the total batch.

Only matters when BatchNorm runs in training mode (``norm_eval = false``, e.g. the from-scratch tiny
config); with the official recipe (``norm_eval = true``) every BN uses its running statistics and
nothing needs synchronising. On CUDA this is ``torch.nn.SyncBatchNorm``; PyTorch's SyncBatchNorm
refuses CPU tensors, so on CPU (gloo) ``AllReduceBatchNorm2d`` does the same with a differentiable
all-reduce of per-channel sums: mean and biased variance over all N*H*W values of all processes,
running statistics updated with the unbiased variance, exactly as one ``BatchNorm2d`` over the
concatenated batch (up to summation order). Parameter and buffer names are unchanged, so checkpoints
are the same as without synchronisation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

__all__ = ["AllReduceBatchNorm2d", "synchronise_batchnorm"]


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics span every process (any backend, CPU included)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), xf.numel() // c, dtype=torch.float32, device=x.device)
        sums = all_reduce(torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)), count]))  # sum over processes
        n = sums[-1]
        mean = sums[:c] / n
        var = (sums[c : 2 * c] / n - mean * mean).clamp(min=0)  # biased, as BatchNorm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * (n / (n - 1)), alpha=momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            shift = self.bias - mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -mean * scale
        return (xf * scale[None, :, None, None] + shift[None, :, None, None]).to(x.dtype)


def synchronise_batchnorm(module: nn.Module, device: torch.device) -> int:
    """Replace, in place, every ``BatchNorm2d`` of ``module`` by its synchronised form; returns how many.

    CUDA: ``torch.nn.SyncBatchNorm``; otherwise ``AllReduceBatchNorm2d``. Training mode, parameters,
    buffers and ``requires_grad`` flags are carried over.
    """
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            if device.type == "cuda":
                new: nn.Module = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                                  child.track_running_stats)
            else:
                new = AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                           child.track_running_stats)
            new.load_state_dict(child.state_dict())
            for p_new, p_old in zip(new.parameters(), child.parameters()):
                p_new.requires_grad_(p_old.requires_grad)
            new.to(device).train(child.training)
            setattr(module, name, new)
            count += 1
        else:
            count += synchronise_batchnorm(child, device)
    return count
