"""Prior points and distance-to-box decoding (spec §1.7).

The point of location (row i, col j) on a level of stride s is (x, y) = (j*s, i*s): the top-left
corner of the cell, NOT (j + 0.5)*s (spec §7.6: copying NanoDet's offset shifts every box by half a
stride). Points are built from the feature map's own shape with arange, so an exported graph builds
them from Shape/Range ops and keeps dynamic input sizes.
"""

from __future__ import annotations

import torch

from gflv2_deploy.model.distribution import integral, side_probabilities


def level_points(feat: torch.Tensor, stride: int) -> torch.Tensor:
    """Points of one level, row-major with x fastest: feat N x C x H x W -> (H*W) x 2 (x, y) pixels, fp32."""
    h, w = feat.shape[-2:]
    xs = torch.arange(w, device=feat.device, dtype=torch.float32) * stride
    ys = torch.arange(h, device=feat.device, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def distance2bbox(points: torch.Tensor, distances: torch.Tensor, max_shape: torch.Tensor | None = None) -> torch.Tensor:
    """Decode (l, t, r, b) distances into (x1, y1, x2, y2) boxes.

    points: ... x 2 (x, y); distances: ... x 4 (same units as points). ``max_shape``, if given, is a
    tensor broadcastable to ... x 2 holding (height, width) of the resized, unpadded image; every
    coordinate is clamped to [0, width] / [0, height] (spec §1.7, §7.7).
    """
    x1 = points[..., 0] - distances[..., 0]
    y1 = points[..., 1] - distances[..., 1]
    x2 = points[..., 0] + distances[..., 2]
    y2 = points[..., 1] + distances[..., 3]
    boxes = torch.stack([x1, y1, x2, y2], dim=-1)
    return boxes if max_shape is None else clip_boxes(boxes, max_shape)


def clip_boxes(boxes: torch.Tensor, img_shape: torch.Tensor) -> torch.Tensor:
    """Clamp ... x 4 boxes to [0, width] x [0, height]; ``img_shape`` broadcasts to ... x 2 (height, width).

    Tensor-valued bounds (min then max), so a dynamic graph takes the image size as an input (spec §7.7).
    """
    hw = img_shape.to(boxes.dtype)
    upper = torch.stack([hw[..., 1], hw[..., 0], hw[..., 1], hw[..., 0]], dim=-1)
    return torch.minimum(boxes.clamp(min=0), upper)


def bbox2distance(points: torch.Tensor, boxes: torch.Tensor, max_dis: float | None = None, eps: float = 0.01) -> torch.Tensor:
    """Inverse of ``distance2bbox``: distances (l, t, r, b) from points to box sides, clamped to [0, max_dis - eps]."""
    d = torch.stack(
        [points[..., 0] - boxes[..., 0], points[..., 1] - boxes[..., 1], boxes[..., 2] - points[..., 0], boxes[..., 3] - points[..., 1]],
        dim=-1,
    )
    if max_dis is not None:
        d = d.clamp(min=0, max=max_dis - eps)
    return d


def decode_level(cls_score: torch.Tensor, bbox_pred: torch.Tensor, stride: int, reg_max: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten one level's head outputs and decode distances.

    cls_score N x C x H x W, bbox_pred N x 4(reg_max+1) x H x W ->
    (points (H*W) x 2 pixels, distances N x (H*W) x 4 pixels, scores N x (H*W) x C).
    The integral runs in fp32 (spec §7.10).
    """
    n, c = cls_score.shape[:2]
    dist = integral(side_probabilities(bbox_pred, reg_max)) * stride  # N x 4 x H x W
    dist = dist.permute(0, 2, 3, 1).reshape(n, -1, 4)
    scores = cls_score.permute(0, 2, 3, 1).reshape(n, -1, c)
    return level_points(cls_score, stride), dist, scores


def select_top_points(boxes: torch.Tensor, scores: torch.Tensor, k: int, pad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the ``k`` points of one level with the highest max-class score (``nms_pre``, spec §3.2).

    boxes N x P x 4, scores N x P x C -> boxes N x k x 4, scores N x k x C, sorted by descending max score.
    ``pad``: append k rows of zeros first, so a level with fewer than k points still yields exactly k rows
    (TopK with a constant K, as TensorRT needs; padded rows have score 0 and never pass ``score > thr``).
    Export sets it for dynamic input sizes; a static graph pads only the levels smaller than k.
    """
    if pad or scores.shape[1] < k:
        boxes = torch.nn.functional.pad(boxes, (0, 0, 0, k))
        scores = torch.nn.functional.pad(scores, (0, 0, 0, k))
    idx = scores.max(dim=2).values.topk(k, dim=1).indices.unsqueeze(-1)  # N x k x 1
    return boxes.gather(1, idx.expand(-1, -1, 4)), scores.gather(1, idx.expand(-1, -1, scores.shape[2]))


def decode_outputs(
    cls_scores: list[torch.Tensor],
    bbox_preds: list[torch.Tensor],
    strides: tuple[int, ...],
    reg_max: int,
    img_shape: torch.Tensor | None = None,
    nms_pre: int = 0,
    pad_levels: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All levels decoded and concatenated (P3..P7): boxes N x A x 4 (input pixels), scores N x A x C.

    ``img_shape`` (N x 2, height/width of the unpadded resized images) clamps boxes when given.
    ``nms_pre`` > 0 keeps the top ``nms_pre`` points of every level (``select_top_points``), so
    A = len(strides) * nms_pre; 0 keeps every point (A = ``spec.num_points(H, W)``).
    This is the graph the exporter folds into ONNX and what the reference post-processing consumes.
    """
    boxes, scores = [], []
    for cls_score, bbox_pred, stride in zip(cls_scores, bbox_preds, strides):
        points, dist, sc = decode_level(cls_score, bbox_pred, stride, reg_max)
        level_boxes = distance2bbox(points.unsqueeze(0), dist)
        if nms_pre > 0:
            level_boxes, sc = select_top_points(level_boxes, sc, nms_pre, pad_levels)
        boxes.append(level_boxes)
        scores.append(sc)
    all_boxes = torch.cat(boxes, dim=1)
    if img_shape is not None:
        all_boxes = clip_boxes(all_boxes, img_shape[:, None, :])
    return all_boxes, torch.cat(scores, dim=1).float()
