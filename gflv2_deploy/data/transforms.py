"""Training transforms (spec §4), in numpy: multi-scale keep-ratio resize, horizontal flip, normalise, pad.

Order as in mmdet's training pipeline: Resize (keep ratio; short-edge bound drawn uniformly from the
integers of ``scale_range`` per image, long-edge bound ``scale_long``) -> RandomFlip (horizontal,
probability ``flip_prob``) -> Normalize -> Pad (bottom/right, to a multiple of 32, in the collate).

Resize and normalisation are the inference preprocessing itself (``data.preprocess.preprocess`` with
the drawn scale and no padding), so training and inference cannot drift apart. Flipping the
normalised array equals normalising the flipped picture (both are per-pixel), so the flip comes
after it here without changing a value.

Boxes are xyxy pixels: scaled by the per-axis factors of the resize, clipped to the resized image
(as mmdet's Resize does), then mirrored by the flip: ``x1' = W - x2``, ``x2' = W - x1`` with ``W`` the
resized width (mmdet 2.x ``bbox_flip``, continuous coordinates, no "-1").

Randomness comes only from the ``numpy.random.Generator`` the caller passes, so a sample is a pure
function of (image, annotations, generator state): the training dataset seeds one generator per
(seed, epoch, image index), which makes augmentation independent of worker count and process count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.data.preprocess import preprocess
from gflv2_deploy.errors import UserError

__all__ = ["TrainSample", "TrainBatch", "TrainTransform", "resize_and_normalise", "flip_boxes", "collate_samples"]


@dataclass
class TrainSample:
    """One transformed training image.

    image: 3 x h x w float32 normalised RGB (unpadded); boxes: K x 4 float32 xyxy in resized-image
    pixels; labels: K int64; img_shape: (h, w) after resize; scale_factor: float32 [sx, sy, sx, sy];
    flipped: whether the horizontal flip was applied; image_id: COCO id (-1 when unknown).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    img_shape: tuple[int, int]
    scale_factor: np.ndarray
    flipped: bool
    image_id: int = -1


@dataclass
class TrainBatch:
    """A padded batch: images N x 3 x H x W float32 (H, W multiples of the pad divisor, zero padding
    bottom/right); per image its boxes (K_i x 4 float32, input pixels), labels (K_i int64),
    img_shape (h, w) before padding, pad_shape (h, w) rounded up to the divisor, and image id."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    img_shapes: list[tuple[int, int]]
    pad_shapes: list[tuple[int, int]]
    image_ids: list[int]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def resize_and_normalise(image: np.ndarray, short_edge: int, long_edge: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Keep-ratio resize (bounds ``long_edge`` / ``short_edge``) and normalise one BGR uint8 picture.

    The inference preprocessing with ``scale=(long_edge, short_edge)`` and no padding. Returns
    (3 x h x w float32 normalised RGB, float32 [sx, sy, sx, sy], (h, w)).
    """
    batch, metas = preprocess([image], scale=(long_edge, short_edge), pad_divisor=1)
    return batch[0], metas[0].scale_factor, metas[0].img_shape


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror K x 4 xyxy boxes horizontally in an image of ``width`` pixels: x1' = W - x2, x2' = W - x1."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


class TrainTransform:
    """Multi-scale resize + flip + normalise of one training picture (see the module docstring).

    scale_range: (min, max) short-edge bound in pixels; the bound is drawn from the integers
        min..max inclusive (mmdet ``multiscale_mode='range'``); equal ends give a fixed scale.
    scale_long: long-edge bound in pixels.
    flip_prob: probability of the horizontal flip.
    """

    def __init__(self, scale_range: Sequence[int], scale_long: int, flip_prob: float) -> None:
        if len(scale_range) != 2 or not all(int(v) == v and v > 0 for v in scale_range) or scale_range[0] > scale_range[1]:
            raise UserError(f"scale_range must be two positive integers (min, max) with min <= max, got {tuple(scale_range)}")
        if int(scale_long) != scale_long or scale_long <= 0:
            raise UserError(f"scale_long must be a positive integer, got {scale_long}")
        if not 0.0 <= flip_prob <= 1.0:
            raise UserError(f"flip_prob must lie in [0, 1], got {flip_prob}")
        self.scale_range = (int(scale_range[0]), int(scale_range[1]))
        self.scale_long = int(scale_long)
        self.flip_prob = float(flip_prob)

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                 image_id: int = -1) -> TrainSample:
        """image: H x W x 3 uint8 BGR; boxes: K x 4 xyxy original pixels; labels: K int64."""
        short_edge = int(rng.integers(self.scale_range[0], self.scale_range[1] + 1))
        flip = bool(rng.random() < self.flip_prob)
        chw, scale_factor, (h, w) = resize_and_normalise(image, short_edge, self.scale_long)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale_factor
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        if flip:
            chw = np.ascontiguousarray(chw[:, :, ::-1])
            boxes = flip_boxes(boxes, w)
        return TrainSample(image=chw, boxes=boxes, labels=np.asarray(labels, dtype=np.int64).reshape(-1),
                           img_shape=(h, w), scale_factor=scale_factor, flipped=flip, image_id=image_id)


def collate_samples(samples: Sequence[TrainSample], pad_divisor: int = spec.PAD_DIVISOR) -> TrainBatch:
    """Stack samples into one batch padded (zeros, bottom/right) to the largest image rounded up to ``pad_divisor``.

    Each image's own ``pad_shape`` (its size rounded up to the divisor, mmdet's per-image Pad) tells the
    loss which priors belong to the image (``gflv2_loss(pad_shapes=...)``).
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    pad_shapes = [(_round_up(s.img_shape[0], pad_divisor), _round_up(s.img_shape[1], pad_divisor)) for s in samples]
    height = max(h for h, _ in pad_shapes)
    width = max(w for _, w in pad_shapes)
    images = np.zeros((len(samples), 3, height, width), dtype=np.float32)
    for i, s in enumerate(samples):
        h, w = s.img_shape
        images[i, :, :h, :w] = s.image
    return TrainBatch(images=images, boxes=[s.boxes for s in samples], labels=[s.labels for s in samples],
                      img_shapes=[s.img_shape for s in samples], pad_shapes=pad_shapes,
                      image_ids=[s.image_id for s in samples])


def _round_up(value: int, divisor: int) -> int:
    return -(-value // divisor) * divisor
