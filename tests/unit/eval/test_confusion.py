"""Confusion matrix at IoU 0.5 and the most-missed images, against a hand-worked image."""

from __future__ import annotations

import numpy as np

from gflv2_deploy.eval.confusion import (CONFUSED, FALSE_POSITIVE, FOUND, IGNORED, MISSED, TRUE_POSITIVE, WRONG_CLASS,
                                         ConfusionAccumulator, match_to_ground_truth)

CAT, DOG, BIRD = 0, 1, 2
GT_BOXES = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]]
GT_LABELS = [CAT, DOG, BIRD, CAT]
DET_BOXES = [[0, 0, 10, 10],  # d0 cat on the cat g0: found
             [20, 0, 30, 10],  # d1 cat on the dog g1: confused
             [40, 0, 50, 10],  # d2 bird on the bird g2, but score 0.2 < 0.3: not kept, so g2 is missed
             [100, 100, 110, 110],  # d3 dog on nothing: false positive
             [200, 0, 210, 10],  # d4 cat inside the crowd region: ignored
             [60, 0, 70, 10.5],  # d5 dog on the cat g3, IoU 0.95: loses g3 to d6 of its own class, false positive
             [60, 0, 70, 12]]  # d6 cat on g3, IoU 0.83: found
DET_LABELS = [CAT, CAT, BIRD, DOG, CAT, DOG, CAT]
DET_SCORES = [0.9, 0.8, 0.2, 0.7, 0.6, 0.75, 0.5]
CROWD = [[195, 0, 215, 12]]


def test_one_image_by_hand() -> None:
    out = match_to_ground_truth(GT_BOXES, GT_LABELS, DET_BOXES, DET_LABELS, DET_SCORES, CROWD)
    assert out.gt_status.tolist() == [FOUND, CONFUSED, MISSED, FOUND]
    assert out.det_keep.tolist() == [0, 1, 3, 4, 5, 6]  # d2 is below the score threshold
    assert out.det_status.tolist() == [TRUE_POSITIVE, WRONG_CLASS, FALSE_POSITIVE, IGNORED, FALSE_POSITIVE, TRUE_POSITIVE]
    assert out.gt_partner.tolist() == [0, 1, -1, 5]  # indices into the kept detections


def test_matrix_by_hand_and_the_missed_images() -> None:
    acc = ConfusionAccumulator(["cat", "dog", "bird"])
    acc.update("A", GT_BOXES, GT_LABELS, DET_BOXES, DET_LABELS, DET_SCORES, CROWD, path="/a.jpg")
    acc.update("B", [[0, 0, 10, 10]], [DOG], np.zeros((0, 4)), [], [])  # one dog, nothing detected: missed
    acc.update("C", [[0, 0, 10, 10]], [BIRD], [[0, 0, 10, 10]], [BIRD], [0.9])  # all found: not a "missed" image
    result = acc.result()
    # rows: predicted cat, dog, bird, background; columns: true cat, dog, bird, background
    assert result["confusion"]["matrix"] == [[2, 1, 0, 0],
                                             [0, 0, 0, 2],
                                             [0, 0, 1, 0],
                                             [0, 1, 1, 0]]
    assert [r["image"] for r in result["missed_images"]] == ["A", "B"]
    a = result["missed_images"][0]
    assert (a["not_found"], a["missed"], a["confused"], a["path"]) == (2, 1, 1, "/a.jpg")
    assert a["gt"]["status"] == [FOUND, CONFUSED, MISSED, FOUND] and a["gt"]["predicted"] == [CAT, CAT, -1, CAT]
    assert a["detections"]["labels"] == [CAT, CAT, DOG, CAT, DOG, CAT]  # the kept ones


def test_keep_bounds_the_missed_images() -> None:
    acc = ConfusionAccumulator(["cat"], keep=2)
    for i in range(10):  # image i misses i + 1 cats
        acc.update(i, [[20 * k, 0, 20 * k + 10, 10] for k in range(i + 1)], [CAT] * (i + 1), np.zeros((0, 4)), [], [])
    assert [r["image"] for r in acc.result()["missed_images"]] == [9, 8]
    assert acc.result()["confusion"]["matrix"] == [[0, 0], [55, 0]]
