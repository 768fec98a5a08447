"""Log histograms of errors: exact counts on hand-computed bins, upper-bound quantiles, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy.eval.histogram import LogHistogram


def test_counts_fall_in_the_hand_computed_bins() -> None:
    h = LogHistogram(min_exp=-3, max_exp=0, bins_per_decade=1)  # edges 1e-3, 1e-2, 1e-1, 1
    np.testing.assert_allclose(h.edges, [1e-3, 1e-2, 1e-1, 1.0])
    h.add(np.array([0.0, 0.0, 5e-4, 1e-3, 5e-3, 1e-2, 0.5, 1.0, 20.0, np.inf]))
    # bin 0: <= 1e-3 (two zeros, 5e-4, 1e-3); bin 1: (1e-3, 1e-2]; bin 2: (1e-2, 1e-1]; bin 3: (1e-1, 1]; bin 4: > 1
    assert h.counts.tolist() == [4, 2, 0, 2, 2]
    assert h.zeros == 2 and h.total == 10


def test_quantile_is_an_upper_bound_within_one_bin() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(-8, 2, 10_000)
    h = LogHistogram(bins_per_decade=100)
    h.add(values)
    for q in (0.5, 0.9, 0.99):
        exact = np.percentile(values, 100 * q, method="inverted_cdf")
        got = h.quantile(q, values.max())
        assert exact <= got <= exact * 10 ** (1 / 100) * (1 + 1e-12)
    assert h.quantile(1.0, values.max()) == values.max()


def test_quantile_of_exact_zeros_is_zero() -> None:
    h = LogHistogram()
    h.add(np.zeros(99))
    h.add(np.array([1e-3]))
    assert h.quantile(0.5, 1e-3) == 0.0 and h.quantile(0.995, 1e-3) == pytest.approx(1e-3)
    assert LogHistogram().quantile(0.99, 0.0) == 0.0


def test_json_round_trip_and_bad_input() -> None:
    h = LogHistogram(min_exp=-6, max_exp=2, bins_per_decade=5)
    h.add(np.array([0.0, 3e-4, 7.0, 1e9]))
    back = LogHistogram.from_dict(h.to_dict())
    assert back.counts.tolist() == h.counts.tolist() and back.zeros == 1 and back.min_exp == -6
    with pytest.raises(ValueError):
        h.add(np.array([np.nan]))
    with pytest.raises(ValueError):
        h.add(np.array([-1.0]))
    with pytest.raises(ValueError):
        LogHistogram.from_dict({**h.to_dict(), "counts": [1, 2, 3]})
