"""The data behind the compare section: histogram bars, the worst images, AP rows, the two models."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy.eval.histogram import LogHistogram
from gflv2_deploy.report.compare_data import ap_rows, display_bins, model_rows, select_worst, verdict


def _hist(values, **bins) -> dict:
    h = LogHistogram(**bins)
    h.add(np.asarray(values, np.float64))
    return h.to_dict()


def test_bars_span_the_filled_bins_and_zeros_stay_apart() -> None:
    # edges 1e-3 1e-2 1e-1 1: bins (<=1e-3] (1e-3,1e-2] (1e-2,1e-1] (1e-1,1] (>1)
    bars = display_bins(_hist([0, 0, 5e-3, 5e-3, 0.5, 20], min_exp=-3, max_exp=0, bins_per_decade=1))
    np.testing.assert_allclose(bars.lo, [1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(bars.hi, [1e-2, 1e-1, 1.0, 10.0])  # the overflow bar ends one bin above 1
    assert bars.counts.tolist() == [2, 0, 1, 1]
    assert bars.zeros == 2 and bars.total == 6


def test_small_values_below_the_range_get_the_first_bar() -> None:
    bars = display_bins(_hist([1e-5, 2e-3], min_exp=-3, max_exp=0, bins_per_decade=1))
    np.testing.assert_allclose(bars.lo, [1e-4, 1e-3])
    assert bars.counts.tolist() == [1, 1] and bars.zeros == 0


def test_merging_keeps_every_count() -> None:
    bars = display_bins(_hist([0, 0, 5e-3, 5e-3, 0.5, 20], min_exp=-3, max_exp=0, bins_per_decade=1), max_bins=2)
    np.testing.assert_allclose(bars.lo, [1e-3, 1e-1])
    np.testing.assert_allclose(bars.hi, [1e-1, 10.0])
    assert bars.counts.tolist() == [2, 2]
    many = display_bins(_hist(np.geomspace(1e-9, 1e2, 1000)), max_bins=24)  # 10 bins per decade over 11 decades
    assert len(many.counts) <= 24 and many.counts.sum() == 1000


def test_only_zeros_or_nothing_gives_no_bars() -> None:
    bars = display_bins(_hist([0, 0, 0]))
    assert bars.empty and bars.zeros == 3 and bars.total == 3
    assert display_bins(_hist([])).empty


def _rec(image, ref, test, matched, score, box=0.0) -> dict:
    return {"image": image, "ref": ref, "test": test, "matched": matched, "max_score_delta": score, "max_box_delta": box}


def test_worst_images_by_unmatched_then_score_then_box() -> None:
    details = [_rec("a", 5, 5, 5, 1e-3, 4.0), _rec("b", 5, 4, 4, 0.0), _rec("c", 5, 5, 5, 2e-3), _rec("d", 6, 4, 4, 0.0),
               _rec("e", 5, 5, 5, 1e-3, 5.0), _rec("f", 5, 4, 4, 1e-2)]
    # unmatched: d 2+0=2; b 1; f 1 (larger score delta than b); then c (score 2e-3); e and a tie on score, e has the larger box
    assert [r["image"] for r in select_worst(details, 10)] == ["d", "f", "b", "c", "e", "a"]
    assert [r["image"] for r in select_worst(details, 2)] == ["d", "f"]
    assert select_worst(details, 0) == []


def test_ap_rows_and_verdict() -> None:
    ap = {"ref": {"AP": 0.5, "AP50": 0.7}, "test": {"AP": 0.45, "AP50": 0.72}, "ap_drop": 0.05}
    rows = ap_rows(ap)
    assert [(r[0], r[1], r[2]) for r in rows] == [("AP", 0.5, 0.45), ("AP50", 0.7, 0.72)]
    assert rows[0][3] == pytest.approx(-0.05) and rows[1][3] == pytest.approx(0.02)
    assert ap_rows(None) == []
    assert verdict({"passed": False}) is False


def test_model_rows_read_the_contract() -> None:
    contract = {"precision": {"compute": "int8", "recipe": {"activations": "uint8"}},
                "postprocessing": {"nms": "onnx", "nms_pre_in_graph": True},
                "producer": {"exporter": "dynamo", "opset": 20, "torch_version": "2.13.0"},
                "model": {"checkpoint": "run/latest.pth", "checkpoint_sha256": "0123456789abcdef"},
                "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, 640, 640]}]}
    data = {"ref": {"backend": "torch", "test_cfg": {"nms_pre": 1000, "score_thr": 0.05, "iou_thr": 0.6, "max_per_img": 100,
                                                     "scale": [1333, 800]}, "outputs": ["boxes", "scores"], "precision": "fp32"},
            "test": {"backend": "onnxruntime", "model": "m.onnx", "precision": "int8", "contract": contract,
                     "test_cfg": {"nms_pre": 1000}, "outputs": ["dets", "labels"]}}
    rows = {fact: (ref, test) for fact, ref, test in model_rows(data)}
    assert rows["precision"] == ("fp32", "int8 (activations=uint8)")
    assert rows["NMS"] == ("host (torch reference)", "in the graph (ONNX NonMaxSuppression)")
    assert rows["input"][1] == "images float32 [batch, 3, 640, 640]"
    assert rows["nms_pre"][1] == "1000 (selected in the graph)"
    assert rows["checkpoint"][1] == "run/latest.pth (sha256 0123456789ab)"
    assert rows["exported by"][1] == "dynamo exporter, opset 20, torch 2.13.0"
