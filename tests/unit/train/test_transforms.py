"""Training transforms: multi-scale resize, flip with boxes, the shared normalisation, padding in the collate."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy.data.preprocess import preprocess
from gflv2_deploy.data.transforms import TrainTransform, collate_samples, flip_boxes
from gflv2_deploy.errors import UserError


def _picture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


BOXES = np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 128.0, 96.0], [100.5, 3.25, 127.0, 40.0]], np.float32)
LABELS = np.array([2, 0, 5], np.int64)


def test_flip_mirrors_boxes_and_pixels_exactly() -> None:
    image = _picture()
    plain = TrainTransform((160, 160), 400, flip_prob=0.0)(image, BOXES, LABELS, np.random.default_rng(1))
    flipped = TrainTransform((160, 160), 400, flip_prob=1.0)(image, BOXES, LABELS, np.random.default_rng(1))
    assert not plain.flipped and flipped.flipped
    h, w = plain.img_shape
    assert (h, w) == flipped.img_shape == (160, 213)  # 96 x 128 -> short edge 160, int(128 * 5/3 + 0.5)
    np.testing.assert_array_equal(flipped.image, plain.image[:, :, ::-1])
    np.testing.assert_allclose(flipped.boxes[:, 0], w - plain.boxes[:, 2])
    np.testing.assert_allclose(flipped.boxes[:, 2], w - plain.boxes[:, 0])
    np.testing.assert_array_equal(flipped.boxes[:, 1::2], plain.boxes[:, 1::2])
    np.testing.assert_array_equal(flip_boxes(flip_boxes(plain.boxes, w), w), plain.boxes)  # an involution
    np.testing.assert_array_equal(flipped.labels, LABELS)


def test_flip_probability_is_respected() -> None:
    transform = TrainTransform((64, 64), 200, flip_prob=0.5)
    image = _picture(32, 48)
    flips = [transform(image, BOXES[:1], LABELS[:1], np.random.default_rng([7, i])).flipped for i in range(400)]
    assert 0.4 < np.mean(flips) < 0.6


def test_resize_and_normalise_is_the_inference_preprocessing() -> None:
    image = _picture(90, 130, seed=3)
    sample = TrainTransform((150, 150), 1000, flip_prob=0.0)(image, BOXES, LABELS, np.random.default_rng(0))
    batch, metas = preprocess([image], scale=(1000, 150))
    h, w = metas[0].img_shape
    assert sample.img_shape == (h, w)
    np.testing.assert_array_equal(sample.image, batch[0, :, :h, :w])
    np.testing.assert_array_equal(sample.scale_factor, metas[0].scale_factor)


def test_short_edge_is_drawn_from_every_integer_of_the_range_and_long_edge_is_bounded() -> None:
    image = _picture(100, 100)  # square: the resized side equals the drawn short edge
    transform = TrainTransform((128, 136), 10_000, flip_prob=0.0)
    sides = {transform(image, BOXES[:0], LABELS[:0], np.random.default_rng([1, i])).img_shape for i in range(300)}
    assert {h for h, w in sides} == set(range(128, 137)) and all(h == w for h, w in sides)

    wide = _picture(50, 200)  # 1:4, the long-edge bound 300 wins over any short edge in 128..160
    bounded = TrainTransform((128, 160), 300, flip_prob=0.0)
    shapes = {bounded(wide, BOXES[:0], LABELS[:0], np.random.default_rng(i)).img_shape for i in range(20)}
    assert shapes == {(75, 300)}


def test_boxes_follow_the_per_axis_scale_and_are_clipped() -> None:
    image = _picture(96, 128)
    sample = TrainTransform((48, 48), 1000, flip_prob=0.0)(image, BOXES, LABELS, np.random.default_rng(0))
    assert sample.img_shape == (48, 64)
    np.testing.assert_allclose(sample.boxes, BOXES * 0.5)
    # a box reaching past the image edge (as COCO files sometimes hold) is clipped to the resized image
    over = np.array([[-5.0, 90.0, 130.0, 100.0]], np.float32)
    clipped = TrainTransform((48, 48), 1000, 0.0)(image, over, LABELS[:1], np.random.default_rng(0)).boxes
    np.testing.assert_allclose(clipped, [[0.0, 45.0, 64.0, 48.0]])


def test_images_without_boxes_pass_through() -> None:
    sample = TrainTransform((64, 80), 200, 0.5)(_picture(), np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                                                 np.random.default_rng(0))
    assert sample.boxes.shape == (0, 4) and sample.labels.shape == (0,)


def test_collate_pads_to_32_with_zeros_and_keeps_per_image_shapes() -> None:
    t = TrainTransform((70, 70), 1000, 0.0)
    samples = [t(_picture(70, 100, s), BOXES[:1], LABELS[:1], np.random.default_rng(s)) for s in range(2)]
    samples.append(TrainTransform((33, 33), 1000, 0.0)(_picture(33, 33), BOXES[:0], LABELS[:0], np.random.default_rng(0)))
    batch = collate_samples(samples)
    assert batch.images.shape == (3, 3, 96, 128) and batch.images.dtype == np.float32
    assert batch.img_shapes == [(70, 100), (70, 100), (33, 33)]
    assert batch.pad_shapes == [(96, 128), (96, 128), (64, 64)]
    np.testing.assert_array_equal(batch.images[0, :, :70, :100], samples[0].image)
    assert not batch.images[0, :, 70:, :].any() and not batch.images[0, :, :, 100:].any()
    assert not batch.images[2, :, 33:, :].any() and not batch.images[2, :, :, 33:].any()
    assert [len(b) for b in batch.boxes] == [1, 1, 0] and len(batch) == 3


@pytest.mark.parametrize("kwargs", [dict(scale_range=(200, 100), scale_long=300, flip_prob=0.5),
                                    dict(scale_range=(100, 200), scale_long=0, flip_prob=0.5),
                                    dict(scale_range=(100, 200), scale_long=300, flip_prob=1.5)])
def test_bad_transform_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(UserError):
        TrainTransform(**kwargs)
