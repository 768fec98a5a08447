"""torch.distributed set-up for training launched by ``torchrun`` (or a single plain process).

``torchrun --nproc_per_node K ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with ``WORLD_SIZE`` > 1 a process group is created (NCCL on CUDA, Gloo on CPU) and
each process uses GPU ``LOCAL_RANK``. Without those variables training runs as one process and no
process group exists, so ``losses.reduce_mean`` is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gflv2_deploy.errors import UserError

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "mean_over_processes", "barrier"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank among world_size, its device, and whether it writes outputs."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "cpu") -> DistContext:
    """Read RANK / WORLD_SIZE / LOCAL_RANK and create the process group when WORLD_SIZE > 1.

    device: ``cpu`` or ``cuda`` (``cuda:N`` is accepted for single-process runs; under torchrun each
    process takes ``cuda:LOCAL_RANK``).
    """
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"device must be cpu or cuda[:N], got {device!r}")
    use_cuda = device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but torch sees no CUDA GPU; use --device cpu")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size > 1:
        if use_cuda:
            torch.cuda.set_device(local_rank)
            torch_device = torch.device("cuda", local_rank)
        else:
            torch_device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    else:
        torch_device = torch.device(device)
        if use_cuda and torch_device.index is not None:
            torch.cuda.set_device(torch_device)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each scalar over all processes (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
