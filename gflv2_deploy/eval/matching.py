"""Detection-level agreement of two backends: IoU matching per image and class, deltas, the worst images.

Numpy only. Matching is never by position: per image and class, reference detections in descending
score each take the unmatched test detection of that class with the highest IoU, if that IoU >=
``iou_thr``. Boxes whose corners agree within ``BOX_ATOL`` px count as IoU 1, because a box clamped to
zero width has IoU 0 even with itself. Within one class a reference set has pairwise IoU <= the NMS
threshold (0.6), so for ``iou_thr`` > ~0.8 a test box can match at most one reference box: greedy is exact.

``DetectionAgreement`` accumulates over images: matched and unmatched counts (overall, per class), the
exact max / mean of |delta score| and |delta box| (largest corner difference, px) over matched pairs,
their distributions as log histograms (``eval/histogram.py``, fixed size whatever the image count), and
the detections of the worst images (``worst_first_key``: most unmatched detections, then largest
|delta score|, then largest |delta box|) so that a report can draw them without running anything again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.eval.histogram import LogHistogram

__all__ = ["BOX_ATOL", "DETAIL_IMAGES", "box_iou", "ImageMatch", "match_detections", "worst_first_key", "DetectionAgreement"]

BOX_ATOL = 1e-2  # px: corners this close count as the same box (degenerate, zero-area boxes)
DETAIL_IMAGES = 50  # worst images whose detections a result keeps for pictures (~200 detections each at most)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of K x 4 and M x 4 (x1, y1, x2, y2) boxes -> K x M float64 (0 where the union is empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class ImageMatch:
    """Matched pairs of one image: indices into the reference and test detections, their IoU and deltas."""

    ref_index: np.ndarray  # M int64
    test_index: np.ndarray  # M int64
    iou: np.ndarray  # M float64 (1.0 for boxes equal within BOX_ATOL)
    score_delta: np.ndarray  # M float64, test - ref
    num_ref: int
    num_test: int
    box_delta: np.ndarray | None = None  # M float64, max over the 4 corners of |test - ref|, px

    @property
    def matched(self) -> int:
        return int(self.ref_index.shape[0])


def match_detections(ref: spec.Detections, test: spec.Detections, iou_thr: float = 0.99,
                     box_atol: float = BOX_ATOL) -> ImageMatch:
    """One-to-one matching of one image's detections, per class, greedy by reference score.

    Each reference detection (descending score) takes the unmatched test detection of the same label
    with the highest IoU, if that IoU >= ``iou_thr`` (corners within ``box_atol`` px count as IoU 1).
    Order of either input does not matter.
    """
    pairs_r: list[int] = []
    pairs_t: list[int] = []
    ious: list[float] = []
    if len(ref) and len(test):
        for label in np.intersect1d(ref.labels, test.labels):
            r_idx = np.flatnonzero(ref.labels == label)
            t_idx = np.flatnonzero(test.labels == label)
            r_idx = r_idx[np.argsort(-ref.scores[r_idx], kind="stable")]
            iou = box_iou(ref.boxes[r_idx], test.boxes[t_idx])
            same = np.abs(ref.boxes[r_idx][:, None, :].astype(np.float64) - test.boxes[t_idx][None, :, :]).max(-1) <= box_atol
            iou = np.where(same, 1.0, iou)
            used = np.zeros(len(t_idx), bool)
            for row, r in enumerate(r_idx):
                cand = np.where(used, -1.0, iou[row])
                j = int(np.argmax(cand))
                if cand[j] >= iou_thr:
                    used[j] = True
                    pairs_r.append(int(r))
                    pairs_t.append(int(t_idx[j]))
                    ious.append(float(cand[j]))
    ri = np.asarray(pairs_r, np.int64)
    ti = np.asarray(pairs_t, np.int64)
    if len(ri):
        delta = test.scores[ti].astype(np.float64) - ref.scores[ri].astype(np.float64)
        box_delta = np.abs(test.boxes[ti].astype(np.float64) - ref.boxes[ri].astype(np.float64)).max(axis=1)
    else:
        delta, box_delta = np.zeros(0), np.zeros(0)
    return ImageMatch(ri, ti, np.asarray(ious, np.float64), delta, len(ref), len(test), box_delta)


def worst_first_key(record: dict[str, Any]) -> tuple[float, float, float]:
    """Sort key putting the worst image first: most unmatched detections (both sides), then the largest
    |delta score|, then the largest |delta box|. ``record`` holds ``ref``, ``test``, ``matched``,
    ``max_score_delta`` and (optionally) ``max_box_delta``."""
    unmatched = (record["ref"] - record["matched"]) + (record["test"] - record["matched"])
    return (-unmatched, -record["max_score_delta"], -record.get("max_box_delta", 0.0))


def _differs(record: dict[str, Any]) -> bool:
    return record["matched"] < max(record["ref"], record["test"]) or record["max_score_delta"] > 0 \
        or record.get("max_box_delta", 0.0) > 0


def _side(dets: spec.Detections, matched_index: np.ndarray) -> dict[str, list]:
    """A detection set as JSON lists for drawing: boxes rounded to 0.01 px, scores to 1e-5, and a matched flag."""
    matched = np.zeros(len(dets), bool)
    matched[matched_index] = True
    return {"boxes": np.round(np.asarray(dets.boxes, np.float64).reshape(-1, 4), 2).tolist(),
            "scores": np.round(np.asarray(dets.scores, np.float64), 5).tolist(),
            "labels": [int(v) for v in dets.labels], "matched": matched.tolist()}


class DetectionAgreement:
    """Detection-level agreement accumulated over images (see ``match_detections`` and the module docstring).

    keep_details: how many of the worst images keep their detections in ``result()["worst_details"]``.
    """

    def __init__(self, iou_thr: float, max_score_delta: float, class_names: Sequence[str] = (),
                 keep_details: int = DETAIL_IMAGES) -> None:
        self.iou_thr = float(iou_thr)
        self.max_score_delta = float(max_score_delta)
        self.class_names = tuple(class_names)
        self.keep_details = int(keep_details)
        self.images = 0
        self.num_ref = self.num_test = self.matched = self.within_score = 0
        self.deltas: list[np.ndarray] = []
        self.box_deltas: list[np.ndarray] = []
        self.score_hist = LogHistogram()
        self.box_hist = LogHistogram()
        self.min_iou = 1.0
        self.per_class: dict[int, list[int]] = {}  # label -> [ref, test, matched]
        self.per_image: list[dict[str, Any]] = []
        self._details: list[dict[str, Any]] = []

    def update(self, image: Any, ref: spec.Detections, test: spec.Detections, path: str | None = None) -> ImageMatch:
        """Match one image's detections and add them; ``path`` (the picture's file) lets a report draw it."""
        m = match_detections(ref, test, self.iou_thr)
        self.images += 1
        self.num_ref += m.num_ref
        self.num_test += m.num_test
        self.matched += m.matched
        abs_delta = np.abs(m.score_delta)
        box_delta = m.box_delta if m.box_delta is not None else np.zeros(0)
        self.within_score += int(np.count_nonzero(abs_delta <= self.max_score_delta))
        self.deltas.append(abs_delta)
        self.box_deltas.append(box_delta)
        self.score_hist.add(abs_delta)
        self.box_hist.add(box_delta[np.isfinite(box_delta)])
        if m.matched:
            self.min_iou = min(self.min_iou, float(m.iou.min()))
        for labels, col in ((ref.labels, 0), (test.labels, 1), (ref.labels[m.ref_index], 2)):
            for label, count in zip(*np.unique(labels, return_counts=True)):
                self.per_class.setdefault(int(label), [0, 0, 0])[col] += int(count)
        record = {"image": image, "ref": m.num_ref, "test": m.num_test, "matched": m.matched,
                  "max_score_delta": float(abs_delta.max(initial=0.0)), "max_box_delta": float(box_delta.max(initial=0.0))}
        self.per_image.append(record)
        if self.keep_details > 0 and _differs(record):
            self._details.append({**record, "path": path, "ref_detections": _side(ref, m.ref_index),
                                  "test_detections": _side(test, m.test_index)})
            if len(self._details) > 2 * self.keep_details:  # prune now and then: memory stays bounded
                self._details = sorted(self._details, key=worst_first_key)[: self.keep_details]
        return m

    def _name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def result(self, worst: int = 5) -> dict[str, Any]:
        """JSON-ready summary: counts, fractions, delta statistics and histograms, per class, worst images."""
        deltas = np.concatenate(self.deltas) if self.deltas else np.zeros(0)
        box_deltas = np.concatenate(self.box_deltas) if self.box_deltas else np.zeros(0)
        frac = self.matched / self.num_ref if self.num_ref else (1.0 if self.num_test == 0 else 0.0)
        bad = sorted(self.per_image, key=worst_first_key)
        return {
            "images": self.images, "iou_thr": self.iou_thr, "num_ref": self.num_ref, "num_test": self.num_test,
            "matched": self.matched, "matched_fraction": frac,
            "matched_within_score_fraction": self.within_score / self.num_ref if self.num_ref else frac,
            "unmatched_ref": self.num_ref - self.matched, "unmatched_test": self.num_test - self.matched,
            "score_delta_max": float(deltas.max(initial=0.0)), "score_delta_mean": float(deltas.mean()) if deltas.size else 0.0,
            "box_delta_max": float(box_deltas.max(initial=0.0)),
            "box_delta_mean": float(box_deltas.mean()) if box_deltas.size else 0.0,
            "score_delta_hist": self.score_hist.to_dict(), "box_delta_hist": self.box_hist.to_dict(),
            "min_matched_iou": self.min_iou if self.matched else None,
            "class_names": list(self.class_names),
            "per_class": {self._name(k): {"ref": v[0], "test": v[1], "matched": v[2]} for k, v in sorted(self.per_class.items())},
            "worst_images": [r for r in bad[:worst] if _differs(r)],
            "worst_details": sorted(self._details, key=worst_first_key)[: self.keep_details],
        }  # fmt: skip
