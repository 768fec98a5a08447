"""The inference preprocessing of spec §3.1 and the mapping back of spec §3.2 step 4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.preprocess import (
    ImageMeta,
    boxes_to_original,
    detections_to_original,
    preprocess,
    rescale_size,
    stack_img_shapes,
)
from gflv2_deploy.errors import UserError

MEAN = np.array(spec.PIXEL_MEAN_RGB, dtype=np.float64)
STD = np.array(spec.PIXEL_STD_RGB, dtype=np.float64)


def _constant(height: int, width: int, bgr: tuple[int, int, int]) -> np.ndarray:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = bgr
    return image


def _reference(image_bgr: np.ndarray) -> np.ndarray:
    """Independent straightforward version: resize, to RGB, float64 normalise; 3 x h x w."""
    new_h, new_w = rescale_size(*image_bgr.shape[:2])
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float64)
    return ((rgb - MEAN) / STD).transpose(2, 0, 1)


# --- rescale_size -------------------------------------------------------------------------------


def test_rescale_size_spec_example() -> None:
    assert rescale_size(480, 640) == (800, 1067)  # short side bound: 800 / 480


def test_rescale_size_wide_and_tall_are_bounded_by_long_side() -> None:
    assert rescale_size(500, 1000) == (667, 1333)  # 2:1 wide: 1333 / 1000 < 800 / 500
    assert rescale_size(1000, 500) == (1333, 667)
    assert rescale_size(500, 1000, scale=(800, 1333)) == (667, 1333)  # bound order does not matter


def test_rescale_size_on_coco_pictures_hits_one_bound(tiny50: Path) -> None:
    for path in sorted((tiny50 / "val2017").glob("*.jpg"))[:20]:
        h, w = cv2.imread(str(path)).shape[:2]
        new_h, new_w = rescale_size(h, w)
        assert max(new_h, new_w) <= 1333 and min(new_h, new_w) <= 800
        assert max(new_h, new_w) == 1333 or min(new_h, new_w) == 800
        assert abs(new_w / new_h - w / h) < 2 / min(new_h, new_w)  # aspect ratio kept


def test_rescale_size_rejects_degenerate_sizes() -> None:
    with pytest.raises(UserError):
        rescale_size(0, 10)
    with pytest.raises(UserError, match="elongated"):
        rescale_size(1, 100000)


# --- preprocess ------------------------------------------------------------------------------------


def test_spec_example_shapes_and_scale_factor() -> None:
    batch, metas = preprocess([_constant(480, 640, (0, 0, 0))])
    assert batch.shape == (1, 3, 800, 1088)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    (meta,) = metas
    assert meta.ori_shape == (480, 640)
    assert meta.img_shape == (800, 1067)
    assert meta.pad_shape == (800, 1088)
    assert meta.scale_factor.dtype == np.float32
    np.testing.assert_allclose(meta.scale_factor, [1067 / 640, 800 / 480, 1067 / 640, 800 / 480], rtol=1e-7)


def test_wide_image_is_bounded_by_long_side() -> None:
    batch, (meta,) = preprocess([_constant(400, 800, (1, 2, 3))])
    assert meta.img_shape == (667, 1333)
    assert batch.shape == (1, 3, 672, 1344)
    np.testing.assert_allclose(meta.scale_factor, [1333 / 800, 667 / 400] * 2, rtol=1e-7)


def test_constant_colour_normalisation_per_rgb_channel() -> None:
    bgr = (10, 200, 90)
    batch, (meta,) = preprocess([_constant(480, 640, bgr)])
    h, w = meta.img_shape
    rgb = np.array(bgr[::-1], dtype=np.float64)
    expected = (rgb - MEAN) / STD
    for channel in range(3):
        region = batch[0, channel, :h, :w]
        np.testing.assert_allclose(region, expected[channel], rtol=1e-6)


def test_pure_blue_lands_in_the_last_rgb_channel() -> None:
    batch, (meta,) = preprocess([_constant(64, 64, (255, 0, 0))])  # BGR pure blue
    h, w = meta.img_shape
    np.testing.assert_allclose(batch[0, 0, :h, :w], (0 - MEAN[0]) / STD[0], rtol=1e-6)  # R
    np.testing.assert_allclose(batch[0, 1, :h, :w], (0 - MEAN[1]) / STD[1], rtol=1e-6)  # G
    np.testing.assert_allclose(batch[0, 2, :h, :w], (255 - MEAN[2]) / STD[2], rtol=1e-6)  # B
    assert batch[0, 2, 0, 0] > 2.0 and batch[0, 0, 0, 0] < -2.0


def test_padding_is_exactly_zero() -> None:
    batch, (meta,) = preprocess([_constant(480, 640, (255, 255, 255))])
    h, w = meta.img_shape
    assert w < batch.shape[3]  # 1067 -> 1088: there is padding on the right
    assert np.all(batch[0, :, :, w:] == 0.0)
    assert np.all(batch[0, :, h:, :] == 0.0)
    assert np.all(batch[0, :, :h, :w] != 0.0)  # white is never the mean colour


def test_matches_independent_reference_on_a_real_picture(tiny50: Path) -> None:
    path = sorted((tiny50 / "val2017").glob("*.jpg"))[0]
    image = read_image(path)
    batch, (meta,) = preprocess([image])
    h, w = meta.img_shape
    np.testing.assert_allclose(batch[0, :, :h, :w], _reference(image), rtol=0, atol=1e-5)


def test_batch_pads_to_common_size_and_equals_single_images() -> None:
    rng = np.random.default_rng(0)
    landscape = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    portrait = rng.integers(0, 256, (640, 480, 3), dtype=np.uint8)
    batch, metas = preprocess([landscape, portrait])
    assert [m.img_shape for m in metas] == [(800, 1067), (1067, 800)]
    assert batch.shape == (2, 3, 1088, 1088)
    assert all(m.pad_shape == (1088, 1088) for m in metas)
    for index, image in enumerate([landscape, portrait]):
        single, (meta,) = preprocess([image])
        h, w = meta.img_shape
        np.testing.assert_array_equal(batch[index, :, :h, :w], single[0, :, :h, :w])
        assert np.all(batch[index, :, h:, :] == 0.0) and np.all(batch[index, :, :, w:] == 0.0)
    np.testing.assert_array_equal(stack_img_shapes(metas), np.array([[800, 1067], [1067, 800]], np.float32))


def test_pad_to_fixed_size() -> None:
    batch, (meta,) = preprocess([_constant(480, 640, (5, 5, 5))], pad_to=(832, 1344))
    assert batch.shape == (1, 3, 832, 1344)
    assert meta.pad_shape == (832, 1344)
    assert np.all(batch[0, :, 800:, :] == 0.0) and np.all(batch[0, :, :, 1067:] == 0.0)


@pytest.mark.parametrize("pad_to", [(801, 1088), (800, 1100), (0, 640), (640.5, 640)])
def test_pad_to_not_multiple_is_rejected(pad_to: tuple[int, int]) -> None:
    with pytest.raises(UserError, match="pad_to"):
        preprocess([_constant(480, 640, (0, 0, 0))], pad_to=pad_to)


@pytest.mark.parametrize(("picture", "pad_to", "expected"), [
    ((480, 640), (640, 640), (480, 640)),      # landscape: the width bounds it
    ((640, 427), (640, 640), (640, 427)),      # portrait: the height bounds it (keep-ratio s = 1.25 -> 1.0)
    ((480, 640), (800, 1056), (792, 1056)),    # the test scale alone would give 800 x 1067: fit the width
    ((500, 375), (384, 640), (384, 288)),      # portrait into a landscape input
    ((100, 4000), (640, 640), (16, 640)),      # an elongated picture still fits
])
def test_letterbox_rule_fits_any_picture(picture, pad_to, expected) -> None:
    """docs/contract.md: s = min(keep-ratio s, H / h, W / w); the picture sits top-left, zero padding around."""
    h, w = picture
    assert rescale_size(h, w, (1333, 800), fit=pad_to) == expected
    s = min(1333 / max(h, w), 800 / min(h, w), pad_to[0] / h, pad_to[1] / w)
    assert expected == (int(h * s + 0.5), int(w * s + 0.5))
    batch, (meta,) = preprocess([_constant(h, w, (9, 9, 9))], pad_to=pad_to)
    assert batch.shape == (1, 3, *pad_to) and meta.img_shape == expected and meta.pad_shape == pad_to
    eh, ew = expected
    assert np.all(batch[0, :, eh:, :] == 0.0) and np.all(batch[0, :, :, ew:] == 0.0) and np.all(batch[0, :, :eh, :ew] != 0.0)
    np.testing.assert_allclose(meta.scale_factor, [ew / w, eh / h, ew / w, eh / h])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), dtype=np.float32),
        np.zeros((10, 10), dtype=np.uint8),
        np.zeros((10, 10, 4), dtype=np.uint8),
        np.zeros((0, 10, 3), dtype=np.uint8),
        [[0, 0, 0]],
    ],
)
def test_rejects_images_that_are_not_uint8_hwc3(bad: object) -> None:
    with pytest.raises(UserError, match="image 1"):
        preprocess([_constant(8, 8, (0, 0, 0)), bad])  # type: ignore[list-item]


def test_rejects_empty_batch_and_bare_image() -> None:
    with pytest.raises(UserError):
        preprocess([])
    with pytest.raises(UserError, match="list"):
        preprocess(_constant(8, 8, (0, 0, 0)))  # type: ignore[arg-type]


def test_accepts_non_contiguous_view() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    view = image[:, ::-1]  # negative stride
    batch, _ = preprocess([view])
    expected, _ = preprocess([np.ascontiguousarray(view)])
    np.testing.assert_array_equal(batch, expected)


# --- mapping back ------------------------------------------------------------------------------------


def test_boxes_to_original_inverts_the_scaling() -> None:
    _, (meta,) = preprocess([_constant(480, 640, (0, 0, 0))])
    np.testing.assert_allclose(
        boxes_to_original(np.array([[0, 0, 1067, 800], [106.7, 80, 533.5, 400]], np.float32), meta),
        [[0, 0, 640, 480], [64, 48, 320, 240]],
        rtol=1e-5,
    )
    rng = np.random.default_rng(2)
    original = rng.uniform(0, 480, (50, 4)).astype(np.float32)
    scaled = original * meta.scale_factor
    restored = boxes_to_original(scaled, meta)
    assert restored.dtype == np.float32 and restored.shape == (50, 4)
    np.testing.assert_allclose(restored, original, rtol=1e-6, atol=1e-4)


def test_boxes_to_original_does_not_clamp() -> None:
    meta = ImageMeta((100, 200), (200, 400), np.array([2, 2, 2, 2], np.float32), (224, 416))
    np.testing.assert_array_equal(boxes_to_original(np.array([[-10, -4, 500, 300]], np.float32), meta),
                                  [[-5, -2, 250, 150]])


def test_boxes_to_original_rejects_wrong_shape() -> None:
    meta = ImageMeta((1, 1), (1, 1), np.ones(4, np.float32), (32, 32))
    with pytest.raises(UserError, match="K x 4"):
        boxes_to_original(np.zeros((3, 5), np.float32), meta)


def test_detections_to_original_keeps_scores_and_labels() -> None:
    meta = ImageMeta((100, 200), (150, 400), np.array([2, 1.5, 2, 1.5], np.float32), (160, 416))
    dets = spec.Detections(
        boxes=np.array([[20, 30, 40, 60], [0, 0, 400, 150]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        labels=np.array([3, 0], np.int64),
    )
    mapped = detections_to_original(dets, meta)
    np.testing.assert_allclose(mapped.boxes, [[10, 20, 20, 40], [0, 0, 200, 100]])
    np.testing.assert_array_equal(mapped.scores, dets.scores)
    np.testing.assert_array_equal(mapped.labels, dets.labels)
    assert mapped.scores is not dets.scores
    np.testing.assert_array_equal(dets.boxes[0], [20, 30, 40, 60])  # input left alone


def test_reused_output_buffer_equals_a_fresh_batch() -> None:
    """Writing into the previous batch (Detector.detect) clears the old picture's area outside the new one."""
    big, small = _constant(480, 640, (200, 100, 50)), _constant(240, 160, (10, 20, 30))
    first, _ = preprocess([big, big], pad_to=(800, 1088))
    again, metas = preprocess([small, big], pad_to=(800, 1088), out=first)
    fresh, fresh_metas = preprocess([small, big], pad_to=(800, 1088))
    assert again is first
    np.testing.assert_array_equal(again, fresh)
    assert [m.img_shape for m in metas] == [m.img_shape for m in fresh_metas]
    other, _ = preprocess([small], pad_to=(800, 1088), out=first)  # another shape: a new array
    assert other is not first and other.shape == (1, 3, 800, 1088)


