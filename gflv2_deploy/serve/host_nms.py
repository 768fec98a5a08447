"""Host NMS in numpy for places without torch (the Triton postprocessing model): the twin of ``model/nms.py``.

Same algorithm, step for step and in float32, as ``model.nms.multiclass_nms`` (which the in-process
``Detector`` runs on pre-NMS graphs): candidates are (box, class) pairs with score > score_thr in
row-major order; classes are separated by shifting boxes by label x (extent + 1) (mmcv batched_nms);
greedy NMS takes the best remaining box (ties: lower index first) and drops boxes with IoU > iou_thr,
stopping at ``max_num`` kept. IoU has no +1 offset. Thresholds are compared in float32, as torch
compares a float32 tensor with a Python scalar. ``tests/unit/serve/test_host_nms.py`` checks the twin
against the torch code.
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32


def box_iou_row(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one x1y1x2y2 box (4,) with M x 4 boxes -> (M,) float32 (0 where the union is empty)."""
    area_a = max(box[2] - box[0], _F32(0)) * max(box[3] - box[1], _F32(0))
    area_b = np.maximum(others[:, 2] - others[:, 0], _F32(0)) * np.maximum(others[:, 3] - others[:, 1], _F32(0))
    lt = np.maximum(box[None, :2], others[:, :2])
    rb = np.minimum(box[None, 2:], others[:, 2:])
    wh = np.maximum(rb - lt, _F32(0))
    inter = wh[:, 0] * wh[:, 1]
    union = _F32(area_a) + area_b - inter
    iou = inter / np.maximum(union, _F32(1e-12))
    return np.where(union > 0, iou, _F32(0)).astype(_F32)


def nms_np(boxes: np.ndarray, scores: np.ndarray, iou_thr: float, max_num: int = -1) -> np.ndarray:
    """Greedy NMS of K x 4 float32 boxes; kept indices (int64) by descending score, at most ``max_num`` if > 0."""
    remaining = np.argsort(-scores, kind="stable")
    threshold = _F32(iou_thr)
    keep: list[int] = []
    while remaining.size > 0:
        best = int(remaining[0])
        keep.append(best)
        if len(keep) == max_num:
            break
        rest = remaining[1:]
        remaining = rest[box_iou_row(boxes[best], boxes[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def multiclass_nms_np(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float,
                      max_num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """boxes K x 4, scores K x C (float32) -> (boxes M x 4, scores M, labels M int64), M <= max_num, by score."""
    boxes = np.asarray(boxes, _F32)
    scores = np.asarray(scores, _F32)
    box_idx, labels = np.nonzero(scores > _F32(score_thr))
    cand_boxes = boxes[box_idx]
    cand_scores = scores[box_idx, labels]
    if cand_boxes.size == 0:
        return np.zeros((0, 4), _F32), np.zeros((0,), _F32), np.zeros((0,), np.int64)
    extent = _F32(cand_boxes.max()) - _F32(min(float(cand_boxes.min()), 0.0)) + _F32(1)
    shifted = cand_boxes + (labels.astype(_F32) * extent)[:, None]
    keep = nms_np(shifted, cand_scores, iou_thr, max_num)
    return cand_boxes[keep], cand_scores[keep], labels[keep].astype(np.int64)
