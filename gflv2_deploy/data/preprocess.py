"""THE inference preprocessing (spec §3.1), in numpy: every runner and the INT8 calibrator use it.

Per image: keep-ratio resize to ``TEST_SCALE`` (bilinear, on uint8 as mmcv does), BGR -> RGB,
``(x - mean) / std`` per RGB channel on the 0-255 scale, then zero padding at the bottom/right (zero
after normalisation is the mean colour) up to a common batch size that is a multiple of 32.
A graph with a fixed input size (``pad_to``) takes any picture: the resize factor is also bounded by
that size (the letterbox rule of docs/contract.md), so the picture always fits, then it is padded.

Graphs exported with ``--input uint8`` (contract ``input_format`` "uint8_nhwc_bgr") do the normalisation
themselves: for them ``letterbox_pixels`` stops after the resize and the zero padding and returns the
BGR pictures as N x H x W x 3 uint8 (a quarter of the bytes); ``preprocess_for`` picks the path from the
contract.

The mapping back (``boxes_to_original``) is the inverse of the resize only (spec §3.2 step 4): boxes
are divided by the per-axis scale factors and not clamped to the original picture again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.contract import INPUT_FLOAT32, INPUT_UINT8, Preprocessing
from gflv2_deploy.errors import UserError

__all__ = [
    "ImageMeta",
    "rescale_size",
    "preprocess",
    "preprocess_for",
    "letterbox_pixels",
    "stack_img_shapes",
    "boxes_to_original",
    "detections_to_original",
]


@dataclass
class ImageMeta:
    """Geometry of one preprocessed image; all sizes are (height, width) in pixels.

    ori_shape: size of the picture as read. img_shape: size after the keep-ratio resize, before
    padding (the valid region of the network input; boxes are clamped to it). scale_factor:
    float32 array [sx, sy, sx, sy] with sx = new_w / w and sy = new_h / h, ordered like an
    (x1, y1, x2, y2) box. pad_shape: size of the padded batch tensor the image sits in.
    """

    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    scale_factor: np.ndarray
    pad_shape: tuple[int, int]


def rescale_size(height: int, width: int, scale: tuple[int, int] = spec.TEST_SCALE,
                 fit: tuple[int, int] | None = None) -> tuple[int, int]:
    """Keep-ratio target size (new_h, new_w) of a ``height`` x ``width`` picture, exactly as mmcv.

    ``scale`` holds two edge bounds in any order (the larger bounds the long edge, the smaller the
    short edge). s = min(max(scale) / max(h, w), min(scale) / min(h, w)); new_w = int(w * s + 0.5),
    new_h = int(h * s + 0.5) in Python float (double) arithmetic, as mmcv.rescale_size computes it.
    Example: 480 x 640 with (1333, 800) -> (800, 1067).
    fit: a fixed (H, W) the result must fit in (letterbox rule): s = min(s, H / h, W / w), so
    int(h * s + 0.5) <= H and int(w * s + 0.5) <= W. Example: 480 x 640, (1333, 800), fit (640, 640) -> (480, 640).
    """
    if height <= 0 or width <= 0:
        raise UserError(f"cannot resize an image of size {height} x {width}: both sides must be positive")
    if len(scale) != 2 or min(scale) <= 0:
        raise UserError(f"scale must be two positive edge lengths (long, short), got {scale}")
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    if fit is not None:
        factor = min(factor, fit[0] / height, fit[1] / width)
    new_h, new_w = int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)
    if new_h == 0 or new_w == 0:
        raise UserError(
            f"image of size {height} x {width} is too elongated: resizing it to fit {scale} "
            f"leaves a side of 0 pixels ({new_h} x {new_w})"
        )
    return new_h, new_w


def preprocess(
    images: Sequence[np.ndarray],
    scale: tuple[int, int] = spec.TEST_SCALE,
    pad_divisor: int = spec.PAD_DIVISOR,
    pad_to: tuple[int, int] | None = None,
    mean: tuple[float, float, float] = spec.PIXEL_MEAN_RGB,
    std: tuple[float, float, float] = spec.PIXEL_STD_RGB,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[ImageMeta]]:
    """Turn BGR pictures into the network input batch of spec §3.1.

    images: N >= 1 arrays, each H_i x W_i x 3 uint8 BGR (as ``read_image`` returns).
    scale: keep-ratio bounds (long edge, short edge) in pixels, see ``rescale_size``.
    pad_divisor: the batch height and width are rounded up to a multiple of this.
    pad_to: fixed (height, width) of the batch, for static-shape graphs and engines; each must be a
        multiple of ``pad_divisor``. Pictures are scaled to fit it (letterbox rule, ``rescale_size(fit=)``).
    mean / std: RGB normalisation on the 0-255 scale (a graph contract's ``preprocessing``).
    out: a previous batch to write into when its shape fits (only the padding is cleared): saves the
        first-touch cost of a fresh ~100 MB allocation per call at 8 x 800 x 1344. The returned batch
        is then ``out`` itself, overwritten by the next call.

    Returns (batch, metas): batch is an N x 3 x H x W float32 C-contiguous array of normalised RGB
    values, (x - mean) / std with x on the 0-255 scale (``spec.PIXEL_MEAN_RGB`` /
    ``spec.PIXEL_STD_RGB``), image i in the top-left ``metas[i].img_shape`` corner and exactly 0.0
    elsewhere; metas holds one ``ImageMeta`` per image.
    """
    ori_shapes, new_shapes, (batch_h, batch_w) = _plan(images, scale, pad_divisor, pad_to)
    # np.zeros gets zeroed pages from the OS, so the padding costs nothing to fill.
    shape = (len(images), 3, batch_h, batch_w)
    reuse = out is not None and out.shape == shape and out.dtype == np.float32 and out.flags.c_contiguous
    batch = out if reuse else np.zeros(shape, dtype=np.float32)
    luts = _normalisation_luts(tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[arg-type]
    metas: list[ImageMeta] = []
    for index, (image, (h, w), (new_h, new_w)) in enumerate(zip(images, ori_shapes, new_shapes)):
        if reuse:  # the valid region is overwritten below; only the padding must be zero again
            batch[index, :, new_h:, :] = 0.0
            batch[index, :, :new_h, new_w:] = 0.0
        image = np.ascontiguousarray(image)  # no copy unless the caller passed a strided view
        if (new_h, new_w) != (h, w):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        planes_bgr = cv2.split(image)
        for rgb_channel in range(3):
            # A uint8 value has only 256 possible results: a per-channel table of correctly
            # rounded float32 (v - mean) / std, applied straight into the batch (no temporaries).
            target = batch[index, rgb_channel, :new_h, :new_w]
            result = cv2.LUT(planes_bgr[2 - rgb_channel], luts[rgb_channel], dst=target)
            if result.__array_interface__["data"][0] != target.__array_interface__["data"][0]:
                target[...] = result  # OpenCV allocated a new array instead of writing in place
        metas.append(_meta((h, w), (new_h, new_w), (batch_h, batch_w)))
    return batch, metas


def letterbox_pixels(
    images: Sequence[np.ndarray],
    scale: tuple[int, int] = spec.TEST_SCALE,
    pad_divisor: int = spec.PAD_DIVISOR,
    pad_to: tuple[int, int] | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[ImageMeta]]:
    """The input of a uint8-input graph: ``preprocess`` up to the resize and the padding, no normalisation.

    Same arguments, geometry and metas as ``preprocess`` (the same resized pixels, by the same cv2.resize).
    Returns (batch, metas): batch is an N x H x W x 3 uint8 C-contiguous array of BGR pictures (as read),
    image i in the top-left ``metas[i].img_shape`` corner and 0 elsewhere. The graph ignores the padding's
    values: its first nodes set everything outside ``img_shape`` to the normalised pad value.
    """
    ori_shapes, new_shapes, (batch_h, batch_w) = _plan(images, scale, pad_divisor, pad_to)
    shape = (len(images), batch_h, batch_w, 3)
    reuse = out is not None and out.shape == shape and out.dtype == np.uint8 and out.flags.c_contiguous
    batch = out if reuse else np.zeros(shape, dtype=np.uint8)
    metas: list[ImageMeta] = []
    for index, (image, (h, w), (new_h, new_w)) in enumerate(zip(images, ori_shapes, new_shapes)):
        if reuse:
            batch[index, new_h:] = 0
            batch[index, :new_h, new_w:] = 0
        image = np.ascontiguousarray(image)
        if (new_h, new_w) != (h, w):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        batch[index, :new_h, :new_w] = image
        metas.append(_meta((h, w), (new_h, new_w), (batch_h, batch_w)))
    return batch, metas


def preprocess_for(images: Sequence[np.ndarray], pre: Preprocessing,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, list[ImageMeta]]:
    """The graph input for ``images`` with every setting taken from a graph contract's ``preprocessing``
    (docs/contract.md): ``preprocess`` (N x 3 x H x W float32) or, for a uint8-input graph,
    ``letterbox_pixels`` (N x H x W x 3 uint8)."""
    if pre.input_format == INPUT_UINT8:
        return letterbox_pixels(images, scale=pre.test_scale, pad_divisor=pre.pad_divisor, pad_to=pre.input_hw, out=out)
    if pre.input_format != INPUT_FLOAT32:
        raise UserError(f"unknown input format {pre.input_format!r} in the graph contract; upgrade gflv2-deploy")
    return preprocess(images, scale=pre.test_scale, pad_divisor=pre.pad_divisor, pad_to=pre.input_hw,
                      mean=pre.mean, std=pre.std, out=out)


def _plan(images: Sequence[np.ndarray], scale: tuple[int, int], pad_divisor: int, pad_to: tuple[int, int] | None
          ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], tuple[int, int]]:
    """Checked pictures -> (picture sizes, resized sizes, batch (H, W)); UserError for unusable input."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise UserError("preprocess takes a sequence of images; wrap a single image in a list: [image]")
    if len(images) == 0:
        raise UserError("preprocess needs at least one image, got an empty sequence")
    if int(pad_divisor) != pad_divisor or pad_divisor < 1:
        raise UserError(f"pad_divisor must be a positive integer, got {pad_divisor}")
    for index, image in enumerate(images):
        _check_image(image, index)

    ori_shapes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
    if pad_to is not None:
        _check_pad_to(pad_to, pad_divisor)
    fit = None if pad_to is None else (int(pad_to[0]), int(pad_to[1]))
    new_shapes = [rescale_size(h, w, scale, fit) for h, w in ori_shapes]
    need_h = max(h for h, _ in new_shapes)
    need_w = max(w for _, w in new_shapes)
    if pad_to is None:
        return ori_shapes, new_shapes, (_round_up(need_h, pad_divisor), _round_up(need_w, pad_divisor))
    return ori_shapes, new_shapes, (int(pad_to[0]), int(pad_to[1]))


def _meta(ori: tuple[int, int], new: tuple[int, int], batch: tuple[int, int]) -> ImageMeta:
    (h, w), (new_h, new_w) = ori, new
    return ImageMeta(ori_shape=(h, w), img_shape=(new_h, new_w),
                     scale_factor=np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32),
                     pad_shape=batch)



