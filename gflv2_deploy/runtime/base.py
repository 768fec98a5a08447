"""The Runner interface every backend implements (torch, onnxruntime, OpenVINO, TensorRT) and graph input checks.

A runner is a context manager around one loaded model. ``infer`` takes a preprocessed batch (the
output of ``data.preprocess.preprocess_for`` with the graph's contract: N x 3 x H x W float32, or
N x H x W x 3 uint8 pictures for a graph exported with ``--input uint8``) and returns named numpy outputs,
as in the exported graph's contract (``spec.PRE_NMS_OUTPUTS`` or ``spec.END_TO_END_OUTPUTS``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from gflv2_deploy.contract import INPUT_FLOAT32, INPUT_UINT8


@runtime_checkable
class Runner(Protocol):
    name: str  # backend name shown in reports, e.g. "torch", "onnxruntime"

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """images: N x 3 x H x W float32 normalised (or N x H x W x 3 uint8 pictures for a uint8-input graph);
        img_shape: N x 2 float32 (h, w) of unpadded images."""
        ...

    def __enter__(self) -> "Runner": ...

    def __exit__(self, *exc: object) -> None: ...


def check_batch(images: object, input_format: str = INPUT_FLOAT32) -> np.ndarray:
    """Validate a runner input: a float32 N x 3 x H x W array, or for ``INPUT_UINT8`` a uint8 N x H x W x 3 one
    (H, W > 0). Raises UserError otherwise."""
    from gflv2_deploy.errors import UserError

    uint8 = input_format == INPUT_UINT8
    layout, dtype, channel_axis = ("N x H x W x 3", np.uint8, 3) if uint8 else ("N x 3 x H x W", np.float32, 1)
    if not isinstance(images, np.ndarray):
        raise UserError(f"runner input must be a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise UserError(f"runner input must have rank 4 ({layout}), got shape {images.shape}")
    if images.shape[channel_axis] != 3:
        raise UserError(f"runner input must have 3 channels ({layout}), got shape {images.shape}")
    if images.dtype != dtype:
        what = ("uint8 BGR pictures (this graph normalises them itself)" if uint8
                else "float32 (normalised by the shared preprocessing)")
        raise UserError(f"runner input must be {what}, got {images.dtype}")
    return np.ascontiguousarray(images)


def batch_hw(batch: np.ndarray, input_format: str = INPUT_FLOAT32) -> tuple[int, int, int]:
    """(N, H, W) of a checked batch in ``input_format``."""
    if input_format == INPUT_UINT8:
        return int(batch.shape[0]), int(batch.shape[1]), int(batch.shape[2])
    return int(batch.shape[0]), int(batch.shape[2]), int(batch.shape[3])


def check_graph_input(images: object, *, graph: str, fixed_batch: int | None, static_hw: tuple[int, int] | None,
                      divisor: int, input_format: str = INPUT_FLOAT32) -> np.ndarray:
    """``check_batch``, then the graph's own limits: its fixed batch and H x W (None where dynamic), and
    H, W multiples of ``divisor``. ``graph`` names the file in the messages. Raises UserError."""
    from gflv2_deploy.errors import UserError

    batch = check_batch(images, input_format)
    n, h, w = batch_hw(batch, input_format)
    if fixed_batch is not None and n != fixed_batch:
        raise UserError(f"{graph} was exported with a fixed batch of {fixed_batch}, got a batch of {n}")
    if static_hw is not None and (h, w) != static_hw:
        raise UserError(
            f"{graph} was exported for a fixed input of {static_hw[0]}x{static_hw[1]}, got {h}x{w}: pad the "
            f"batch to that size (Detector pad_to) or re-export with --dynamic-hw"
        )
    if h % divisor or w % divisor:
        raise UserError(f"input height and width must be multiples of {divisor} (the shared preprocessing pads them), got {h}x{w}")
    return batch


def img_shape_feed(img_shape: np.ndarray | None, n: int, h: int, w: int) -> np.ndarray:
    """The ``img_shape`` input for a batch of ``n`` x H x W: ``img_shape`` checked (n x 2 positive), or every
    image filling the whole input when None."""
    from gflv2_deploy.errors import UserError

    if img_shape is None:
        return np.tile(np.array([[h, w]], np.float32), (n, 1))
    arr = np.asarray(img_shape, dtype=np.float32)
    if arr.shape != (n, 2) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise UserError(f"img_shape must be {n} x 2 positive (height, width) values, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def graph_feed(images: object, img_shape: np.ndarray | None, *, graph: str, fixed_batch: int | None,
               static_hw: tuple[int, int] | None, divisor: int, with_img_shape: bool,
               input_format: str = INPUT_FLOAT32) -> dict[str, np.ndarray]:
    """The checked inputs of an exported graph by name: ``images`` (``check_graph_input``) and, when the graph
    has that input, ``img_shape`` (``img_shape_feed``)."""
    from gflv2_deploy import spec

    batch = check_graph_input(images, graph=graph, fixed_batch=fixed_batch, static_hw=static_hw, divisor=divisor,
                              input_format=input_format)
    n, h, w = batch_hw(batch, input_format)
    feed = {spec.INPUT_IMAGES: batch}
    if with_img_shape:
        feed[spec.INPUT_IMAGE_SHAPE] = img_shape_feed(img_shape, n, h, w)
    return feed
