"""Box geometry used by training: IoU / GIoU, distance <-> box conversion (spec §1.7, §2).

All functions are unit-agnostic: boxes, points and distances only need to share one unit (pixels
for the ATSS assigner, stride units inside the losses). Boxes are ``x1, y1, x2, y2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gflv2_deploy.spec import REG_MAX

__all__ = ["bbox_overlaps", "distance2bbox", "bbox2distance"]


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


def distance2bbox(points: Tensor, distances: Tensor, max_shape: tuple[int, int] | None = None) -> Tensor:
    """Boxes from centres and side distances (spec §1.7).

    Args:
        points: N x 2 centres ``(x, y)``.
        distances: N x 4 distances ``(left, top, right, bottom)`` in the same unit as ``points``.
        max_shape: optional ``(height, width)``; x is clamped to [0, width], y to [0, height]
            (test time: the resized, unpadded image shape). Training never clamps.

    Returns:
        N x 4 boxes ``x1 = cx - l, y1 = cy - t, x2 = cx + r, y2 = cy + b``.
    """
    x1 = points[..., 0] - distances[..., 0]
    y1 = points[..., 1] - distances[..., 1]
    x2 = points[..., 0] + distances[..., 2]
    y2 = points[..., 1] + distances[..., 3]
    if max_shape is not None:
        height, width = max_shape
        x1, x2 = x1.clamp(min=0, max=width), x2.clamp(min=0, max=width)
        y1, y2 = y1.clamp(min=0, max=height), y2.clamp(min=0, max=height)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def bbox2distance(points: Tensor, boxes: Tensor, max_dis: float | None = REG_MAX - 0.1) -> Tensor:
    """Side distances from centres to boxes, the DFL regression target (spec §1.7, §2).

    Args:
        points: N x 2 centres ``(x, y)``.
        boxes: N x 4 boxes xyxy, same unit as ``points`` (stride units in the losses).
        max_dis: upper clamp; the default ``REG_MAX - 0.1 = 15.9`` keeps the right DFL bin
            ``floor(t) + 1`` at most ``REG_MAX``. ``None`` disables all clamping.

    Returns:
        N x 4 distances ``(left, top, right, bottom)``, clamped to ``[0, max_dis]``.
    """
    left = points[..., 0] - boxes[..., 0]
    top = points[..., 1] - boxes[..., 1]
    right = boxes[..., 2] - points[..., 0]
    bottom = boxes[..., 3] - points[..., 1]
    distances = torch.stack([left, top, right, bottom], dim=-1)
    if max_dis is not None:
        distances = distances.clamp(min=0, max=max_dis)
    return distances
