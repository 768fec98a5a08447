"""Reference post-processing of raw head outputs into detections (spec §3.2).

Per image: per-level pre-selection of the ``nms_pre`` locations with the highest max-class score
(levels with at most ``nms_pre`` locations are kept whole), decode with the kept points, clamp to
the resized unpadded image, concatenate levels, rescale to the original image, multi-label
class-aware NMS, keep ``max_per_img``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from gflv2_deploy.config import TestConfig
from gflv2_deploy.model.nms import multiclass_nms
from gflv2_deploy.model.points import decode_level, distance2bbox
from gflv2_deploy.spec import STRIDES, Detections


@torch.no_grad()
def postprocess(
    cls_scores: list[torch.Tensor],
    bbox_preds: list[torch.Tensor],
    img_shapes: Sequence[tuple[int, int]],
    scale_factors: Sequence[np.ndarray] | None,
    cfg: TestConfig,
    reg_max: int = 16,
    strides: tuple[int, ...] = STRIDES,
) -> list[Detections]:
    """Head outputs of a batch -> one ``Detections`` per image.

    img_shapes: (height, width) of each resized unpadded image (the clamp bounds).
    scale_factors: per image [sx, sy, sx, sy]; boxes are divided by them (original-image pixels).
    With ``scale_factors=None`` boxes stay in input pixels.
    """
    levels = [decode_level(c, b, s, reg_max) for c, b, s in zip(cls_scores, bbox_preds, strides)]
    results = []
    for i, img_shape in enumerate(img_shapes):
        max_shape = torch.tensor(img_shape, dtype=torch.float32, device=cls_scores[0].device)
        boxes, scores = [], []
        for points, dist, level_scores in levels:
            sc, d, p = level_scores[i], dist[i], points
            if 0 < cfg.nms_pre < sc.shape[0]:
                _, idx = sc.max(dim=1).values.topk(cfg.nms_pre)
                sc, d, p = sc[idx], d[idx], p[idx]
            boxes.append(distance2bbox(p, d, max_shape=max_shape))
            scores.append(sc)
        all_boxes, all_scores = torch.cat(boxes), torch.cat(scores).float()
        if scale_factors is not None:
            all_boxes = all_boxes / torch.as_tensor(np.asarray(scale_factors[i], np.float32), device=all_boxes.device)
        det_boxes, det_scores, det_labels = multiclass_nms(all_boxes, all_scores, cfg.score_thr, cfg.iou_thr, cfg.max_per_img)
        results.append(
            Detections(
                boxes=det_boxes.cpu().numpy().astype(np.float32),
                scores=det_scores.cpu().numpy().astype(np.float32),
                labels=det_labels.cpu().numpy().astype(np.int64),
            )
        )
    return results
