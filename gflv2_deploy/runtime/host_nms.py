"""Host post-processing in numpy: the reference multi-label class-aware NMS without torch (spec §3.2 step 5).

The same algorithm and the same float32 arithmetic as ``model.nms.multiclass_nms`` (the torch reference),
so deployment installs without torch return the same detections:
- candidates are the (box, class) pairs with score > ``score_thr``, enumerated box-major (``np.nonzero``
  order, as ``torch.nonzero``);
- classes are separated by shifting each class's boxes by ``label * (max - min(min, 0) + 1)`` (mmcv
  ``batched_nms``; computed in float32 exactly as the reference, so borderline IoUs round the same way);
- greedy over candidates sorted by descending score, ties to the lower candidate index (stable sort);
  the best suppresses every remaining candidate whose IoU with it is > ``iou_thr``; it stops after
  ``max_num`` kept boxes. IoU has no +1 and is 0 where the union is empty.
Speed: boxes of different classes never overlap after the shift, so the IoUs that matter are those within
a class. A class with at most ``_MATRIX_LIMIT`` candidates gets its IoU matrix once (same formula and
operand order, so the same float32 values); a larger class gets one vectorised IoU row per kept box
against its own members only (no K x K matrix). The greedy walk then ORs one row per kept box.
"""

from __future__ import annotations

import numpy as np

from gflv2_deploy import spec


def _iou_row(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one 4-vector against M x 4 boxes (float32), same operation order as ``model.nms.box_iou``."""
    area_a = np.maximum(box[2] - box[0], 0) * np.maximum(box[3] - box[1], 0)
    area_b = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / np.maximum(union, np.float32(1e-12))
    return np.where(union > 0, iou, np.float32(0))


_MATRIX_LIMIT = 256  # candidates of one class beyond which its IoU matrix costs more than rows per kept box


def _iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """K x K IoU of float32 boxes, element (i, j) computed exactly as ``_iou_row(boxes[i], boxes[j:j+1])``
    (the same elementwise operations, per coordinate on 2-D arrays: no K x K x 2 temporaries)."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    w = np.minimum(x2[:, None], x2[None, :])
    w -= np.maximum(x1[:, None], x1[None, :])
    np.maximum(w, 0, out=w)
    h = np.minimum(y2[:, None], y2[None, :])
    h -= np.maximum(y1[:, None], y1[None, :])
    np.maximum(h, 0, out=h)
    inter = np.multiply(w, h, out=w)
    union = area[:, None] + area[None, :]
    union -= inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / np.maximum(union, np.float32(1e-12))
    iou[~(union > 0)] = 0
    return iou


def class_aware_nms_indices(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_thr: float,
                            max_num: int = -1) -> np.ndarray:
    """Greedy NMS where only boxes of the same label suppress each other; the same result as the reference's
    greedy NMS (``model.nms.nms``) on class-shifted boxes (``boxes`` must already be shifted, so the float32 values are the reference's)."""
    order = np.argsort(-scores, kind="stable")
    sorted_labels = labels[order]
    sorted_boxes = boxes[order]
    thr = np.float32(iou_thr)
    members: dict[int, np.ndarray] = {}
    matrices: dict[int, np.ndarray] = {}
    local = np.empty(len(order), np.int64)
    for c in np.unique(sorted_labels):
        pos = np.flatnonzero(sorted_labels == c)  # positions in score order
        members[int(c)] = pos
        local[pos] = np.arange(len(pos))
        if len(pos) <= _MATRIX_LIMIT:
            matrices[int(c)] = _iou_matrix(sorted_boxes[pos]) > thr
    suppressed = np.zeros(len(order), bool)
    keep: list[int] = []
    for p in range(len(order)):
        if suppressed[p]:
            continue
        keep.append(int(order[p]))
        if len(keep) == max_num:
            break
        c = int(sorted_labels[p])
        pos = members[c]
        row = matrices[c][local[p]] if c in matrices else _iou_row(sorted_boxes[p], sorted_boxes[pos]) > thr
        suppressed[pos] |= row
    return np.asarray(keep, dtype=np.int64)


def multiclass_nms(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float,
                   max_num: int) -> spec.Detections:
    """boxes K x 4 float32 (x1 y1 x2 y2), scores K x C float32 -> at most ``max_num`` detections sorted by score."""
    box_idx, labels = np.nonzero(scores > np.float32(score_thr))
    if box_idx.size == 0:
        return spec.Detections()
    cand_boxes = boxes[box_idx].astype(np.float32, copy=False)
    cand_scores = scores[box_idx, labels].astype(np.float32, copy=False)
    span = cand_boxes.max() - min(float(cand_boxes.min()), 0.0) + 1  # float32 max, float32 - float -> float32
    shifted = cand_boxes + (labels.astype(np.float32) * np.float32(span))[:, None]
    keep = class_aware_nms_indices(shifted, cand_scores, labels, iou_thr, max_num)
    return spec.Detections(cand_boxes[keep], cand_scores[keep], labels[keep].astype(np.int64))


def pre_nms_detections(boxes: np.ndarray, scores: np.ndarray, img_shape: np.ndarray, score_thr: float, iou_thr: float,
                       max_num: int) -> list[spec.Detections]:
    """Per image: clamp to the unpadded image, then ``multiclass_nms``.

    boxes N x A x 4 (input pixels), scores N x A x C, img_shape N x 2 (height, width) -> N Detections
    in input pixels.
    """
    out = []
    for b, s, (h, w) in zip(boxes, scores, np.asarray(img_shape, np.float32)):
        upper = np.array([w, h, w, h], np.float32)
        clamped = np.minimum(np.maximum(b.astype(np.float32, copy=False), np.float32(0)), upper)
        out.append(multiclass_nms(clamped, s, score_thr, iou_thr, max_num))
    return out
