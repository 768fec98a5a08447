"""Class-aware non-maximum suppression in plain torch (torchvision is unusable here).

Greedy NMS over a shrinking candidate set: take the highest-scoring remaining box, drop every
remaining box that overlaps it by more than the threshold (one vectorised IoU row), repeat. The
Python loop runs once per *kept* box and stops as soon as ``max_num`` boxes are kept, so the cost is
O(kept x K) with no K x K matrix. Classes are separated by shifting each class to its own region of
the plane (mmcv ``batched_nms``), so one pass handles all classes. IoU has no +1 offset (mmcv
``offset=0``, spec §3.2).
"""

from __future__ import annotations

import torch


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


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float, max_num: int = -1) -> torch.Tensor:
    """Greedy NMS of K x 4 boxes; kept indices sorted by descending score (ties: lower index first).

    With ``max_num > 0`` it stops after that many kept boxes (the same first ``max_num`` as a full run).
    """
    remaining = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes.float()
    keep: list[torch.Tensor] = []
    while remaining.numel() > 0:
        best = remaining[0]
        keep.append(best)
        if len(keep) == max_num:
            break
        rest = remaining[1:]
        iou = box_iou(boxes[best].unsqueeze(0), boxes[rest])[0]
        remaining = rest[iou <= iou_thr]
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return torch.stack(keep)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_thr: float,
                max_num: int = -1) -> torch.Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other.

    Returns kept indices into the inputs, sorted by descending score (at most ``max_num`` if > 0).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    offsets = labels.to(boxes.dtype) * (boxes.max() - min(float(boxes.min()), 0.0) + 1)
    return nms(boxes + offsets[:, None], scores, iou_thr, max_num)


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
    keep = batched_nms(cand_boxes, cand_scores, labels, iou_thr, max_num)
    return cand_boxes[keep], cand_scores[keep], labels[keep]
