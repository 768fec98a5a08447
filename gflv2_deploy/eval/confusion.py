"""Confusion matrix of classes at one IoU, and the images with the most missed objects (numpy only).

Per image, the detections scoring at least ``score_thr`` are matched one-to-one to the ground-truth
objects in two passes, each greedy by descending IoU over pairs with IoU >= ``iou_thr``:
1. same class: a detection of the object's class (a true positive, on the diagonal);
2. any class, among what pass 1 left: a detection of another class on the object (a confusion).
Pass 1 first, so that an object found by its own class is not counted as confused because a detection of
another class happens to overlap it a little more (per-class NMS keeps such pairs). Objects left are
missed (row "background"); detections left are false positives (column "background"), except those
covering a crowd region (``iscrowd=1``, intersection over the detection's area >= ``iou_thr``), which
are ignored, as COCOeval ignores them.

The matrix is ``(C + 1) x (C + 1)`` counts, ``matrix[predicted][true]``, index C = background.
``missed_images`` keeps the ``keep`` images with the most objects not found by their own class (missed
plus confused), with their objects and detections, for a report's picture strip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy.eval.matching import box_iou

__all__ = ["CONFUSION_IOU", "CONFUSION_SCORE_THR", "MISSED_IMAGES", "ImageOutcome", "match_to_ground_truth",
           "most_missed_first_key", "ConfusionAccumulator"]

CONFUSION_IOU = 0.5
CONFUSION_SCORE_THR = 0.3  # the detections a user sees: predict draws from 0.3 too
MISSED_IMAGES = 50

# outcome codes of ground-truth objects and of detections
FOUND, CONFUSED, MISSED = 0, 1, 2
TRUE_POSITIVE, WRONG_CLASS, FALSE_POSITIVE, IGNORED = 0, 1, 2, 3


@dataclass
class ImageOutcome:
    """One image's matching: per object and per kept detection, its outcome code and partner index (-1: none)."""

    gt_status: np.ndarray  # K int8: FOUND, CONFUSED or MISSED
    gt_partner: np.ndarray  # K int64: index into the kept detections, -1
    det_keep: np.ndarray  # D' int64: indices of the detections scoring >= score_thr
    det_status: np.ndarray  # D' int8: TRUE_POSITIVE, WRONG_CLASS, FALSE_POSITIVE or IGNORED


def _greedy(iou: np.ndarray, allowed: np.ndarray, iou_thr: float, gt_free: np.ndarray, det_free: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (gt, det) by descending IoU among ``allowed`` pairs with IoU >= iou_thr; marks them used."""
    rows, cols = np.nonzero(allowed & (iou >= iou_thr) & gt_free[:, None] & det_free[None, :])
    order = np.argsort(-iou[rows, cols], kind="stable")
    pairs = []
    for g, d in zip(rows[order], cols[order]):
        if gt_free[g] and det_free[d]:
            gt_free[g] = det_free[d] = False
            pairs.append((int(g), int(d)))
    return pairs


def match_to_ground_truth(gt_boxes: np.ndarray, gt_labels: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
                          det_scores: np.ndarray, crowd_boxes: np.ndarray | None = None, iou_thr: float = CONFUSION_IOU,
                          score_thr: float = CONFUSION_SCORE_THR) -> ImageOutcome:
    """Match one image's detections to its objects (module docstring). Boxes (x1, y1, x2, y2) pixels: gt K x 4,
    labels K; detections D x 4, labels D, scores D; crowd M x 4."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
    keep = np.flatnonzero(np.asarray(det_scores, np.float64).reshape(-1) >= score_thr)
    boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)[keep]
    labels = np.asarray(det_labels, np.int64).reshape(-1)[keep]
    iou = box_iou(gt_boxes, boxes)
    gt_free = np.ones(len(gt_boxes), bool)
    det_free = np.ones(len(boxes), bool)
    gt_status = np.full(len(gt_boxes), MISSED, np.int8)
    gt_partner = np.full(len(gt_boxes), -1, np.int64)
    det_status = np.full(len(boxes), FALSE_POSITIVE, np.int8)
    same = gt_labels[:, None] == labels[None, :]
    for allowed, gt_code, det_code in ((same, FOUND, TRUE_POSITIVE), (np.ones_like(same), CONFUSED, WRONG_CLASS)):
        for g, d in _greedy(iou, allowed, iou_thr, gt_free, det_free):
            gt_status[g], gt_partner[g], det_status[d] = gt_code, d, det_code
    crowd = np.asarray(crowd_boxes if crowd_boxes is not None else np.zeros((0, 4)), np.float64).reshape(-1, 4)
    if len(crowd) and det_free.any():
        lt = np.maximum(boxes[:, None, :2], crowd[None, :, :2])
        rb = np.minimum(boxes[:, None, 2:], crowd[None, :, 2:])
        inter = np.clip(rb - lt, 0, None).prod(-1)
        area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        covered = (inter / np.maximum(area, 1e-12)[:, None] >= iou_thr).any(axis=1)
        det_status[det_free & covered] = IGNORED
    return ImageOutcome(gt_status, gt_partner, keep, det_status)


