"""Latency of the PyTorch model on random inputs of given shapes and batch sizes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from gflv2_deploy.bench.timing import machine_info, time_callable


def run_torch_benchmark(configs: Sequence[str], checkpoint: str | os.PathLike[str] | None, shapes: Sequence[tuple[int, int]],
                        batches: Sequence[int], iterations: int = 10, warmup: int = 2, threads: int | None = None,
                        device: str = "cpu") -> dict:
    """Time ``model(images)`` (raw head outputs, no post-processing) for every config x shape x batch."""
    from gflv2_deploy.runtime.torch_runner import load_torch_model

    if threads:
        torch.set_num_threads(threads)
    results = []
    for name in configs:
        model = load_torch_model(checkpoint, name).to(device)
        for h, w in shapes:
            for n in batches:
                x = torch.randn(n, 3, h, w, device=device)

                def step() -> None:
                    with torch.inference_mode():
                        model(x)
                    if x.is_cuda:
                        torch.cuda.synchronize()

                stats = time_callable(step, iterations=iterations, warmup=warmup, batch=n)
                results.append({"backend": f"torch-{device}", "model": name, "shape": f"{h}x{w}", "batch": n,
                                "checkpoint": str(checkpoint) if checkpoint else None, "stats": stats.to_dict()})
    return {"machine": {**machine_info(), "torch_threads": torch.get_num_threads()}, "results": results}
