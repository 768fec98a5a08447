"""Class-aware non-maximum suppression in plain torch (torchvision is unusable here).

Greedy NMS keeps box j (in descending score order) iff no kept box i < j overlaps it by more than the
threshold. That rule defines ``keep`` recursively, so it is the unique fixed point of
``keep_j = not any_i<j (keep_i and IoU_ij > thr)``; iterating that matrix-vector update from
"keep everything" settles boxes 0..t after t rounds and in practice converges in a handful of
rounds, each one fully vectorised. IoU has no +1 offset (mmcv ``offset=0``, spec §3.2).
"""

from __future__ import annotations

import torch

# Above this many candidates the pairwise IoU matrix is computed per class instead of at once.
_MAX_JOINT_CANDIDATES = 4096


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of K x 4 and M x 4 x1y1x2y2 boxes -> K x M (0 where the union is empty)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float) -> torch.Tensor:
    """Greedy NMS of K x 4 boxes; returns kept indices sorted by descending score (ties: lower index first)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_boxes = boxes[order].float()
    suppresses = torch.triu(box_iou(sorted_boxes, sorted_boxes) > iou_thr, diagonal=1)  # [i, j]: i before j
    keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
    for _ in range(order.numel()):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_thr: float) -> torch.Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other.

    Returns kept indices into the inputs, sorted by descending score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if boxes.shape[0] <= _MAX_JOINT_CANDIDATES:
        # shift each class to its own region of the plane (mmcv batched_nms), then one joint NMS
        offsets = labels.to(boxes.dtype) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_thr)
    kept = [idx[nms(boxes[idx], scores[idx], iou_thr)] for idx in (torch.nonzero(labels == c).squeeze(1) for c in labels.unique())]
    keep = torch.cat(kept)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]


def multiclass_nms(
    boxes: torch.Tensor, scores: torch.Tensor, score_thr: float, iou_thr: float, max_num: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-label, class-aware NMS (spec §3.2 step 5).

    boxes K x 4, scores K x C -> (boxes M x 4, scores M, labels M), M <= max_num, sorted by score.
    Every (box, class) pair with score > score_thr is a candidate, so one box may be kept for several classes.
    """
    box_idx, labels = torch.nonzero(scores > score_thr, as_tuple=True)
    cand_boxes = boxes[box_idx]
    cand_scores = scores[box_idx, labels]
    keep = batched_nms(cand_boxes, cand_scores, labels, iou_thr)
    if max_num > 0:
        keep = keep[:max_num]
    return cand_boxes[keep], cand_scores[keep], labels[keep]
