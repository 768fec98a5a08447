"""The load runner counts every request and every problem; batch sizes come from statistics deltas."""

from __future__ import annotations

from gflv2_deploy.serve.load import batch_size_counts, run_load, stage_ms


def test_every_request_is_counted_and_failures_are_kept() -> None:
    def send(client: int, j: int) -> str | None:
        if (client, j) == (1, 2):
            raise RuntimeError("lost")
        return "wrong" if (client, j) == (2, 0) else None

    result = run_load(send, clients=3, requests_per_client=4)
    assert result.answered == 12 and result.throughput > 0
    assert sorted(result.failures) == ["client 1 request 2: RuntimeError: lost", "client 2 request 0: wrong"]
    assert result.summary()["failures"] == 2


def test_batch_size_counts_are_deltas() -> None:
    def stats(counts: dict[int, int]) -> dict:
        return {"batch_stats": [{"batch_size": str(k), "compute_infer": {"count": str(v)}} for k, v in counts.items()]}

    assert batch_size_counts(stats({1: 5, 4: 2}), stats({1: 5, 4: 1})) == {4: 1}
    assert batch_size_counts(stats({2: 3})) == {2: 3}


def test_stage_ms_per_request() -> None:
    def stats(count: int, queue_ns: int, infer_ns: int) -> dict:
        return {"inference_stats": {"queue": {"count": count, "ns": queue_ns}, "compute_input": {"count": count, "ns": 0},
                                    "compute_infer": {"count": count, "ns": infer_ns}, "compute_output": {"count": count, "ns": 0}}}

    assert stage_ms(stats(12, 4_000_000, 30_000_000), stats(2, 0, 10_000_000)) == {"queue": 0.4, "compute": 2.0}


def test_refusals_are_told_from_losses() -> None:
    from gflv2_deploy.serve.load import is_refusal

    assert is_refusal("[StatusCode.NOT_FOUND] Request for unknown model: 'gflv2' has no available versions", "gflv2")
    assert is_refusal("[StatusCode.UNAVAILABLE] failed to connect to all addresses; last error: Connection refused", "gflv2")
    # a member missing inside the ensemble: the request had been accepted, so it is lost
    assert not is_refusal("in ensemble 'gflv2', Request for unknown model: 'gflv2_network' is not found", "gflv2")
    assert not is_refusal("[StatusCode.UNAVAILABLE] Socket closed", "gflv2")


def test_drain_under_load_counts_every_request_once() -> None:
    import time

    from gflv2_deploy.serve.load import drain_under_load

    state = {"stopped": False}

    def send(client: int, j: int) -> str | None:
        time.sleep(0.02)  # requests take time: the stop lands while clients still send
        if state["stopped"]:
            return "Request for unknown model: 'm' has no available versions"
        return "exploded" if (client, j) == (0, 1) else None

    def stop() -> str:
        state["stopped"] = True
        return "done"

    result = drain_under_load(send, clients=3, requests_per_client=10, stop=stop, stop_after_answers=5, model="m")
    assert result.sent == 30 and result.answered + result.refused + len(result.lost) == 30
    assert result.lost == ["client 0 request 1: exploded"] and result.refused > 0 and result.stop_result == "done"
