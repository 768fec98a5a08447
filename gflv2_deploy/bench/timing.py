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


# Instruction-set flags that decide CPU inference speed (Linux /proc/cpuinfo names). INT8 U8S8 convolutions
# gain most with VNNI (avx512_vnni, avx_vnni) or AMX (amx_int8): on R-50 640x640 the INT8 speed-up over torch
# eager was 3.34x on a VNNI machine and 2.07x on an AVX2-only one, so every figure names them.
ISA_FLAGS: tuple[str, ...] = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                              "amx_bf16")


def parse_cpuinfo(text: str) -> dict[str, object]:
    """``{"model": str, "flags": [...]}`` from /proc/cpuinfo text: the first processor's model name and which
    of ``ISA_FLAGS`` it lists (in ``ISA_FLAGS`` order; ``flags`` on x86, ``Features`` on ARM)."""
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            continue
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in ISA_FLAGS if f in flags]}


def _cpuinfo() -> dict[str, object]:
    try:
        with open("/proc/cpuinfo") as f:
            info = parse_cpuinfo(f.read())
    except OSError:
        info = {"model": "unknown", "flags": []}
    if info["model"] == "unknown":
        info["model"] = platform.processor() or "unknown"
    return info


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_warning(load_1min: float, cores: int) -> str | None:
    """One line when the 1-minute load average exceeds half of ``cores`` (latencies are then unreliable), else None."""
    if load_1min <= cores / 2:
        return None
    return (f"1-minute load average {load_1min:.2f} exceeds half of the {cores} cores: other work shares the CPU, "
            "so latencies are inflated and unstable; re-run on an idle machine for figures")


def machine_info() -> dict[str, object]:
    """What the numbers were measured on: CPU model and instruction-set flags, core count, Python, library versions."""
    cpu = _cpuinfo()
    info: dict[str, object] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu["model"],
        "cpu_flags": cpu["flags"],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    for module in ("numpy", "torch", "onnxruntime", "onnx", "openvino"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    return info