def most_missed_first_key(record: Mapping[str, Any]) -> tuple[int, int]:
    """Sort key of ``missed_images`` records: most objects not found by their own class, then most missed."""
    return (-int(record["not_found"]), -int(record["missed"]))


class ConfusionAccumulator:
    """Confusion counts over images and the images with the most objects not found by their own class."""

    def __init__(self, class_names: Sequence[str], iou_thr: float = CONFUSION_IOU, score_thr: float = CONFUSION_SCORE_THR,
                 keep: int = MISSED_IMAGES) -> None:
        self.class_names = list(class_names)
        self.iou_thr, self.score_thr, self.keep = float(iou_thr), float(score_thr), int(keep)
        c = len(self.class_names)
        self.matrix = np.zeros((c + 1, c + 1), np.int64)
        self.images = 0
        self._missed: list[dict[str, Any]] = []

    def update(self, image: Any, gt_boxes: np.ndarray, gt_labels: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
               det_scores: np.ndarray, crowd_boxes: np.ndarray | None = None, path: str | None = None) -> ImageOutcome:
        """Add one image (arrays as in ``match_to_ground_truth``; labels 0..C-1); ``path`` lets a report draw it."""
        out = match_to_ground_truth(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, crowd_boxes,
                                    self.iou_thr, self.score_thr)
        bg = len(self.class_names)
        gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        kept_labels = np.asarray(det_labels, np.int64).reshape(-1)[out.det_keep]
        for g, (status, partner) in enumerate(zip(out.gt_status, out.gt_partner)):
            self.matrix[kept_labels[partner] if status != MISSED else bg, gt_labels[g]] += 1
        for label in kept_labels[out.det_status == FALSE_POSITIVE]:
            self.matrix[label, bg] += 1
        self.images += 1
        not_found = int(np.count_nonzero(out.gt_status != FOUND))
        if self.keep > 0 and not_found:
            kept_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)[out.det_keep]
            kept_scores = np.asarray(det_scores, np.float64).reshape(-1)[out.det_keep]
            self._missed.append({
                "image": image, "path": path, "not_found": not_found,
                "missed": int(np.count_nonzero(out.gt_status == MISSED)), "confused": int(np.count_nonzero(out.gt_status == CONFUSED)),
                "gt": {"boxes": np.round(np.asarray(gt_boxes, np.float64).reshape(-1, 4), 2).tolist(),
                       "labels": gt_labels.tolist(), "status": [int(s) for s in out.gt_status],
                       "predicted": [int(kept_labels[p]) if p >= 0 else -1 for p in out.gt_partner]},
                "detections": {"boxes": np.round(kept_boxes, 2).tolist(), "scores": np.round(kept_scores, 4).tolist(),
                               "labels": kept_labels.tolist(), "status": [int(s) for s in out.det_status]},
            })  # fmt: skip
            if len(self._missed) > 2 * self.keep:
                self._missed = self._sorted()[: self.keep]
        return out

    def _sorted(self) -> list[dict[str, Any]]:
        return sorted(self._missed, key=most_missed_first_key)

    def result(self) -> dict[str, Any]:
        """``{"confusion": {...}, "missed_images": [...]}`` (JSON-ready; module docstring)."""
        return {"confusion": {"classes": self.class_names, "iou_thr": self.iou_thr, "score_thr": self.score_thr,
                              "images": self.images, "matrix": self.matrix.tolist(),
                              "status_codes": {"gt": ["found", "confused", "missed"],
                                               "detections": ["true positive", "wrong class", "false positive", "ignored (crowd)"]}},
                "missed_images": self._sorted()[: self.keep]}
