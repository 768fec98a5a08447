"""Cross-backend comparison numbers: IoU matching, tensor error statistics, budgets (numpy only, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.eval.compare import (
    BOX_ATOL, TOLERANCES, DetectionAgreement, TensorErrorAccumulator, Tolerance, ap_comparison, box_iou,
    build_report, check_budgets, default_budgets, match_detections,
)  # fmt: skip


def dets(boxes, scores, labels) -> spec.Detections:
    return spec.Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                           np.asarray(labels, np.int64))


def random_dets(n: int, seed: int = 0, classes: int = 3) -> spec.Detections:
    """n detections on a grid (pairwise IoU < 0.6 within a class, as after NMS), random scores and labels."""
    rng = np.random.default_rng(seed)
    xy = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2)[:n] * 50.0
    size = rng.uniform(20, 45, (n, 2))
    boxes = np.concatenate([xy, xy + size], 1)
    scores = np.sort(rng.uniform(0.05, 1, n))[::-1]
    return dets(boxes, scores, rng.integers(0, classes, n))


def test_box_iou_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 10]], np.float32)  # second: zero width
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    assert np.all(iou[1] == 0)  # an empty box overlaps nothing, not even itself
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_permuted_order_still_matches_everything() -> None:
    ref = random_dets(40, seed=1)
    perm = np.random.default_rng(2).permutation(len(ref))
    test = dets(ref.boxes[perm], ref.scores[perm], ref.labels[perm])
    m = match_detections(ref, test, iou_thr=0.99)
    assert m.matched == len(ref) == 40
    assert np.array_equal(perm[m.test_index], m.ref_index)  # each pair is the same detection
    assert np.all(m.score_delta == 0) and np.all(m.iou == 1.0)


def test_shifted_box_is_unmatched_at_099_but_matched_at_09() -> None:
    ref = dets([[100, 100, 200, 200], [300, 300, 340, 340]], [0.9, 0.8], [0, 1])
    shifted = dets([[102, 100, 202, 200], [300, 300, 340, 340]], [0.9, 0.8], [0, 1])  # 2 px of 100: IoU 0.96
    m = match_detections(ref, shifted, iou_thr=0.99)
    assert m.matched == 1 and m.ref_index.tolist() == [1]
    assert match_detections(ref, shifted, iou_thr=0.9).matched == 2


def test_other_class_or_missing_box_does_not_match() -> None:
    ref = dets([[0, 0, 50, 50], [60, 60, 90, 90]], [0.9, 0.5], [0, 0])
    other_label = dets([[0, 0, 50, 50]], [0.9], [1])
    assert match_detections(ref, other_label).matched == 0
    assert match_detections(ref, dets(np.zeros((0, 4)), [], [])).matched == 0
    one = match_detections(ref, dets([[60, 60, 90, 90]], [0.5], [0]))
    assert (one.matched, one.num_ref, one.num_test) == (1, 2, 1)


def test_a_test_box_is_used_once_and_the_higher_scored_reference_goes_first() -> None:
    # two reference boxes of one class almost on top of each other (a multi-label case would be a different
    # class; here we force the conflict): the single test box goes to the higher-scored reference.
    ref = dets([[0, 0, 100, 100], [0, 0, 100, 100.5]], [0.6, 0.9], [2, 2])
    test = dets([[0, 0, 100, 100.2]], [0.9], [2])
    m = match_detections(ref, test, iou_thr=0.99)
    assert m.matched == 1 and m.ref_index.tolist() == [1]


def test_degenerate_boxes_match_by_corner_distance() -> None:
    ref = dets([[640, 10, 640, 30]], [0.3], [0])  # clamped to zero width at the image edge
    assert match_detections(ref, dets([[640, 10, 640, 30 + BOX_ATOL / 2]], [0.3], [0])).matched == 1
    assert match_detections(ref, dets([[640, 10, 640, 31]], [0.3], [0])).matched == 0


def test_agreement_counts_and_score_deltas() -> None:
    agree = DetectionAgreement(iou_thr=0.99, max_score_delta=1e-4, class_names=("a", "b", "c"))
    ref = random_dets(10, seed=3)
    test = dets(ref.boxes[:8], ref.scores[:8] + np.float32(2e-4) * (np.arange(8) == 0), ref.labels[:8])
    agree.update("img1", ref, test)
    agree.update("img2", ref, ref)
    r = agree.result()
    assert (r["num_ref"], r["num_test"], r["matched"]) == (20, 18, 18)
    assert r["unmatched_ref"] == 2 and r["unmatched_test"] == 0
    assert r["matched_fraction"] == pytest.approx(0.9)
    assert r["matched_within_score_fraction"] == pytest.approx(17 / 20)
    assert r["score_delta_max"] == pytest.approx(2e-4, rel=1e-3)
    assert sum(v["ref"] for v in r["per_class"].values()) == 20
    assert r["worst_images"][0]["image"] == "img1"


def test_identical_tensors_have_zero_error_and_pass() -> None:
    x = np.random.default_rng(0).uniform(0, 1, (2, 300, 6)).astype(np.float32)
    acc = TensorErrorAccumulator("scores", TOLERANCES["fp32"]["scores"])
    acc.update(x, x.copy())
    r = acc.result()
    assert r["passed"] and r["max_abs"] == r["mean_abs"] == r["p99_abs"] == r["max_rel"] == 0.0
    assert r["elements"] == x.size and r["violations"] == 0


def test_tensor_statistics_against_numpy() -> None:
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 1000, (3, 500, 4))
    err = rng.lognormal(-9, 2, ref.shape)  # errors spread over many decades
    acc = TensorErrorAccumulator("boxes", Tolerance(atol=1e-3, rtol=0.0))
    acc.update(ref[:1], ref[:1] + err[:1])
    acc.update(ref[1:], ref[1:] - err[1:], batch_offset=1)
    r = acc.result()
    assert r["max_abs"] == pytest.approx(err.max(), rel=1e-6)
    assert r["mean_abs"] == pytest.approx(err.mean(), rel=1e-6)
    exact = np.percentile(err, 99, method="inverted_cdf")
    assert exact <= r["p99_abs"] * (1 + 1e-6) and r["p99_abs"] <= exact * 1.024  # histogram: upper bound within one bin
    assert r["violations"] == int((err > 1e-3).sum()) > 0 and not r["passed"]
    worst = r["worst"]["index"]
    assert err[tuple(worst)] == pytest.approx(err.max()) and abs(r["worst"]["test"] - r["worst"]["ref"]) == pytest.approx(err.max())
    rel = err / np.maximum(ref, 1e-3)
    assert r["max_rel"] == pytest.approx(rel.max(), rel=1e-6)


def test_relative_tolerance_and_nonfinite_values() -> None:
    tol = Tolerance(atol=1e-4, rtol=1e-2)
    acc = TensorErrorAccumulator("scores", tol)
    acc.update(np.array([0.5, 1e-6]), np.array([0.504, 1e-6 + 5e-5]))  # 0.004 <= 1% of 0.5; 5e-5 <= atol
    assert acc.passed
    acc.update(np.array([0.5]), np.array([0.51]))  # 0.01 > both
    assert not acc.passed and acc.violations == 1
    nan = TensorErrorAccumulator("scores", tol)
    nan.update(np.array([0.5, 0.5]), np.array([0.5, np.nan]))
    assert nan.result()["nonfinite"] == 1 and not nan.passed
    with pytest.raises(ValueError, match="shape"):
        nan.update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_budgets_table_and_overrides() -> None:
    b = default_budgets("fp32")
    assert (b.iou_thr, b.min_matched, b.max_score_delta, b.max_ap_drop) == (0.99, 0.995, 1e-4, 0.001)
    assert b.tolerances["scores"].atol == 1e-4 and b.tolerances["boxes"].atol == 1e-3
    assert default_budgets("fp32", min_matched=0.5, iou_thr=None).min_matched == 0.5
    assert default_budgets("int8").iou_thr < b.iou_thr
    with pytest.raises(ValueError, match="fp32, fp16, int8"):
        default_budgets("fp8")


def _report(*, tensor_err: float = 0.0, drop_ref: int = 0, delta: float = 0.0, ap_drop: float = 0.0) -> dict:
    budgets = default_budgets("fp32")
    scores = np.linspace(0, 1, 100)
    acc = {"scores": TensorErrorAccumulator("scores", budgets.tolerances["scores"])}
    acc["scores"].update(scores, scores + tensor_err)
    agree = DetectionAgreement(budgets.iou_thr, budgets.max_score_delta)
    ref = random_dets(100, seed=5)
    keep = len(ref) - drop_ref
    agree.update(1, ref, dets(ref.boxes[:keep], ref.scores[:keep] + np.float32(delta), ref.labels[:keep]))
    stats = [0.5] + [0.0] * 11
    ap = ap_comparison({"stats": stats}, {"stats": [0.5 - ap_drop] + [0.0] * 11})
    return build_report(ref={"label": "a"}, test={"label": "b"}, budgets=budgets, tensors=acc, tensors_note=None,
                        detections=agree, ap=ap, settings={})


def test_report_passes_within_budgets_and_names_each_exceeded_budget() -> None:
    ok = _report()
    assert ok["passed"] and ok["failures"] == [] and ok["ap"]["ap_drop"] == 0
    assert _report(drop_ref=0, delta=5e-5, ap_drop=0.0009)["passed"]
    failures = _report(tensor_err=1e-3, drop_ref=2, delta=1e-3, ap_drop=0.01)["failures"]
    assert len(failures) == 4
    assert failures[0].startswith("scores:") and "atol 0.0001" in failures[0]
    assert "matched fraction 0.9800 < 0.995" in failures[1]
    assert "max |score delta|" in failures[2]
    assert failures[3].startswith("AP: drop 0.0100")
    assert [f for f in check_budgets(_report(drop_ref=1)) if "matched fraction 0.9900" in f]


def test_matched_fraction_threshold_is_inclusive_of_the_budget() -> None:
    # 1 of 200 unmatched = 0.995: exactly the budget passes
    budgets = default_budgets("fp32")
    agree = DetectionAgreement(budgets.iou_thr, budgets.max_score_delta)
    ref = random_dets(100, seed=6)
    agree.update(1, ref, ref)
    agree.update(2, ref, dets(ref.boxes[1:], ref.scores[1:], ref.labels[1:]))
    report = build_report(ref={}, test={}, budgets=budgets, tensors=None, tensors_note="none", detections=agree, ap=None,
                          settings={})
    assert report["detections"]["matched_fraction"] == 0.995 and report["passed"]


def test_align_selected_rows_pairs_near_ties_and_keeps_real_errors() -> None:
    from gflv2_deploy.eval.compare import align_selected_rows

    rng = np.random.default_rng(0)
    k, levels = 6, 2
    scores = np.sort(rng.random((1, levels * k, 3)), axis=1)[:, ::-1].copy()
    boxes = rng.random((1, levels * k, 4)).astype(np.float32)
    ref = {"scores": scores, "boxes": boxes}
    swapped = {key: value.copy() for key, value in ref.items()}
    for key in swapped:  # rows 1 and 2 swap places (a near tie); the last row of level 2 is another point
        swapped[key][0, [1, 2]] = swapped[key][0, [2, 1]]
        swapped[key][0, -1] = 5.0
    aligned, unpaired = align_selected_rows(ref, swapped, k, window=2)
    assert unpaired == 1
    np.testing.assert_array_equal(aligned["scores"], swapped["scores"])
    np.testing.assert_array_equal(aligned["boxes"], swapped["boxes"])
    shifted = {key: value + 0.05 for key, value in ref.items()}  # a real error: every row off, nothing hidden
    aligned, unpaired = align_selected_rows(ref, shifted, k, window=2)
    error = np.abs(aligned["scores"] - shifted["scores"]).max(axis=2)[0]
    assert unpaired <= 2 * levels and error.max() > 0.03  # only boundary rows may go unpaired: the shift shows


def test_align_selected_rows_follows_points_reordered_far_by_low_precision() -> None:
    """FP16 score errors (~1e-3) reorder near-tied points of a per-level top-k by tens of places: each point must
    still face itself (a +-4 row window paired different points and reported box errors of ~100 px)."""
    from gflv2_deploy.eval.compare import align_selected_rows

    rng = np.random.default_rng(1)
    k, levels, classes = 200, 2, 3
    scores = 0.3 + 1e-3 * rng.random((1, levels * k, classes))  # dense near-ties, as low-confidence points are
    boxes = rng.random((1, levels * k, 4)) * 500.0  # every point its own box
    ref = {"scores": scores.astype(np.float32), "boxes": boxes.astype(np.float32)}
    test = {"scores": ref["scores"] + rng.normal(0, 1e-3, scores.shape).astype(np.float32),
            "boxes": ref["boxes"] + rng.normal(0, 0.05, boxes.shape).astype(np.float32)}
    for start in range(0, levels * k, k):  # each side sorted by its own max score
        order = start + np.argsort(-test["scores"][0, start:start + k].max(axis=1), kind="stable")
        for key in test:
            test[key][0, start:start + k] = test[key][0, order]
    moved = np.abs(np.argsort(order - start) - np.arange(k)).max()
    assert moved > 20  # far beyond the old window
    aligned, unpaired = align_selected_rows(ref, test, k, score_tol=5e-3, box_tol=1.0)
    assert unpaired == 0
    assert np.abs(aligned["boxes"] - test["boxes"]).max() < 0.5
    assert np.abs(aligned["scores"] - test["scores"]).max() < 0.02