def stack_img_shapes(metas: Sequence[ImageMeta]) -> np.ndarray:
    """N x 2 float32 (height, width) of the resized, unpadded images: the ``img_shape`` input."""
    return np.array([meta.img_shape for meta in metas], dtype=np.float32).reshape(len(metas), 2)


def boxes_to_original(boxes: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """Map K x 4 (x1, y1, x2, y2) boxes from network-input pixels to original-picture pixels.

    x coordinates are divided by sx and y by sy (``meta.scale_factor``); no clamping to the
    original picture afterwards (spec §3.2 step 4). Returns a new K x 4 float32 array.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise UserError(f"boxes must be a K x 4 array (x1, y1, x2, y2), got shape {boxes.shape}")
    return boxes.astype(np.float32) / meta.scale_factor


def detections_to_original(dets: spec.Detections, meta: ImageMeta) -> spec.Detections:
    """``dets`` (boxes in network-input pixels) with boxes mapped to original-picture pixels.

    Scores and labels are copied unchanged; the order (descending score) is kept.
    """
    return spec.Detections(
        boxes=boxes_to_original(dets.boxes, meta),
        scores=dets.scores.copy(),
        labels=dets.labels.copy(),
    )


def _check_image(image: object, index: int) -> None:
    """Raise ``UserError`` unless ``image`` is an H x W x 3 uint8 array with H, W >= 1."""
    if not isinstance(image, np.ndarray):
        raise UserError(
            f"image {index} must be a numpy array (H x W x 3 uint8 BGR), got a {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise UserError(
            f"image {index} must have shape H x W x 3 (BGR), got {image.shape}; "
            "read pictures with gflv2_deploy.data.image_io.read_image"
        )
    if image.dtype != np.uint8:
        raise UserError(
            f"image {index} must be uint8 (0-255 BGR), got {image.dtype}; "
            "read pictures with gflv2_deploy.data.image_io.read_image"
        )


def _check_pad_to(pad_to: tuple[int, int], divisor: int) -> None:
    """Validate a fixed batch size (height, width): positive whole pixels, multiples of the divisor."""
    if len(pad_to) != 2 or any(int(side) != side or side <= 0 for side in pad_to):
        raise UserError(f"pad_to must be (height, width) in positive whole pixels, got {pad_to}")
    if int(pad_to[0]) % divisor or int(pad_to[1]) % divisor:
        raise UserError(f"pad_to {pad_to[0]} x {pad_to[1]} must be a multiple of {divisor} on both sides")


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor


@functools.lru_cache(maxsize=4)
def _normalisation_luts(
    mean_rgb: tuple[float, float, float], std_rgb: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per RGB channel a 1 x 256 float32 table: entry v = (v - mean) / std, rounded once from float64."""
    values = np.arange(256, dtype=np.float64)
    tables = tuple(((values - m) / s).astype(np.float32).reshape(1, 256) for m, s in zip(mean_rgb, std_rgb))
    for table in tables:
        table.flags.writeable = False
    return tables  # type: ignore[return-value]
