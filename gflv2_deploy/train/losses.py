"""GFLV2 losses: Quality Focal Loss, Distribution Focal Loss, GIoU, and the head criterion (spec §2).

The criterion :func:`gflv2_loss` consumes the raw head outputs (joint scores already in [0, 1] and
the 68-channel distribution logits), builds the priors, runs ATSS per image and returns the three
loss terms. Box geometry inside the box losses is in **stride units** of each prior's level
(centres / s, GT boxes / s, distances straight from the integral), as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from gflv2_deploy.spec import REG_MAX, STRIDES
from gflv2_deploy.train.assigner import ATSS_TOPK, atss_assign, make_anchors, valid_anchor_mask
from gflv2_deploy.model.points import bbox2distance, distance2bbox
from gflv2_deploy.train.boxes import bbox_overlaps

__all__ = [
    "quality_focal_loss",
    "distribution_focal_loss",
    "giou_loss",
    "reduce_mean",
    "gflv2_loss",
]

QFL_BETA: float = 2.0
QFL_WEIGHT: float = 1.0
GIOU_WEIGHT: float = 2.0
DFL_WEIGHT: float = 0.25


def quality_focal_loss(pred_probs: Tensor, labels: Tensor, scores: Tensor, beta: float = QFL_BETA) -> Tensor:
    """Quality Focal Loss on probabilities (GFLV2 form, spec §2), unreduced.

    Every entry is treated as negative, ``BCE(p, 0) * p**beta``; the entry at a positive row's own
    class becomes ``BCE(p, y) * |y - p|**beta`` with ``y`` its IoU target. BCE is PyTorch's
    ``binary_cross_entropy`` (log clamped at -100). Computed in float32 with autocast disabled,
    because BCE on probabilities is unsafe in half precision.

    Args:
        pred_probs: N x C joint scores in [0, 1].
        labels: N int64, class in ``[0, C)`` for positives, ``C`` (or anything outside) for background.
        scores: N float IoU targets in [0, 1] (read only at positives).
        beta: focusing exponent.

    Returns:
        N float32 losses, summed over the C channels.
    """
    with torch.autocast(device_type=pred_probs.device.type, enabled=False):
        probs = pred_probs.float()
        loss = F.binary_cross_entropy(probs, torch.zeros_like(probs), reduction="none") * probs.pow(beta)
        num_classes = probs.shape[1]
        pos = ((labels >= 0) & (labels < num_classes)).nonzero().squeeze(1)
        pos_labels = labels[pos].long()
        pos_probs = probs[pos, pos_labels]
        pos_scores = scores[pos].float()
        pos_loss = F.binary_cross_entropy(pos_probs, pos_scores, reduction="none") * (
            pos_scores - pos_probs
        ).abs().pow(beta)
        loss = loss.index_put((pos, pos_labels), pos_loss)
        return loss.sum(dim=1)


def distribution_focal_loss(pred_logits: Tensor, target: Tensor) -> Tensor:
    """Distribution Focal Loss (spec §2), unreduced.

    With ``l = floor(t)`` and ``r = l + 1``: ``(r - t) * CE(logits, l) + (t - l) * CE(logits, r)``,
    i.e. the cross-entropy against the two-bin distribution whose expectation is ``t``.

    Args:
        pred_logits: N x (reg_max + 1) bin logits of one side each (before softmax).
        target: N float distances in stride units, in ``[0, reg_max)`` (``bbox2distance`` clamps
            to 15.9 so that ``r`` stays a valid bin).

    Returns:
        N losses.
    """
    target = target.to(pred_logits.dtype)
    left = target.long()
    right = left + 1
    weight_left = right.to(target.dtype) - target
    weight_right = target - left.to(target.dtype)
    return (
        F.cross_entropy(pred_logits, left, reduction="none") * weight_left
        + F.cross_entropy(pred_logits, right, reduction="none") * weight_right
    )


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of aligned boxes (spec §2), unreduced; range [0, 2].

    Args:
        pred: N x 4 xyxy boxes.
        target: N x 4 xyxy boxes, same unit.
        eps: lower bound on union and enclosing area.

    Returns:
        N losses.
    """
    return 1.0 - bbox_overlaps(pred, target, mode="giou", aligned=True, eps=eps)


def reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of ``tensor`` over all processes when ``torch.distributed`` is initialised, else itself."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return tensor


