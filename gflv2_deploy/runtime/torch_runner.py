"""PyTorch backend: the reference model behind the Runner interface."""

from __future__ import annotations

import os

import numpy as np
import torch

from gflv2_deploy import spec
from gflv2_deploy.config import ModelConfig
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.build import build_from_config, resolve_config
from gflv2_deploy.model.checkpoint import checkpoint_config, load_checkpoint
from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.model.points import decode_outputs
from gflv2_deploy.runtime.base import check_batch


def load_torch_model(
    checkpoint: str | os.PathLike[str] | None,
    config: str | ModelConfig | None = None,
    num_classes: int | None = None,
    allow_unsafe_pickle: bool = False,
) -> GFLV2:
    """Build the model (config from the argument, else from our checkpoint) and load its weights, eval mode.

    Official checkpoints carry no config of ours, so they need ``config`` (e.g. ``gflv2_r50_fpn``).
    ``checkpoint=None`` gives random weights (benchmarks only).
    """
    cfg: ModelConfig | None = None
    if config is not None:
        cfg = resolve_config(config, num_classes)
    elif checkpoint is not None:
        cfg = checkpoint_config(checkpoint, allow_unsafe_pickle)
        if cfg is None:
            raise UserError(f"{checkpoint} is not a gflv2-deploy checkpoint, so pass --config (e.g. gflv2_r50_fpn)")
    if cfg is None:
        raise UserError("either a checkpoint or a configuration is needed")
    model = build_from_config(cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_unsafe_pickle)
    return model.eval()


class TorchRunner:
    """Runs a GFLV2 module; ``infer`` gives the pre-NMS contract, ``head_outputs`` the raw head outputs."""

    name = "torch"

    def __init__(self, model: GFLV2, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {device} requested but torch sees no CUDA GPU; use --device cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config  # type: ignore[attr-defined]

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
        cls_scores, bbox_preds = self.head_outputs(images)
        shape_t = None if img_shape is None else torch.from_numpy(np.asarray(img_shape, np.float32)).to(self.device)
        boxes, scores = decode_outputs(cls_scores, bbox_preds, self.model.strides, self.model.reg_max, shape_t)
        return {spec.OUT_BOXES: boxes.cpu().numpy(), spec.OUT_SCORES: scores.cpu().numpy()}
