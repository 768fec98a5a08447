"""Box overlaps used by training: IoU / GIoU (spec §1.9, §2).

Unit-agnostic: boxes only need to share one unit (pixels for the ATSS assigner, stride units inside
the losses). Boxes are ``x1, y1, x2, y2``. Distance <-> box conversion lives in ``model.points``
(``distance2bbox`` / ``bbox2distance``), shared by training and inference.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bbox_overlaps"]


def _areas(boxes: Tensor) -> Tensor:
    # No "+1" in the widths: mmdet 2.x (which GFLV2 forks) measures continuous coordinates.
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def bbox_overlaps(
    a: Tensor, b: Tensor, mode: str = "iou", aligned: bool = False, eps: float = 1e-6
) -> Tensor:
    """IoU or GIoU between boxes ``a`` (N x 4) and ``b`` (M x 4), xyxy in any common unit.

    Args:
        a: N x 4 boxes.
        b: M x 4 boxes (M == N when ``aligned``).
        mode: ``"iou"`` or ``"giou"``.
        aligned: pair ``a[i]`` with ``b[i]`` and return N values instead of the N x M matrix.
        eps: lower bound on the union and on the enclosing area (avoids 0 / 0 for degenerate boxes).

    Returns:
        N x M (or N when ``aligned``) tensor, same dtype as ``a``. IoU lies in [0, 1],
        GIoU in [-1, 1]. Degenerate (zero-area) boxes give IoU 0.
    """
    if mode not in ("iou", "giou"):
        raise ValueError(f"mode must be 'iou' or 'giou', got {mode!r}")
    if aligned and a.shape[0] != b.shape[0]:
        raise ValueError(f"aligned overlaps need as many boxes in a ({a.shape[0]}) as in b ({b.shape[0]})")
    if not aligned:
        a, b = a[:, None, :], b[None, :, :]  # N x 1 x 4 against 1 x M x 4 -> N x M
    area_a, area_b = _areas(a), _areas(b)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = (area_a + area_b - overlap).clamp(min=eps)
    ious = overlap / union
    if mode == "iou":
        return ious
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return ious - (enclose - union) / enclose