def _flatten_levels(maps: Sequence[Tensor]) -> Tensor:
    """List of N x K x H_l x W_l -> N x A x K, row-major per level, levels concatenated."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


def _check_inputs(
    cls_scores: Sequence[Tensor],
    bbox_preds: Sequence[Tensor],
    gt_boxes_list: Sequence[Tensor],
    gt_labels_list: Sequence[Tensor],
    num_classes: int,
    strides: Sequence[int],
    reg_max: int,
) -> None:
    if not (len(cls_scores) == len(bbox_preds) == len(strides)):
        raise ValueError(
            f"need one cls_score and one bbox_pred per stride: got {len(cls_scores)}, "
            f"{len(bbox_preds)} for {len(strides)} strides"
        )
    batch = cls_scores[0].shape[0]
    for level, (cls, box) in enumerate(zip(cls_scores, bbox_preds)):
        if cls.dim() != 4 or cls.shape[1] != num_classes:
            raise ValueError(f"cls_scores[{level}] must be N x {num_classes} x H x W, got {tuple(cls.shape)}")
        if box.dim() != 4 or box.shape[1] != 4 * (reg_max + 1):
            raise ValueError(
                f"bbox_preds[{level}] must be N x {4 * (reg_max + 1)} x H x W, got {tuple(box.shape)}"
            )
        if cls.shape[0] != batch or box.shape[0] != batch or cls.shape[2:] != box.shape[2:]:
            raise ValueError(f"level {level}: cls {tuple(cls.shape)} and bbox {tuple(box.shape)} disagree")
    if len(gt_boxes_list) != batch or len(gt_labels_list) != batch:
        raise ValueError(
            f"{len(gt_boxes_list)} box sets and {len(gt_labels_list)} label sets for {batch} images"
        )
    for i, (boxes, labels) in enumerate(zip(gt_boxes_list, gt_labels_list)):
        if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
            raise ValueError(
                f"image {i}: gt boxes must be G x 4 and labels G, "
                f"got {tuple(boxes.shape)} and {tuple(labels.shape)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"image {i}: gt labels must lie in [0, {num_classes}), got {labels.tolist()}")


def gflv2_loss(
    cls_scores: Sequence[Tensor],
    bbox_preds: Sequence[Tensor],
    gt_boxes_list: Sequence[Tensor],
    gt_labels_list: Sequence[Tensor],
    num_classes: int,
    strides: Sequence[int] = STRIDES,
    reg_max: int = REG_MAX,
    pad_shapes: Sequence[tuple[int, int]] | None = None,
    *,
    topk: int = ATSS_TOPK,
    beta: float = QFL_BETA,
    qfl_weight: float = QFL_WEIGHT,
    giou_weight: float = GIOU_WEIGHT,
    dfl_weight: float = DFL_WEIGHT,
    world_size_avg: Callable[[Tensor], Tensor] = reduce_mean,
) -> dict[str, Tensor]:
    """The GFLV2 head criterion (spec §1.9 and §2) on raw head outputs.

    Args:
        cls_scores: per level, N x C x H_l x W_l joint scores ``sigmoid(cls) * quality`` in [0, 1].
        bbox_preds: per level, N x 4*(reg_max+1) x H_l x W_l distribution logits, channel
            ``side * (reg_max + 1) + bin`` with sides left, top, right, bottom (after the Scale).
        gt_boxes_list: per image, G_i x 4 xyxy boxes in input pixels.
        gt_labels_list: per image, G_i int64 classes in ``[0, C)``.
        num_classes: C (80 for COCO; the 81-channel quirk of the official code is not reproduced).
        strides: pixel stride of each level.
        reg_max: largest bin value (16).
        pad_shapes: per image, its own ``(height, width)`` after padding to a multiple of 32, when
            images of different sizes share a batch; priors beyond it are ignored (see
            :func:`valid_anchor_mask`). ``None``: every prior is valid.
        topk: ATSS candidates per level and GT.
        beta: QFL exponent.
        qfl_weight, giou_weight, dfl_weight: loss weights (1.0, 2.0, 0.25).
        world_size_avg: mean over processes of a tensor; defaults to an all-reduce mean when
            ``torch.distributed`` is initialised and to the identity otherwise.

    Returns:
        ``{"loss_qfl", "loss_bbox", "loss_dfl"}`` scalar tensors (summed over levels):

        - ``loss_qfl`` = qfl_weight * sum over valid priors and channels of QFL / num_total_samples,
          num_total_samples = mean over processes of sum_i max(#pos_i, 1), clamped >= 1;
        - ``loss_bbox`` = giou_weight * sum over positives of ``w * (1 - GIoU)`` / avg_factor;
        - ``loss_dfl`` = dfl_weight * sum over positives and sides of ``w * DFL`` / 4 / avg_factor;

        with ``w`` the max over classes of the detached joint score of a positive and avg_factor the
        mean over processes of sum ``w``. The reference divides by that sum unguarded; here a
        non-positive avg_factor (no positives in any process) is replaced by 1, which changes
        nothing else because both numerators are then exactly 0 (``0 * sum(bbox_preds)``, which
        keeps every input in the graph).
    """
    _check_inputs(cls_scores, bbox_preds, gt_boxes_list, gt_labels_list, num_classes, strides, reg_max)
    device = cls_scores[0].device
    batch = cls_scores[0].shape[0]
    num_bins = reg_max + 1
    featmap_sizes = [(int(c.shape[2]), int(c.shape[3])) for c in cls_scores]
    anchors, points, num_level_anchors = make_anchors(featmap_sizes, strides, device=device)
    num_anchors = anchors.shape[0]
    anchor_strides = torch.repeat_interleave(
        torch.tensor([float(s) for s in strides], device=device),
        torch.tensor(num_level_anchors, device=device),
    )

    # --- targets per image (pixels) ------------------------------------------------------------
    labels = torch.full((batch, num_anchors), num_classes, dtype=torch.long, device=device)
    label_weights = torch.ones((batch, num_anchors), device=device)
    target_boxes = anchors.new_zeros((batch, num_anchors, 4))
    num_total_pos = 0
    for i in range(batch):
        gt_boxes = gt_boxes_list[i].to(device=device, dtype=torch.float32)
        gt_labels = gt_labels_list[i].to(device=device, dtype=torch.long)
        if pad_shapes is None:
            valid = None
            result = atss_assign(anchors, num_level_anchors, gt_boxes, gt_labels, num_classes, topk)
            img_labels, img_assigned = result.labels, result.assigned_gt_inds
        else:
            valid = valid_anchor_mask(featmap_sizes, strides, pad_shapes[i], device=device)
            level_valid = [int(m.sum()) for m in valid.split(num_level_anchors)]
            result = atss_assign(anchors[valid], level_valid, gt_boxes, gt_labels, num_classes, topk)
            img_labels = torch.full((num_anchors,), num_classes, dtype=torch.long, device=device)
            img_assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
            img_labels[valid], img_assigned[valid] = result.labels, result.assigned_gt_inds
            label_weights[i] = valid.to(label_weights.dtype)
        pos = img_assigned >= 0
        labels[i] = img_labels
        target_boxes[i, pos] = gt_boxes[img_assigned[pos]]
        num_total_pos += max(int(pos.sum()), 1)

    num_total_samples = world_size_avg(torch.tensor(float(num_total_pos), device=device)).clamp(min=1.0)

    # --- box losses on positives (stride units) -------------------------------------------------
    flat_cls = _flatten_levels(cls_scores).reshape(batch * num_anchors, num_classes)
    flat_box = _flatten_levels(bbox_preds).reshape(batch * num_anchors, 4 * num_bins)
    flat_labels = labels.reshape(-1)
    pos_inds = ((flat_labels >= 0) & (flat_labels < num_classes)).nonzero().squeeze(1)
    iou_targets = torch.zeros(batch * num_anchors, device=device)

    if pos_inds.numel() > 0:
        prior_inds = pos_inds % num_anchors
        pos_strides = anchor_strides[prior_inds][:, None]
        pos_centers = points[prior_inds] / pos_strides  # P x 2
        pos_targets = target_boxes.reshape(-1, 4)[pos_inds] / pos_strides  # P x 4
        pos_logits = flat_box[pos_inds].float().reshape(-1, 4, num_bins)
        bins = torch.arange(num_bins, device=device, dtype=torch.float32)
        pos_dist = (pos_logits.softmax(dim=-1) * bins).sum(dim=-1)  # P x 4, integral
        pos_pred_boxes = distance2bbox(pos_centers, pos_dist)
        iou_targets[pos_inds] = bbox_overlaps(pos_pred_boxes.detach(), pos_targets, aligned=True, eps=1e-6)
        weights = flat_cls.detach()[pos_inds].float().max(dim=1).values  # P

        loss_bbox = giou_weight * (weights * giou_loss(pos_pred_boxes, pos_targets)).sum()
        # clamp to [0, reg_max - 0.1] = [0, 15.9] so the right DFL bin floor(t) + 1 stays <= reg_max
        target_dist = bbox2distance(pos_centers, pos_targets, max_dis=reg_max, eps=0.1)  # P x 4
        dfl = distribution_focal_loss(pos_logits.reshape(-1, num_bins), target_dist.reshape(-1))
        loss_dfl = dfl_weight * (weights.repeat_interleave(4) * dfl).sum() / 4.0
        weight_sum = weights.sum()
    else:
        keep_graph = sum(b.sum() for b in bbox_preds) * 0.0
        loss_bbox = keep_graph
        loss_dfl = keep_graph
        weight_sum = torch.zeros((), device=device)

    avg_factor = world_size_avg(weight_sum.detach())
    avg_factor = torch.where(avg_factor > 0, avg_factor, torch.ones_like(avg_factor))

    # --- QFL on every valid prior ---------------------------------------------------------------
    qfl = quality_focal_loss(flat_cls, flat_labels, iou_targets, beta=beta)
    loss_qfl = qfl_weight * (qfl * label_weights.reshape(-1)).sum() / num_total_samples

    return {"loss_qfl": loss_qfl, "loss_bbox": loss_bbox / avg_factor, "loss_dfl": loss_dfl / avg_factor}
