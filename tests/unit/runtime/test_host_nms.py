"""The numpy host NMS (deployment path, no torch) against the torch reference ``model.nms.multiclass_nms``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gflv2_deploy.model.nms import multiclass_nms as torch_multiclass_nms
from gflv2_deploy.runtime.host_nms import multiclass_nms, pre_nms_detections


def _reference(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float, max_num: int):
    b, s, l = torch_multiclass_nms(torch.from_numpy(boxes), torch.from_numpy(scores), score_thr, iou_thr, max_num)
    return b.numpy(), s.numpy(), l.numpy()


def _random_case(seed: int, n: int = 400, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(2, 120, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = (rng.random((n, classes)) ** 3).astype(np.float32)
    return boxes, scores


def _assert_same(got, ref) -> None:
    np.testing.assert_array_equal(got.boxes, ref[0])
    np.testing.assert_array_equal(got.scores, ref[1])
    np.testing.assert_array_equal(got.labels, ref[2])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("iou_thr", "max_num"), [(0.6, 100), (0.3, 20), (0.9, 1000)])
def test_random_candidates_identical_to_torch(seed: int, iou_thr: float, max_num: int) -> None:
    boxes, scores = _random_case(seed)
    got = multiclass_nms(boxes, scores, 0.05, iou_thr, max_num)
    assert len(got) > 5
    _assert_same(got, _reference(boxes, scores, 0.05, iou_thr, max_num))


def test_adversarial_candidates_identical_to_torch() -> None:
    same = np.array([[10, 10, 50, 50]] * 4, np.float32)  # identical boxes
    zero_area = np.array([[5, 5, 5, 40], [60, 60, 60, 60]], np.float32)
    flipped = np.array([[80, 80, 40, 40], [40, 40, 80, 80]], np.float32)  # x2 < x1: zero area by clamping
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)  # IoU exactly 0
    boxes = np.concatenate([same, zero_area, flipped, touching])
    scores = np.zeros((len(boxes), 3), np.float32)
    scores[:4, 0] = 0.7  # exact ties: the lower index wins
    scores[:4, 1] = [0.2, 0.9, 0.05, 0.0500001]  # exactly at the threshold is dropped
    scores[4:6, 2] = 0.4
    scores[6:8, 0] = [0.6, 0.6]
    scores[8:, 1] = 0.3
    for iou_thr in (0.0, 0.5, 1.0):
        _assert_same(multiclass_nms(boxes, scores, 0.05, iou_thr, 100), _reference(boxes, scores, 0.05, iou_thr, 100))
    got = multiclass_nms(boxes, scores, 0.05, 0.5, 100)
    # class 0: one of the four identical boxes, and both flipped-pair boxes (a zero-area box suppresses nothing)
    assert got.labels.tolist().count(0) == 3 and got.scores[0] == np.float32(0.9)


def test_nothing_above_threshold_and_more_survivors_than_k() -> None:
    boxes, scores = _random_case(3)
    empty = multiclass_nms(boxes, scores * 0.01, 0.05, 0.6, 100)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    far = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(50)], np.float32)  # 50 disjoint boxes
    capped = multiclass_nms(far, np.full((50, 1), 0.5, np.float32), 0.05, 0.6, 7)
    assert len(capped) == 7 and capped.boxes[:, 0].tolist() == [i * 20 for i in range(7)]  # ties: index order


def test_pre_nms_detections_clamps_each_image() -> None:
    boxes = np.array([[[-10, -5, 500, 400], [10, 10, 20, 20]]] * 2, np.float32)
    scores = np.array([[[0.9], [0.8]]] * 2, np.float32)
    dets = pre_nms_detections(boxes, scores, np.array([[100, 200], [300, 50]], np.float32), 0.05, 0.6, 100)
    np.testing.assert_array_equal(dets[0].boxes[0], [0, 0, 200, 100])
    np.testing.assert_array_equal(dets[1].boxes[0], [0, 0, 50, 300])
