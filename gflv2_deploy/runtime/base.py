"""The Runner interface every backend implements (torch, onnxruntime, TensorRT).

A runner is a context manager around one loaded model. ``infer`` takes a preprocessed batch (the
output of ``data.preprocess.preprocess``) and returns named numpy outputs, as in the exported
graph's contract (``spec.PRE_NMS_OUTPUTS`` or ``spec.END_TO_END_OUTPUTS``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    name: str  # backend name shown in reports, e.g. "torch", "onnxruntime"

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """images: N x 3 x H x W float32 normalised; img_shape: N x 2 float32 (h, w) of unpadded images."""
        ...

    def __enter__(self) -> "Runner": ...

    def __exit__(self, *exc: object) -> None: ...


def check_batch(images: object, channels: int = 3) -> np.ndarray:
    """Validate a runner input: a float32 N x 3 x H x W array (H, W > 0). Raises UserError otherwise."""
    from gflv2_deploy.errors import UserError

    if not isinstance(images, np.ndarray):
        raise UserError(f"runner input must be a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise UserError(f"runner input must have rank 4 (N x 3 x H x W), got shape {images.shape}")
    if images.shape[1] != channels:
        raise UserError(f"runner input must have {channels} channels (N x 3 x H x W), got shape {images.shape}")
    if images.dtype != np.float32:
        raise UserError(f"runner input must be float32 (normalised by the shared preprocessing), got {images.dtype}")
    return np.ascontiguousarray(images)
