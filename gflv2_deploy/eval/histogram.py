"""Streaming histogram of non-negative values on log-spaced bins: exact counts, bounded size, upper-bound quantiles.

Errors between two backends span many decades (1e-7 for fp32 reorderings, 1e-1 for int8), so linear bins
either lose the small ones or need millions of bins. Here bin edges are ``10 ** (k / bins_per_decade)`` for
``k = min_exp * bins_per_decade .. max_exp * bins_per_decade``; bin 0 holds every value ``<= 10**min_exp``
(exact zeros included, and also counted apart in ``zeros``), bin ``i`` the values in ``(E[i-1], E[i]]``, the
last bin those above ``10**max_exp`` (and infinities). The memory and the JSON size do not grow with the
number of values, so a comparison over all of COCO keeps every matched pair's error in a few hundred numbers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["LogHistogram"]


class LogHistogram:
    """Counts of non-negative values on log-spaced bins (see the module docstring)."""

    def __init__(self, min_exp: int = -12, max_exp: int = 6, bins_per_decade: int = 10) -> None:
        if max_exp <= min_exp or bins_per_decade < 1:
            raise ValueError(f"bad histogram range 1e{min_exp}..1e{max_exp} with {bins_per_decade} bins per decade")
        self.min_exp, self.max_exp, self.bins_per_decade = int(min_exp), int(max_exp), int(bins_per_decade)
        steps = np.arange(self.min_exp * self.bins_per_decade, self.max_exp * self.bins_per_decade + 1)
        self.edges = 10.0 ** (steps / self.bins_per_decade)
        self.counts = np.zeros(len(self.edges) + 1, np.int64)
        self.zeros = 0

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (any shape, >= 0; NaN is not a value and raises ValueError)."""
        values = np.asarray(values, np.float64).ravel()
        if values.size == 0:
            return
        if np.isnan(values).any() or (values < 0).any():
            raise ValueError("a log histogram counts non-negative numbers only")
        idx = np.searchsorted(self.edges, values, side="left")  # v <= E[0] -> 0; E[i-1] < v <= E[i] -> i
        self.counts += np.bincount(idx, minlength=len(self.counts))[: len(self.counts)]
        self.zeros += int(np.count_nonzero(values == 0))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float, maximum: float) -> float:
        """Upper edge of the bin holding the ``q`` quantile, capped at ``maximum`` (the exact largest value).

        Never below the exact quantile, and at most one bin width (a factor ``10 ** (1 / bins_per_decade)``)
        above it. 0.0 for an empty histogram or when the quantile falls on an exact zero.
        """
        total = self.total
        if total == 0:
            return 0.0
        rank = math.ceil(q * total)
        if rank <= self.zeros:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        if i == 0:
            return float(min(maximum, self.edges[0])) if maximum > 0 else 0.0
        return float(min(maximum, self.edges[i])) if i < len(self.edges) else maximum

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the bin definition and the dense counts (``len(counts) == bins + 2``, see the module docstring)."""
        return {"min_exp": self.min_exp, "max_exp": self.max_exp, "bins_per_decade": self.bins_per_decade,
                "counts": [int(c) for c in self.counts], "zeros": self.zeros}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LogHistogram":
        """The histogram ``to_dict`` wrote; ValueError when the counts do not fit the bin definition."""
        hist = cls(int(data["min_exp"]), int(data["max_exp"]), int(data["bins_per_decade"]))
        counts = np.asarray(data["counts"], np.int64)
        if counts.shape != hist.counts.shape or (counts < 0).any():
            raise ValueError(f"histogram has {counts.size} counts, its bins need {hist.counts.size}")
        hist.counts = counts
        hist.zeros = int(data.get("zeros", 0))
        return hist
