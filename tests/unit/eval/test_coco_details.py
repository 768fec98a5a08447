"""Per-class AP and precision-recall curves read from COCOeval agree with its own summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.eval.coco_eval import evaluate_coco


@pytest.fixture(scope="module")
def gt(tiny50: Path) -> dict:
    return json.loads((tiny50 / "annotations" / "instances_val2017.json").read_text())


def _results(gt: dict, seed: int, drop: float, jitter: float) -> list[dict]:
    """The ground truth as detections, some dropped, boxes jittered, random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for a in gt["annotations"]:
        if a.get("iscrowd", 0) or rng.uniform() < drop:
            continue
        x, y, w, h = a["bbox"]
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.1, 1.0)),
                    "bbox": [x + rng.normal(0, jitter * w), y + rng.normal(0, jitter * h), w, h]})
    return out


def test_perfect_detections_give_ap_one_per_class_with_objects(tiny50: Path, gt: dict) -> None:
    m = evaluate_coco(tiny50 / "annotations" / "instances_val2017.json", _results(gt, 0, 0.0, 0.0), details=True)
    rows = {r["class"]: r for r in m["per_class"]}
    assert len(rows) == len(gt["categories"]) == 80
    with_gt = {r["class"] for r in m["per_class"] if r["gt"] > 0}
    assert with_gt and all(rows[c]["AP"] == pytest.approx(1.0) and rows[c]["AP50"] == pytest.approx(1.0) for c in with_gt)
    assert all(rows[c]["AP"] == -1 for c in rows if c not in with_gt)  # undefined, not zero
    assert rows["person"]["gt"] == sum(1 for a in gt["annotations"] if a["category_id"] == 1 and not a.get("iscrowd", 0))
    assert sum(r["detections"] for r in m["per_class"]) == m["num_detections"]


def test_mean_of_per_class_ap_is_the_headline_ap_and_curves_have_101_points(tiny50: Path, gt: dict) -> None:
    m = evaluate_coco(tiny50 / "annotations" / "instances_val2017.json", _results(gt, 1, 0.3, 0.08), details=True)
    stats = dict(zip(m["stat_names"], m["stats"]))
    for key in ("AP", "AP50", "AP75"):
        defined = [r[key] for r in m["per_class"] if r[key] >= 0]
        assert np.mean(defined) == pytest.approx(stats[key], abs=1e-9), key
    assert 0.0 < stats["AP"] < 1.0
    pr = m["pr_curves"]
    assert len(pr["recall"]) == 101 and pr["recall"][0] == 0.0 and pr["recall"][-1] == 1.0
    assert [c["iou"] for c in pr["curves"]] == [0.5, 0.75]
    per_class = np.asarray(pr["curves"][0]["per_class"])
    assert per_class.shape == (80, 101)
    has_gt = np.array([r["gt"] > 0 for r in m["per_class"]])
    assert (per_class[~has_gt] == -1).all() and (per_class[has_gt] >= 0).all()
    # AP50 is the mean precision over the 101 recall points of the IoU 0.5 curve
    assert np.mean(pr["curves"][0]["mean"]) == pytest.approx(stats["AP50"], abs=1e-3)


def test_details_are_off_by_default(tiny50: Path, gt: dict) -> None:
    m = evaluate_coco(tiny50 / "annotations" / "instances_val2017.json", _results(gt, 2, 0.5, 0.0))
    assert "per_class" not in m and "pr_curves" not in m
