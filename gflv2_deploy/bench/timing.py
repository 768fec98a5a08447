"""Latency statistics: warm-up, many timed iterations, percentiles, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call over ``iterations`` timed calls (after ``warmup`` untimed ones)."""

    iterations: int
    warmup: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    batch: int = 1

    @property
    def throughput(self) -> float:
        """Images per second at the median latency."""
        return 1000.0 * self.batch / self.p50_ms if self.p50_ms > 0 else float("inf")

    @property
    def cov(self) -> float:
        """Coefficient of variation; above ~0.1 the machine was noisy (trtexec warns at 2.5% for GPUs)."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "throughput_img_s": self.throughput, "cov": self.cov}


def stats_from_samples(samples_ms: list[float], warmup: int, batch: int = 1) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    return LatencyStats(
        iterations=len(a), warmup=warmup, mean_ms=float(a.mean()), std_ms=float(a.std()), min_ms=float(a.min()),
        p50_ms=float(np.percentile(a, 50)), p90_ms=float(np.percentile(a, 90)), p99_ms=float(np.percentile(a, 99)),
        max_ms=float(a.max()), batch=batch,
    )  # fmt: skip


def time_callable(fn: Callable[[], object], *, iterations: int = 20, warmup: int = 3, batch: int = 1,
                  min_seconds: float = 0.0) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then at least ``iterations`` times (and ``min_seconds``) timed.

    ``fn`` must synchronise whatever device it uses before returning (host wall clock is used).
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < iterations or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return stats_from_samples(samples, warmup, batch)


def machine_info() -> dict[str, object]:
    """What the numbers were measured on: CPU, core count, Python, and versions of the numeric stack."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    for module in ("numpy", "torch", "onnxruntime", "onnx"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
