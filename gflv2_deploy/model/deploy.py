"""Deploy modules: the GFLV2 detector with its decode folded in, optionally followed by padded NMS.

``DeployModel`` is what the ONNX exporter traces: images (and the unpadded image sizes) in, decoded
boxes and joint scores out, for every prior point of every level. Everything that usually lives in
host post-processing up to NMS runs inside it, in fp32 (spec §7.10): DFL softmax + integral, DGQP
(sorted top-k + mean -> MLP, already inside the head), stride scaling, prior points built from the
feature-map shapes with arange (no baked image size, spec §7.6), distance-to-box decode, and the clamp
to ``img_shape`` (spec §7.7), and the per-level ``nms_pre`` pre-selection of the reference
post-processing (top ``nms_pre`` points per level by max class score, a TopK with constant K; levels
with fewer points are padded with zero rows), so NMS sees at most ``len(strides) * nms_pre`` points.

``EndToEndModel`` appends ``PaddedNMS``, a plain-torch NMS with the fixed-size output contract of the
exported end-to-end graphs (``spec.END_TO_END_OUTPUTS``). It is the torch reference for those graphs;
the exporter itself attaches NMS as ONNX nodes after tracing ``DeployModel`` (see ``export/nms.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.model.nms import multiclass_nms
from gflv2_deploy.model.points import decode_outputs

# Padding of the end-to-end outputs beyond ``num_dets`` (the same in torch and in the ONNX tail).
PAD_BOX = 0.0
PAD_SCORE = 0.0
PAD_CLASS = -1  # never a valid class index, so a consumer that ignores num_dets still cannot miscount


class DeployModel(nn.Module):
    """GFLV2 + decode: ``forward(images, img_shape=None) -> (boxes, scores)``.

    images: N x 3 x H x W float32, normalised RGB (spec §3.1), H and W multiples of 32.
    img_shape: N x 2 float32 (height, width) of each resized unpadded image, or None. With ``clamp``
        and an ``img_shape``, box corners are clamped to [0, width] x [0, height]; without
        ``img_shape`` nothing is clamped (the exported graph then has no ``img_shape`` input).
    Returns boxes N x A x 4 float32 (x1, y1, x2, y2 in input pixels) and scores N x A x C float32
    (sigmoid(cls) x DGQP quality, no further activation: spec §7.1), points ordered P3..P7. With
    ``nms_pre`` > 0, A = len(strides) * nms_pre (each level's top points, sorted by max score;
    ``pad_levels`` pads every level, as dynamic-size exports need); with 0, A = ``spec.num_points(H, W)``,
    row-major within a level.
    """

    def __init__(self, detector: GFLV2, *, clamp: bool = True, nms_pre: int = 0, pad_levels: bool = False) -> None:
        super().__init__()
        self.detector = detector
        self.clamp = clamp
        self.nms_pre = int(nms_pre)
        self.pad_levels = bool(pad_levels)

    @property
    def num_classes(self) -> int:
        return self.detector.num_classes

    def forward(self, images: torch.Tensor, img_shape: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cls_scores, bbox_preds = self.detector(images)
        bounds = img_shape if self.clamp else None
        return decode_outputs(cls_scores, bbox_preds, self.detector.strides, self.detector.reg_max, bounds,
                              nms_pre=self.nms_pre, pad_levels=self.pad_levels)


class PaddedNMS(nn.Module):
    """Multi-label class-aware NMS to fixed-size, padded outputs (the end-to-end contract).

    boxes N x A x 4, scores N x A x C -> (num_dets N x 1 int32, det_boxes N x K x 4 float32,
    det_scores N x K float32, det_classes N x K int32), K = ``max_dets``, detections sorted by
    descending score, slots beyond ``num_dets`` padded with boxes 0, scores 0, classes -1.
    Candidates are (box, class) pairs with score > ``score_thr``; a box suppresses another of the same
    class when their IoU > ``iou_thr`` (spec §3.2; the same comparisons as onnxruntime's
    NonMaxSuppression, measured). Not traceable (data-dependent loop): a reference, not an export path.
    """

    def __init__(self, *, score_thr: float, iou_thr: float, max_dets: int) -> None:
        super().__init__()
        self.score_thr = float(score_thr)
        self.iou_thr = float(iou_thr)
        self.max_dets = int(max_dets)

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n, k = boxes.shape[0], self.max_dets
        num = torch.zeros(n, 1, dtype=torch.int32, device=boxes.device)
        out_boxes = torch.full((n, k, 4), PAD_BOX, dtype=torch.float32, device=boxes.device)
        out_scores = torch.full((n, k), PAD_SCORE, dtype=torch.float32, device=boxes.device)
        out_classes = torch.full((n, k), PAD_CLASS, dtype=torch.int32, device=boxes.device)
        for i in range(n):
            b, s, c = multiclass_nms(boxes[i].float(), scores[i].float(), self.score_thr, self.iou_thr, k)
            m = b.shape[0]
            num[i, 0] = m
            out_boxes[i, :m] = b
            out_scores[i, :m] = s
            out_classes[i, :m] = c.to(torch.int32)
        return num, out_boxes, out_scores, out_classes


class EndToEndModel(nn.Module):
    """``DeployModel`` followed by ``PaddedNMS``: ``forward(images, img_shape=None)`` -> the four end-to-end outputs."""

    def __init__(self, deploy: DeployModel, nms: PaddedNMS) -> None:
        super().__init__()
        self.deploy = deploy
        self.nms = nms

    def forward(self, images: torch.Tensor, img_shape: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, scores = self.deploy(images, img_shape)
        return self.nms(boxes, scores)
