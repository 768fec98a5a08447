"""Training priors and the ATSS label assigner of GFLV2 (spec §1.7, §1.9).

Everything here is in input pixels: anchors are the ``8 * stride`` squares centred on the prior
points ``(j * s, i * s)`` (no half-stride offset), and ground-truth boxes are xyxy pixels of the
(resized, padded) training image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gflv2_deploy.spec import PRIOR_OFFSET, STRIDES
from gflv2_deploy.train.boxes import bbox_overlaps

__all__ = ["AssignResult", "atss_assign", "make_anchors", "valid_anchor_mask"]

OCTAVE_BASE_SCALE: int = 8  # anchor side = 8 * stride (spec §1.7)
ATSS_TOPK: int = 9  # candidates per level and per GT (spec §1.9)
CENTER_INSIDE_EPS: float = 0.01  # a centre is inside a GT when min(l, t, r, b) > 0.01 (spec §1.9)


def make_anchors(
    featmap_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int] = STRIDES,
    octave_base_scale: int = OCTAVE_BASE_SCALE,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, list[int]]:
    """Prior points and square anchors of every level, concatenated P3..P7.

    Args:
        featmap_sizes: ``(H_l, W_l)`` of each level.
        strides: stride of each level in pixels (same length as ``featmap_sizes``).
        octave_base_scale: anchor side in strides (8 in every GFLV2 config).

    Returns:
        anchors: A x 4 xyxy pixels, ``points -/+ octave_base_scale * s / 2``.
        points: A x 2 ``(x, y) = (j * s, i * s)`` pixels for row i, column j, row-major with x
            fastest inside a level, levels concatenated.
        num_level_anchors: ``H_l * W_l`` per level; they sum to A.
    """
    if len(featmap_sizes) != len(strides):
        raise ValueError(f"{len(featmap_sizes)} feature map sizes but {len(strides)} strides")
    all_points, all_anchors, counts = [], [], []
    for (height, width), stride in zip(featmap_sizes, strides):
        xs = (torch.arange(width, device=device, dtype=dtype) + PRIOR_OFFSET) * stride
        ys = (torch.arange(height, device=device, dtype=dtype) + PRIOR_OFFSET) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # H x W each; flattening makes x fastest
        points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
        half = octave_base_scale * stride / 2.0
        all_points.append(points)
        all_anchors.append(torch.cat([points - half, points + half], dim=-1))
        counts.append(int(height) * int(width))
    return torch.cat(all_anchors), torch.cat(all_points), counts


def valid_anchor_mask(
    featmap_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    pad_shape: tuple[int, int],
    device: torch.device | str | None = None,
) -> Tensor:
    """Which priors lie on one image's own padded area when it shares a batch with larger images.

    mmdet (and hence GFLV2) marks location (i, j) of a level valid when ``i < ceil(pad_h / s)`` and
    ``j < ceil(pad_w / s)``, where ``(pad_h, pad_w)`` is the image's own shape after padding to a
    multiple of 32 (its ``pad_shape``), not the batch tensor's. Invalid priors take part neither in
    assignment nor in any loss. With ``allowed_border = -1`` nothing else is excluded.

    Returns:
        A bool mask, same order as :func:`make_anchors`.
    """
    pad_h, pad_w = pad_shape
    masks = []
    for (height, width), stride in zip(featmap_sizes, strides):
        valid_h = min(math.ceil(pad_h / stride), height)
        valid_w = min(math.ceil(pad_w / stride), width)
        rows = torch.arange(height, device=device) < valid_h
        cols = torch.arange(width, device=device) < valid_w
        masks.append((rows[:, None] & cols[None, :]).reshape(-1))
    return torch.cat(masks)


@dataclass
class AssignResult:
    """ATSS assignment of one image.

    Attributes:
        num_gts: number of ground-truth boxes G.
        assigned_gt_inds: A int64, the **0-based** index of the assigned GT box, or -1 for a
            negative (background). (mmdet stores 1-based indices with 0 for background.)
        labels: A int64, the GT class for positives, ``num_classes`` for background.
        max_overlaps: A float, IoU of each positive with its assigned GT; 0 for negatives
            (mmdet stores -inf there; nothing in GFLV2 reads it).
    """

    num_gts: int
    assigned_gt_inds: Tensor
    labels: Tensor
    max_overlaps: Tensor

    @property
    def pos_mask(self) -> Tensor:
        """A bool, True where the anchor is positive."""
        return self.assigned_gt_inds >= 0


def atss_assign(
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    gt_boxes: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    topk: int = ATSS_TOPK,
) -> AssignResult:
    """Adaptive Training Sample Selection for one image (spec §1.9), vectorised over GTs.

    1. IoU between every anchor box and every GT box.
    2. Euclidean distance between anchor centres and GT centres.
    3. Per level and per GT, the ``min(topk, anchors in level)`` anchors with the nearest centres
       are candidates (``torch.topk`` decides ties).
    4. Per GT, threshold = mean + unbiased std of its candidates' IoUs; a candidate passes when its
       IoU >= threshold (with a single candidate in all the std is NaN and nothing passes, as in
       the reference).
    5. ... and when its centre lies strictly inside the GT: ``min(l, t, r, b) > 0.01``.
    6. An anchor that passes for several GTs goes to the one with the highest IoU (``torch.max``
       decides ties).

    A GT box whose interior contains no anchor centre of any level (e.g. a 4 x 4 px box between the
    points of the stride-8 grid) gets no positive at all; so can a GT whose best candidates all fall
    below its own mean + std.

    Args:
        anchors: A x 4 anchor boxes, xyxy pixels (the ``8 * stride`` squares), levels concatenated.
        num_level_anchors: anchors per level, summing to A.
        gt_boxes: G x 4 xyxy pixels.
        gt_labels: G int64 class indices in ``[0, num_classes)``.
        num_classes: number of classes C; background label is C.
        topk: candidates per level and per GT (9 in GFLV2).

    Returns:
        :class:`AssignResult` with A entries.
    """
    num_anchors, num_gts = anchors.shape[0], gt_boxes.shape[0]
    if sum(num_level_anchors) != num_anchors:
        raise ValueError(
            f"num_level_anchors sums to {sum(num_level_anchors)}, but anchors has {num_anchors} rows"
        )
    device = anchors.device
    assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    labels = torch.full((num_anchors,), num_classes, dtype=torch.long, device=device)
    max_overlaps = anchors.new_zeros((num_anchors,))
    if num_gts == 0 or num_anchors == 0:
        return AssignResult(num_gts, assigned, labels, max_overlaps)

    gt_boxes = gt_boxes.to(anchors.dtype)
    overlaps = bbox_overlaps(anchors, gt_boxes)  # A x G
    anchor_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2.0  # A x 2
    gt_ctr = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2.0  # G x 2
    distances = (anchor_ctr[:, None, :] - gt_ctr[None, :, :]).pow(2).sum(-1).sqrt()  # A x G

    # 3. candidates: K x G anchor indices, K = sum over levels of min(topk, level size)
    candidate_idxs = []
    start = 0
    for count in num_level_anchors:
        if count > 0:
            k = min(topk, count)
            _, idx = distances[start : start + count].topk(k, dim=0, largest=False)
            candidate_idxs.append(idx + start)
        start += count
    cand = torch.cat(candidate_idxs, dim=0)  # K x G
    gt_cols = torch.arange(num_gts, device=device).expand_as(cand)  # K x G

    # 4. adaptive IoU threshold per GT
    cand_overlaps = overlaps[cand, gt_cols]  # K x G
    threshold = cand_overlaps.mean(dim=0) + cand_overlaps.std(dim=0)  # unbiased std
    is_pos = cand_overlaps >= threshold[None, :]

    # 5. the candidate's centre must be strictly inside the GT box
    cx, cy = anchor_ctr[cand, 0], anchor_ctr[cand, 1]  # K x G
    sides = torch.stack(
        [cx - gt_boxes[:, 0], cy - gt_boxes[:, 1], gt_boxes[:, 2] - cx, gt_boxes[:, 3] - cy], dim=-1
    )
    is_pos &= sides.min(dim=-1).values > CENTER_INSIDE_EPS

    # 6. resolve anchors claimed by several GTs by the highest IoU
    claimed = torch.full_like(overlaps, -math.inf)  # A x G
    pos_a, pos_g = cand[is_pos], gt_cols[is_pos]
    claimed[pos_a, pos_g] = overlaps[pos_a, pos_g]
    best_overlap, best_gt = claimed.max(dim=1)
    positive = best_overlap != -math.inf
    assigned[positive] = best_gt[positive]
    labels[positive] = gt_labels.to(device=device, dtype=torch.long)[best_gt[positive]]
    max_overlaps[positive] = best_overlap[positive]
    return AssignResult(num_gts, assigned, labels, max_overlaps)
