"""What a comparison keeps for its report: box deltas, Δ histograms, the worst images with their detections."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.eval.compare import budget_checks, check_budgets
from gflv2_deploy.eval.histogram import LogHistogram
from gflv2_deploy.eval.matching import DetectionAgreement, match_detections, worst_first_key


def dets(boxes, scores, labels) -> spec.Detections:
    return spec.Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                           np.asarray(labels, np.int64))


def test_box_delta_is_the_largest_corner_difference_of_each_pair() -> None:
    ref = dets([[0, 0, 100, 100], [200, 200, 260, 260]], [0.9, 0.5], [0, 1])
    test = dets([[200, 200, 260, 260.25], [0.5, 0, 100, 100]], [0.5, 0.875], [1, 0])
    m = match_detections(ref, test, iou_thr=0.9)
    order = np.argsort(m.ref_index)
    assert m.ref_index[order].tolist() == [0, 1] and m.test_index[order].tolist() == [1, 0]
    assert m.box_delta[order].tolist() == [0.5, 0.25]
    assert m.score_delta[order] == pytest.approx([-0.025, 0.0])


def test_histograms_count_every_matched_pair() -> None:
    agree = DetectionAgreement(iou_thr=0.9, max_score_delta=1e-2)
    ref = dets([[0, 0, 100, 100], [200, 200, 260, 260], [300, 0, 340, 40]], [0.9, 0.5, 0.4], [0, 1, 1])
    test = dets([[0, 0, 100, 100], [200, 200, 260, 260.5], [300, 0, 340, 40]], [0.9, 0.5 + 2 ** -7, 0.4], [0, 1, 1])
    agree.update("a", ref, test)
    r = agree.result()
    score, box = LogHistogram.from_dict(r["score_delta_hist"]), LogHistogram.from_dict(r["box_delta_hist"])
    assert score.total == box.total == 3
    assert score.zeros == 2 and box.zeros == 2  # two identical pairs
    assert score.counts[np.searchsorted(score.edges, 2 ** -7)] == 1  # the one pair, in the bin holding 2^-7
    assert box.counts[np.searchsorted(box.edges, 0.5)] == 1
    assert r["box_delta_max"] == 0.5 and r["box_delta_mean"] == pytest.approx(0.5 / 3)


def test_worst_first_key_orders_by_unmatched_then_score_then_box() -> None:
    records = [
        {"image": "same", "ref": 3, "test": 3, "matched": 3, "max_score_delta": 0.0, "max_box_delta": 0.0},
        {"image": "box", "ref": 3, "test": 3, "matched": 3, "max_score_delta": 0.01, "max_box_delta": 2.0},
        {"image": "score", "ref": 3, "test": 3, "matched": 3, "max_score_delta": 0.02, "max_box_delta": 0.0},
        {"image": "one lost", "ref": 3, "test": 2, "matched": 2, "max_score_delta": 0.0, "max_box_delta": 0.0},
        {"image": "two lost", "ref": 2, "test": 2, "matched": 1, "max_score_delta": 0.0, "max_box_delta": 0.0},
    ]
    assert [r["image"] for r in sorted(records, key=worst_first_key)] == ["two lost", "one lost", "score", "box", "same"]


def test_worst_details_keep_the_detections_of_the_worst_images_only() -> None:
    agree = DetectionAgreement(iou_thr=0.9, max_score_delta=1e-2, class_names=("a", "b"), keep_details=3)
    base = dets([[0, 0, 50, 50], [100, 100, 180, 160]], [0.8, 0.6], [0, 1])
    for i in range(20):  # image i: score delta i * 1e-3 on the first box; images 5 and 11 also lose the second box
        test = dets(base.boxes, base.scores + np.float32([i * 1e-3, 0.0]), base.labels)
        if i in (5, 11):
            test = dets(test.boxes[:1], test.scores[:1], test.labels[:1])
        agree.update(i, base, test, path=f"/pictures/{i}.jpg")
    agree.update("same", base, base)  # identical: never a "worst" image
    details = agree.result()["worst_details"]
    assert [d["image"] for d in details] == [11, 5, 19]
    first = details[0]
    assert first["path"] == "/pictures/11.jpg" and first["ref_detections"]["matched"] == [True, False]
    assert first["test_detections"]["matched"] == [True] and first["ref_detections"]["labels"] == [0, 1]
    assert first["ref_detections"]["boxes"][1] == [100.0, 100.0, 180.0, 160.0]
    assert agree.result()["class_names"] == ["a", "b"]


def test_budget_checks_list_every_budget_and_failures_match_check_budgets() -> None:
    report = {
        "budgets": {"min_ref_dets": 1, "min_matched": 0.99, "max_score_delta": 1e-4, "max_ap_drop": 0.001},
        "tensors": {"scores": {"passed": True, "nonfinite": 0, "violations": 0, "elements": 10, "atol": 1e-4, "rtol": 1e-5,
                               "max_abs": 0.0, "max_rel": 0.0}},
        "detections": {"num_ref": 10, "matched_fraction": 0.9, "iou_thr": 0.99, "unmatched_ref": 1, "unmatched_test": 0,
                       "score_delta_max": 5e-5},
        "ap": {"ap_drop": 0.01, "ref": {"AP": 0.5}, "test": {"AP": 0.49}},
    }
    checks = budget_checks(report)
    assert [(c.budget, c.passed) for c in checks] == [("pre-NMS scores", True), ("reference detections", True),
                                                       ("matched fraction", False), ("max |score delta|", True),
                                                       ("AP drop", False)]
    assert check_budgets(report) == [c.failure for c in checks if not c.passed]
    assert check_budgets(report)[0].startswith("detections: matched fraction 0.9000 < 0.99")
