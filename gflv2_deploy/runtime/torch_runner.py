"""PyTorch backend: the reference model behind the Runner interface (with its reference post-processing).

The reference computes in true FP32. PyTorch's cuDNN convolutions default to TF32 on Ampere and newer GPUs
(10-bit mantissa): on an H200 that moved CPU-vs-CUDA detections of the trained tiny model to 96.2 % matched,
100 % with TF32 off. So every forward pass of a ``TorchRunner`` runs inside ``float32_math``, which switches
TF32 off for convolutions and matmuls (and restores the process's settings afterwards: importing this module
or building a runner changes nothing globally); ``tf32=True`` is the explicit, labelled opt-in (``--tf32``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

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


def _precision_settings() -> list[tuple[Any, str]]:
    """The (object, attribute) pairs that choose TF32 or IEEE FP32 for convolutions and matmuls in this torch.

    torch >= 2.9 has per-backend ``fp32_precision`` ("ieee" / "tf32" / "none" = inherit); mixing it with the legacy
    ``allow_tf32`` flags raises, so the new one is used where it exists. mkldnn (CPU) is pinned to IEEE too: a
    process-wide ``torch.set_float32_matmul_precision("medium")`` would otherwise let CPU matmuls use bf16.
    """
    backends = torch.backends
    conv = getattr(getattr(backends.cudnn, "conv", None), "fp32_precision", None)
    if conv is not None:
        return [(backends.cudnn.conv, "fp32_precision"), (backends.cuda.matmul, "fp32_precision"),
                (backends.mkldnn.conv, "fp32_precision"), (backends.mkldnn.matmul, "fp32_precision")]
    return [(backends.cudnn, "allow_tf32"), (backends.cuda.matmul, "allow_tf32")]


@contextlib.contextmanager
def float32_math(tf32: bool = False) -> Iterator[None]:
    """Convolutions and matmuls in IEEE FP32 while the block runs (``tf32``: TF32 on CUDA instead); the previous
    settings are restored afterwards, whatever they were. Process-wide flags: one precision at a time per process."""
    settings = _precision_settings()
    saved = [getattr(obj, attr) for obj, attr in settings]
    legacy_precision = None
    if settings[0][1] == "allow_tf32":  # torch < 2.9: the legacy flags and the global matmul precision
        legacy_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
    for obj, attr in settings:
        cuda_side = obj in (torch.backends.cudnn, getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul)
        if attr == "allow_tf32":
            setattr(obj, attr, bool(tf32))
        else:
            setattr(obj, attr, "tf32" if tf32 and cuda_side else "ieee")
    try:
        yield
    finally:
        for (obj, attr), value in zip(settings, saved):
            setattr(obj, attr, value)
        if legacy_precision is not None:
            torch.set_float32_matmul_precision(legacy_precision)


class TorchRunner:
    """Runs a GFLV2 module; ``infer`` gives the pre-NMS contract (every point, no pre-selection),
    ``head_outputs`` the raw head outputs, ``reference_detections`` the reference post-processing.

    Forward passes run in IEEE FP32 (``float32_math``); ``tf32=True`` (CUDA only) lets cuDNN and cuBLAS use TF32,
    and ``math`` says which ("fp32" or "tf32") for reports.
    """

    name = "torch"

    def __init__(self, model: GFLV2, device: str = "cpu", *, nms_pre: int = 0, pad_levels: bool = False,
                 tf32: bool = False) -> None:
        """nms_pre / pad_levels: the per-level pre-selection ``infer`` applies to its tensors, as an exported
        graph does (``model.points.select_top_points``); 0 emits every point. tf32: TF32 convolutions and
        matmuls on CUDA (faster, ~1e-3 relative error); refused on the CPU, where it does not exist."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {device} requested but torch sees no CUDA GPU; use --device cpu")
        self.device = torch.device(device)
        if tf32 and self.device.type != "cuda":
            raise UserError(f"--tf32 is a CUDA setting (TF32 tensor cores); device {device} computes in FP32 anyway")
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config  # type: ignore[attr-defined]
        self.nms_pre = int(nms_pre)
        self.pad_levels = bool(pad_levels)
        self.tf32 = bool(tf32)

    @property
    def math(self) -> str:
        """"fp32" (IEEE, the reference) or "tf32" (CUDA TF32 convolutions and matmuls): recorded in reports."""
        return "tf32" if self.tf32 else "fp32"

    def with_graph_selection(self, nms_pre: int, pad_levels: bool) -> "TorchRunner":
        """The same model whose ``infer`` tensors carry the pre-selection of a graph exported with ``nms_pre``."""
        return TorchRunner(self.model, str(self.device), nms_pre=nms_pre, pad_levels=pad_levels, tf32=self.tf32)

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
        with float32_math(self.tf32):
            return self.model(x)

    @torch.inference_mode()
    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        with float32_math(self.tf32):  # the decode's integral is a matmul
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
        with float32_math(self.tf32):
            cls_scores, bbox_preds = self.head_outputs(images)
            tensors = self._decode(cls_scores, bbox_preds, np.array([m.img_shape for m in metas], np.float32))
            dets = postprocess(cls_scores, bbox_preds, [m.img_shape for m in metas], [m.scale_factor for m in metas], cfg,
                               reg_max=self.model.reg_max)
        return tensors, dets

    @torch.inference_mode()
    def reference_detections(self, images: np.ndarray, metas: list[ImageMeta], cfg: TestConfig) -> list[spec.Detections]:
        """Detections in original-picture pixels by the reference post-processing (spec §3.2)."""
        with float32_math(self.tf32):
            cls_scores, bbox_preds = self.head_outputs(images)
            return postprocess(cls_scores, bbox_preds, [m.img_shape for m in metas], [m.scale_factor for m in metas], cfg,
                               reg_max=self.model.reg_max)
