"""Per-class AP and precision-recall curves read from an accumulated pycocotools ``COCOeval``.

Nothing is recomputed: after ``accumulate()``, ``evaluator.eval["precision"]`` holds the interpolated
precision at 101 recall points for every IoU threshold (T = 10: 0.50, 0.55 .. 0.95), class (K), area
range (A: all, small, medium, large) and detection limit (M: 1, 10, 100); -1 marks a class without ground
truth in that area range. A class's AP is the mean of its valid entries over IoU and recall (area "all",
100 detections), exactly how ``summarize()`` averages over classes for the headline AP, so the mean of
the per-class APs (over classes with ground truth) equals ``stats[0]``. Undefined values stay -1.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["PR_IOUS", "per_class_ap", "pr_curves"]

PR_IOUS: tuple[float, ...] = (0.5, 0.75)  # the IoU thresholds whose precision-recall curves a result keeps
_AREAS = {"": 0, "s": 1, "m": 2, "l": 3}  # COCOeval.params.areaRngLbl order: all, small, medium, large


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _iou_index(evaluator: Any, iou: float) -> int:
    thresholds = np.asarray(evaluator.params.iouThrs)
    index = int(np.argmin(np.abs(thresholds - iou)))
    if abs(thresholds[index] - iou) > 1e-6:
        raise ValueError(f"IoU {iou} is not one of the evaluator's thresholds {thresholds.tolist()}")
    return index


def per_class_ap(evaluator: Any, names: Sequence[str], num_gt: Sequence[int], num_det: Sequence[int]) -> list[dict[str, Any]]:
    """One row per category of ``evaluator.params.catIds`` (ascending id): AP, AP50, AP75, APs, APm, APl.

    names / num_gt / num_det: per category, in the same order (ground-truth objects that are not crowd,
    and detections, on the evaluated images). Values are in 0..1, -1 where undefined (no ground truth).
    """
    precision = np.asarray(evaluator.eval["precision"])  # T x R x K x A x M
    i50, i75 = _iou_index(evaluator, 0.5), _iou_index(evaluator, 0.75)
    rows = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, :, -1]  # T x R x A at 100 detections
        row: dict[str, Any] = {"class": names[k], "category_id": int(cat_id), "gt": int(num_gt[k]), "detections": int(num_det[k]),
                               "AP": _mean_valid(p[:, :, 0]), "AP50": _mean_valid(p[i50, :, 0]), "AP75": _mean_valid(p[i75, :, 0])}
        for suffix, area in _AREAS.items():
            if suffix:
                row[f"AP{suffix}"] = _mean_valid(p[:, :, area])
        rows.append(row)
    return rows


def pr_curves(evaluator: Any, ious: Sequence[float] = PR_IOUS) -> dict[str, Any]:
    """Precision at COCO's 101 recall points (area all, 100 detections) per IoU in ``ious``.

    Returns ``{"recall": [101], "curves": [{"iou", "mean": [101], "per_class": [K x 101]}]}``: ``per_class``
    follows ``evaluator.params.catIds``; ``mean`` averages the classes with ground truth (rows of -1 are
    left out); values rounded to 1e-4.
    """
    precision = np.asarray(evaluator.eval["precision"])
    curves = []
    for iou in ious:
        p = precision[_iou_index(evaluator, iou), :, :, 0, -1].T  # K x R
        has_gt = (p > -1).any(axis=1)
        mean = p[has_gt].mean(axis=0) if has_gt.any() else np.full(p.shape[1], -1.0)
        curves.append({"iou": float(iou), "mean": np.round(mean, 4).tolist(), "per_class": np.round(p, 4).tolist()})
    return {"recall": np.round(np.asarray(evaluator.params.recThrs, np.float64), 4).tolist(), "curves": curves}
