"""Drawing boxes: colours, dashes, labels, thresholds; the input picture is never modified."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.data.draw import class_color, draw_boxes, draw_detections
from gflv2_deploy.errors import UserError

GREY = 128


def _canvas() -> np.ndarray:
    return np.full((300, 400, 3), GREY, np.uint8)


def _changed(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.any(a != b, axis=2).sum())


def test_solid_box_in_its_colour_and_input_untouched() -> None:
    image = _canvas()
    out = draw_boxes(image, np.array([[50, 60, 250, 200]]), [None], [(255, 0, 0)])
    assert (image == GREY).all()
    for edge in (out[130, 50], out[60, 150]):  # left and top edges: the colour (anti-aliased lines blend a little)
        assert edge[0] > 220 and edge[1] < 40 and edge[2] < 40
    assert tuple(out[130, 150]) == (GREY,) * 3  # inside stays


def test_dashed_box_has_gaps_and_thick_doubles_the_line() -> None:
    image = _canvas()
    box = np.array([[50, 60, 250, 200]])
    solid = _changed(image, draw_boxes(image, box, [None], [(0, 0, 255)]))
    dashed = _changed(image, draw_boxes(image, box, [None], [(0, 0, 255)], dashed=[True]))
    thick = _changed(image, draw_boxes(image, box, [None], [(0, 0, 255)], thick=[True]))
    assert 0.3 * solid < dashed < 0.8 * solid
    assert thick > 1.6 * solid


def test_labels_are_drawn_on_a_tag_and_bad_boxes_skipped() -> None:
    image = _canvas()
    bare = draw_boxes(image, np.array([[50, 60, 250, 200]]), [None], [(0, 200, 0)])
    labelled = draw_boxes(image, np.array([[50, 60, 250, 200], [np.nan, 0, 1, 1]]), ["cat 0.91", "skipped"], [(0, 200, 0)] * 2)
    assert _changed(bare, labelled) > 200  # the tag above the box
    with pytest.raises(UserError):
        draw_boxes(np.zeros((10, 10), np.uint8), np.zeros((0, 4)), [], [])


def test_draw_detections_is_draw_boxes_with_class_colours_above_the_threshold() -> None:
    image = _canvas()
    dets = spec.Detections(np.array([[20, 20, 120, 120], [200, 100, 380, 280]], np.float32), np.array([0.9, 0.2], np.float32),
                           np.array([3, 1]))
    out = draw_detections(image, dets, ["a", "b", "c", "d"], score_thr=0.3)
    expected = draw_boxes(image, dets.boxes[:1], ["d 0.90"], [class_color(3)])
    assert np.array_equal(out, expected)
