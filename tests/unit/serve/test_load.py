"""The load runner counts every request and every problem; batch sizes come from statistics deltas."""

from __future__ import annotations

from gflv2_deploy.serve.load import batch_size_counts, run_load


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
