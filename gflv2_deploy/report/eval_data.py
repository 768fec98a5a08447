"""What the eval section shows, selected from an eval result: per-class table, PR curves, sizes, confusion, misses.

Plain data for ``plots``, ``pictures`` and ``sections``. An AP of -1 (pycocotools: no ground truth to
measure) is undefined and becomes None here, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy.eval.coco_eval import STAT_NAMES
from gflv2_deploy.eval.confusion import most_missed_first_key

__all__ = ["CLASS_COLUMNS", "class_table", "stat", "size_rows", "PrSeries", "pr_series", "ConfusionView",
           "confusion_view", "select_missed"]

CLASS_COLUMNS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _defined(value: Any) -> float | None:
    return None if value is None or value < 0 else float(value)


def stat(metrics: Mapping[str, Any], name: str) -> float | None:
    """The COCO statistic ``name`` (AP, AP50, ... ARl) of an eval result, None when undefined (-1)."""
    names = list(metrics.get("stat_names") or STAT_NAMES)
    return _defined(metrics["stats"][names.index(name)]) if name in names else None


def class_table(per_class: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-class rows, worst AP first; classes without ground truth (AP undefined) last, by name.

    Each row: class, gt, detections and the ``CLASS_COLUMNS`` values (0..1, None when undefined).
    """
    rows = [{"class": str(r["class"]), "gt": int(r.get("gt", 0)), "detections": int(r.get("detections", 0)),
             **{c: _defined(r.get(c)) for c in CLASS_COLUMNS}} for r in per_class]
    return sorted(rows, key=lambda r: (r["AP"] is None, r["AP"] if r["AP"] is not None else 0.0, r["class"]))


def size_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(object size, AP, AR@100) for small (< 32^2 px), medium and large (>= 96^2 px) objects."""
    return [(size, stat(metrics, f"AP{s}"), stat(metrics, f"AR{s}"))
            for size, s in (("small", "s"), ("medium", "m"), ("large", "l"))]


@dataclass(frozen=True)
class PrSeries:
    """Precision-recall curves at one IoU: the class mean, every class, and the names of the worst classes."""

    iou: float
    recall: np.ndarray  # R
    mean: np.ndarray  # R
    per_class: np.ndarray  # K x R (-1 rows: no ground truth)
    classes: list[str]
    highlight: list[int]  # indices into per_class of the worst classes, worst first


def pr_series(metrics: Mapping[str, Any], highlight: int = 5) -> list[PrSeries]:
    """One ``PrSeries`` per IoU of ``pr_curves``, highlighting the ``highlight`` classes with the lowest AP."""
    curves = metrics.get("pr_curves")
    if not curves:
        return []
    names = [str(r["class"]) for r in metrics.get("per_class", [])]
    ap = np.array([r["AP"] if r.get("AP", -1) >= 0 else np.inf for r in metrics.get("per_class", [])])
    worst = [int(i) for i in np.argsort(ap, kind="stable") if np.isfinite(ap[i])][:highlight]
    out = []
    for curve in curves["curves"]:
        per_class = np.asarray(curve["per_class"], np.float64).reshape(-1, len(curves["recall"]))
        out.append(PrSeries(float(curve["iou"]), np.asarray(curves["recall"], np.float64), np.asarray(curve["mean"], np.float64),
                            per_class, names or [str(i) for i in range(len(per_class))], worst))
    return out


@dataclass(frozen=True)
class ConfusionView:
    """The confusion matrix as shown: labels of the rows (predicted) and columns (true), counts and fractions.

    fractions[:, j] = counts[:, j] / (column j's total over ALL classes, shown or not): the share of true
    class j's objects predicted as each row (the background row: missed); for the background column,
    the share of false positives falling on each predicted class.
    """

    labels: list[str]
    counts: np.ndarray  # (S + 1) x (S + 1) or (S + 2) x (S + 2) with the "other classes" row/column
    fractions: np.ndarray


def confusion_view(confusion: Mapping[str, Any], max_classes: int = 20) -> ConfusionView:
    """The matrix with at most ``max_classes`` classes: all of them when they fit, else those with the most
    confusions (off-diagonal counts in their row and column, background included), in class order, the
    rest summed into an "other classes" row and column. Background stays last."""
    matrix = np.asarray(confusion["matrix"], np.int64)
    names = [str(n) for n in confusion["classes"]]
    c = len(names)
    totals = matrix.sum(axis=0).astype(np.float64)
    if c <= max_classes:
        keep = list(range(c))
    else:
        off = matrix[:c, :c].copy()
        np.fill_diagonal(off, 0)
        weight = off.sum(axis=0) + off.sum(axis=1) + matrix[c, :c] + matrix[:c, c]
        keep = sorted(int(i) for i in np.argsort(-weight, kind="stable")[:max_classes])
    rest = [i for i in range(c) if i not in keep]
    groups = [[i] for i in keep] + ([rest] if rest else []) + [[c]]
    labels = [names[i] for i in keep] + ([f"other {len(rest)} classes"] if rest else []) + ["background"]
    counts = np.array([[matrix[np.ix_(rows, cols)].sum() for cols in groups] for rows in groups], np.int64)
    col_totals = np.array([totals[cols].sum() for cols in groups])
    fractions = np.divide(counts, col_totals[None, :], out=np.zeros(counts.shape), where=col_totals[None, :] > 0)
    return ConfusionView(labels, counts, fractions)


def select_missed(missed_images: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The ``n`` images with the most objects not found by their own class (missed + confused), then most missed."""
    return sorted(missed_images, key=most_missed_first_key)[: max(n, 0)]