def test_letterbox_pixels_is_the_resized_picture_of_preprocess(tiny50: Path) -> None:
    """The uint8 path stops before the normalisation: same geometry and metas, the same resized BGR pixels."""
    from gflv2_deploy.data.preprocess import letterbox_pixels, preprocess_for
    from gflv2_deploy.contract import INPUT_UINT8, Preprocessing

    pictures = [read_image(p) for p in sorted((tiny50 / "val2017").glob("*.jpg"))[:3]]
    floats, metas = preprocess(pictures, scale=(384, 256))
    pixels, metas8 = letterbox_pixels(pictures, scale=(384, 256))
    assert pixels.dtype == np.uint8 and pixels.shape == (3, floats.shape[2], floats.shape[3], 3)
    assert [m.img_shape for m in metas8] == [m.img_shape for m in metas]
    for i, (picture, meta) in enumerate(zip(pictures, metas)):
        h, w = meta.img_shape
        resized = cv2.resize(picture, (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(pixels[i, :h, :w], resized)
        assert not pixels[i, h:].any() and not pixels[i, :h, w:].any()
        rgb = resized[:, :, ::-1].astype(np.float64)  # the normalisation the graph does, from these pixels
        np.testing.assert_allclose(floats[i, :, :h, :w], ((rgb - MEAN) / STD).transpose(2, 0, 1), rtol=0, atol=1e-6)
    again, _ = preprocess_for(pictures, Preprocessing(test_scale=(384, 256), input_format=INPUT_UINT8), out=pixels)
    assert again is pixels  # the buffer is reused, its padding cleared again
    fixed, _ = letterbox_pixels(pictures[:1], scale=(384, 256), pad_to=(256, 320))
    assert fixed.shape == (1, 256, 320, 3)
