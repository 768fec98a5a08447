"""Bounded concurrent load against a served detector (or an in-process one), and what Triton batched.

``run_load(send, clients, requests_per_client)`` runs ``clients`` threads that each call
``send(client, j)`` ``requests_per_client`` times and records every latency and every problem; nothing
is retried, so a lost or failed request shows up as a failure. ``drain_under_load`` does the same while
a drain (or any stop) runs after a given number of answers, and sorts every request into answered,
refused (turned away before the server accepted it: ``is_refusal``) and lost (accepted, then not
answered). Helpers turn a picture into an ensemble request and an ensemble response into detections
(``tritonclient`` needed), and read the batch sizes Triton's dynamic batcher formed from its statistics API.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gflv2_deploy.serve.pipeline import DETECTION_OUTPUTS, PICTURE_INPUT


@dataclass
class LoadResult:
    """Latencies (ms, in completion order), wall time and problems of one load run."""

    clients: int
    requests_per_client: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Requests (pictures) per second over the whole run."""
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"clients": self.clients, "requests": self.answered, "seconds": round(self.seconds, 3),
                "img_per_s": round(self.throughput, 2), "p50_ms": round(self.percentile_ms(50), 1),
                "p99_ms": round(self.percentile_ms(99), 1), "failures": len(self.failures)}


def run_load(send: Callable[[int, int], str | None], clients: int, requests_per_client: int) -> LoadResult:
    """Call ``send(client, j)`` from ``clients`` threads, ``requests_per_client`` times each.

    ``send`` returns None for a correct answer or a text saying what was wrong; an exception it raises is
    recorded as a failure too. Every call is timed.
    """
    result = LoadResult(clients, requests_per_client)
    lock = threading.Lock()

    def client(index: int) -> None:
        for j in range(requests_per_client):
            started = time.perf_counter()
            try:
                problem = send(index, j)
            except Exception as exc:  # noqa: BLE001 (a load test records every failure, of any kind)
                problem = f"{type(exc).__name__}: {exc}"
            elapsed_ms = (time.perf_counter() - started) * 1e3
            with lock:
                result.latencies_ms.append(elapsed_ms)
                if problem:
                    result.failures.append(f"client {index} request {j}: {problem}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    result.seconds = time.perf_counter() - started
    return result


# How Triton and gRPC turn a request away before accepting it: the requested model is being unloaded or gone
# (Triton 2.51: "Request for unknown model: 'M' has no available versions"), or nothing listens any more. A
# member model missing inside an ensemble names another model: that request was accepted, so it is a loss.
_MODEL_REFUSALS = ("unknown model: '{}'", "'{}' is not ready", "model '{}' is not ready")
_CONNECTION_REFUSALS = ("failed to connect", "connection refused", "connect failed")


def is_refusal(message: str, model: str) -> bool:
    """True when an error message says the request for ``model`` was turned away before the server accepted it."""
    text = message.lower()
    return any(p.format(model.lower()) in text for p in _MODEL_REFUSALS) or any(p in text for p in _CONNECTION_REFUSALS)


@dataclass
class DrainResult:
    """Counts of a load with a stop in the middle: sent = answered + refused + lost."""

    sent: int = 0
    answered: int = 0
    refused: int = 0
    lost: list[str] = field(default_factory=list)
    stop_seconds: float = 0.0
    stop_result: Any = None

    def summary(self) -> dict[str, Any]:
        return {"sent": self.sent, "answered": self.answered, "refused": self.refused, "lost": len(self.lost),
                "stop_seconds": round(self.stop_seconds, 2)}


def drain_under_load(send: Callable[[int, int], str | None], clients: int, requests_per_client: int,
                     stop: Callable[[], Any], stop_after_answers: int, model: str) -> DrainResult:
    """``clients`` threads send ``requests_per_client`` requests each for ``model``; after ``stop_after_answers``
    answers ``stop()`` runs (e.g. a drain then a SIGTERM) while they keep sending. Every request is counted once."""
    result = DrainResult()
    lock = threading.Lock()
    trigger = threading.Event()

    def client(index: int) -> None:
        for j in range(requests_per_client):
            try:
                problem = send(index, j)
            except Exception as exc:  # noqa: BLE001 (a load test records every outcome)
                problem = f"{type(exc).__name__}: {exc}"
            with lock:
                result.sent += 1
                if problem is None:
                    result.answered += 1
                    if result.answered >= stop_after_answers:
                        trigger.set()
                elif is_refusal(problem, model):
                    result.refused += 1
                else:
                    result.lost.append(f"client {index} request {j}: {problem}")

    with ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        trigger.wait(timeout=600)
        started = time.perf_counter()
        result.stop_result = stop()
        result.stop_seconds = time.perf_counter() - started
        for future in futures:
            future.result()
    return result


def ensemble_inputs(picture: bytes) -> list[Any]:
    """gRPC inputs of one ensemble request: the encoded picture as a 1 x 1 BYTES tensor."""
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput(PICTURE_INPUT, [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[picture]], dtype=object))
    return [tensor]


def ensemble_detections(result: Any, row: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes K x 4 picture pixels, scores K, classes K) of one picture of an ensemble response."""
    counts, boxes, scores, classes = DETECTION_OUTPUTS
    n = int(result.as_numpy(counts)[row, 0])
    return result.as_numpy(boxes)[row, :n], result.as_numpy(scores)[row, :n], result.as_numpy(classes)[row, :n]


def batch_size_counts(after: dict[str, Any], before: dict[str, Any] | None = None) -> dict[int, int]:
    """{batch size: executions} from Triton model statistics (``as_json``), minus an earlier snapshot."""
    def counts(stats: dict[str, Any] | None) -> dict[int, int]:
        return {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in (stats or {}).get("batch_stats", [])}

    old = counts(before)
    return dict(sorted((size, n - old.get(size, 0)) for size, n in counts(after).items() if n > old.get(size, 0)))


def stage_ms(after: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, float]:
    """Mean milliseconds per request a model spent queued and computing (input + infer + output), from statistics."""
    def total(stats: dict[str, Any] | None, key: str) -> tuple[int, int]:
        entry = (stats or {}).get("inference_stats", {}).get(key, {})
        return int(entry.get("count", 0)), int(entry.get("ns", 0))

    out = {}
    for name, keys in (("queue", ("queue",)), ("compute", ("compute_input", "compute_infer", "compute_output"))):
        ns = count = 0
        for key in keys:
            (c1, n1), (c0, n0) = total(after, key), total(before, key)
            ns, count = ns + n1 - n0, max(count, c1 - c0)
        out[name] = round(ns / count / 1e6, 2) if count else 0.0
    return out
