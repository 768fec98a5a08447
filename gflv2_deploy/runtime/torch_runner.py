"""PyTorch backend: the reference model behind the Runner interface (with its reference post-processing)."""

from __future__ import annotations

import os

import numpy as np
import torch

from gflv2_deploy import spec
from gflv2_deploy.config import ModelConfig, TestConfig
from gflv2_deploy.data.preprocess import ImageMeta
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.model.points import decode_outputs
from gflv2_deploy.model.postprocess import postprocess
from gflv2_deploy.runtime.base import check_batch


class TorchRunner:
    """Runs a GFLV2 module; ``infer`` gives the pre-NMS contract (every point, no pre-selection),
    ``head_outputs`` the raw head outputs, ``reference_detections`` the reference post-processing."""

    name = "torch"

    def __init__(self, model: GFLV2, device: str = "cpu", *, nms_pre: int = 0, pad_levels: bool = False) -> None:
        """nms_pre / pad_levels: the per-level pre-selection ``infer`` applies to its tensors, as an exported
        graph does (``model.points.select_top_points``); 0 emits every point."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {device} requested but torch sees no CUDA GPU; use --device cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config  # type: ignore[attr-defined]
        self.nms_pre = int(nms_pre)
        self.pad_levels = bool(pad_levels)

    def with_graph_selection(self, nms_pre: int, pad_levels: bool) -> "TorchRunner":
        """The same model whose ``infer`` tensors carry the pre-selection of a graph exported with ``nms_pre``."""
        return TorchRunner(self.model, str(self.device), nms_pre=nms_pre, pad_levels=pad_levels)

    @property
    def output_names(self) -> tuple[str, ...]:
        return spec.PRE_NMS_OUTPUTS

    def __enter__(self) -> "TorchRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @torch.inference_mode()
    def head_outputs(self, images: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = torch.from_numpy(check_batch(images)).to(self.device)
        return self.model(x)

    @torch.inference_mode()
    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        return self._decode(*self.head_outputs(images), img_shape)

    def _decode(self, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor],
                img_shape: np.ndarray | None) -> dict[str, np.ndarray]:
        shape_t = None if img_shape is None else torch.from_numpy(np.asarray(img_shape, np.float32)).to(self.device)
        boxes, scores = decode_outputs(cls_scores, bbox_preds, self.model.strides, self.model.reg_max, shape_t,
                                       nms_pre=self.nms_pre, pad_levels=self.pad_levels)
        return {spec.OUT_BOXES: boxes.cpu().numpy(), spec.OUT_SCORES: scores.cpu().numpy()}

    @torch.inference_mode()
    def tensors_and_detections(self, images: np.ndarray, metas: list[ImageMeta],
                               cfg: TestConfig) -> tuple[dict[str, np.ndarray], list[spec.Detections]]:
        """One forward pass -> (``infer``'s pre-NMS tensors, ``reference_detections``), for parity reports."""
        cls_scores, bbox_preds = self.head_outputs(images)
        tensors = self._decode(cls_scores, bbox_preds, np.array([m.img_shape for m in metas], np.float32))
        dets = postprocess(cls_scores, bbox_preds, [m.img_shape for m in metas], [m.scale_factor for m in metas], cfg,
                           reg_max=self.model.reg_max)
        return tensors, dets

    @torch.inference_mode()
    def reference_detections(self, images: np.ndarray, metas: list[ImageMeta], cfg: TestConfig) -> list[spec.Detections]:
        """Detections in original-picture pixels by the reference post-processing (spec §3.2)."""
        cls_scores, bbox_preds = self.head_outputs(images)
        return postprocess(cls_scores, bbox_preds, [m.img_shape for m in metas], [m.scale_factor for m in metas], cfg,
                           reg_max=self.model.reg_max)
