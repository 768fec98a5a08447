"""COCO bbox evaluation: pycocotools' own reference numbers, perfect detections, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.coco_eval import STAT_NAMES, detections_to_coco_results, evaluate_coco, write_metrics


@pytest.fixture(scope="module")
def fake_eval(test_data: Path) -> Path:
    return test_data / "cocoapi_fake_eval"


@pytest.fixture(scope="module")
def tiny50_dataset(tiny50: Path) -> CocoDataset:
    return CocoDataset(*find_coco_files(tiny50))


def _perfect_results(ds: CocoDataset, image_ids: list[int]) -> list[dict]:
    """Every non-crowd ground-truth box of ``image_ids`` as a detection, via the real conversion."""
    results = []
    for image_id in image_ids:
        gt = ds.annotations(image_id)
        dets = spec.Detections(boxes=gt.boxes, scores=np.ones(len(gt), np.float32), labels=gt.labels)
        results += detections_to_coco_results(image_id, dets, ds.label_to_cat_id)
    return results


def test_reproduces_pycocotools_reference_stats(fake_eval: Path) -> None:
    reference = json.loads((fake_eval / "expected_stats.json").read_text())
    expected = reference["bbox"]
    metrics = evaluate_coco(fake_eval / reference["ground_truth"], fake_eval / expected["results"])
    assert metrics["stat_names"] == list(STAT_NAMES) and len(STAT_NAMES) == 12
    assert metrics["num_images"] == 100 and metrics["num_detections"] == 734
    np.testing.assert_allclose(metrics["stats"], expected["stats"], rtol=0, atol=1e-9)


def test_results_may_be_a_list_and_are_not_modified(fake_eval: Path) -> None:
    results = json.loads((fake_eval / "instances_val2014_fakebbox100_results.json").read_text())
    before = json.dumps(results)
    from_list = evaluate_coco(fake_eval / "instances_val2014_100.json", results)
    assert json.dumps(results) == before  # loadRes adds keys to what it gets; we hand it copies
    from_file = evaluate_coco(
        fake_eval / "instances_val2014_100.json", fake_eval / "instances_val2014_fakebbox100_results.json"
    )
    assert from_list["stats"] == from_file["stats"]


def test_perfect_detections_score_one(tiny50_dataset: CocoDataset, tiny50: Path) -> None:
    ds = tiny50_dataset
    results = _perfect_results(ds, ds.image_ids)
    assert len(results) == sum(len(ds.annotations(i)) for i in ds.image_ids)  # crowd regions excluded
    first = results[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score"} and first["category_id"] in spec.COCO_CATEGORY_IDS
    metrics = evaluate_coco(tiny50 / "annotations" / "instances_val2017.json", results)
    stats = dict(zip(STAT_NAMES, metrics["stats"]))
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "ARs", "ARm", "ARl"):
        assert stats[name] == pytest.approx(1.0, abs=1e-12), name
    assert stats["AR1"] < 1.0  # one detection per image cannot recall crowded images


def test_image_ids_restrict_the_evaluation(tiny50_dataset: CocoDataset, tiny50: Path) -> None:
    ds = tiny50_dataset
    half = ds.image_ids[::2]
    results = _perfect_results(ds, half)
    gt = tiny50 / "annotations" / "instances_val2017.json"
    restricted = evaluate_coco(gt, results, image_ids=half)
    assert restricted["num_images"] == len(half)
    assert restricted["stats"][0] == pytest.approx(1.0, abs=1e-12)
    assert evaluate_coco(gt, results)["stats"][0] < 0.9  # the other half's objects are all missed
    with pytest.raises(UserError, match="not in the ground truth"):
        evaluate_coco(gt, results, image_ids=[123456789])


def test_empty_results_give_zeros(tiny50_dataset: CocoDataset, tiny50: Path) -> None:
    gt = tiny50 / "annotations" / "instances_val2017.json"
    metrics = evaluate_coco(gt, [])
    assert metrics["stats"] == [0.0] * 12 and metrics["num_detections"] == 0 and metrics["num_images"] == 50

    # Same numbers as pycocotools' own path (loadRes) with one detection of a category absent from
    # the ground truth: "no detections" is not special-cased.
    present = {int(label) for i in tiny50_dataset.image_ids for label in tiny50_dataset.annotations(i).labels}
    absent = next(cat for label, cat in tiny50_dataset.label_to_cat_id.items() if label not in present)
    image_id = tiny50_dataset.image_ids[0]
    stray = [{"image_id": image_id, "category_id": absent, "bbox": [1.0, 1.0, 50.0, 50.0], "score": 0.9}]
    assert evaluate_coco(gt, stray)["stats"] == metrics["stats"]

    # Nothing to find: every statistic is undefined (-1), as pycocotools reports it.
    negatives = [i for i in tiny50_dataset.image_ids
                 if len(tiny50_dataset.annotations(i)) == 0 and len(tiny50_dataset.annotations(i).crowd_boxes) == 0]
    assert evaluate_coco(gt, [], image_ids=negatives)["stats"] == [-1.0] * 12


def test_bad_results_are_user_errors(fake_eval: Path, tmp_path: Path) -> None:
    gt = fake_eval / "instances_val2014_100.json"
    corrupt = tmp_path / "results.json"
    corrupt.write_text('[{"image_id": 42, "category_id": 18, "bbox": [1, 2')
    with pytest.raises(UserError, match="cannot read results file"):
        evaluate_coco(gt, corrupt)
    with pytest.raises(UserError, match="not found"):
        evaluate_coco(gt, tmp_path / "absent.json")
    with pytest.raises(UserError, match="detection 0 is not a COCO bbox result"):
        evaluate_coco(gt, [{"image_id": 42, "category_id": 18, "bbox": [1, 2, 3], "score": 0.5}])
    with pytest.raises(UserError, match="missing from the ground truth"):
        evaluate_coco(gt, [{"image_id": 1, "category_id": 18, "bbox": [1, 2, 3, 4], "score": 0.5}])


def test_conversion_to_xywh_and_label_mapping() -> None:
    dets = spec.Detections(
        boxes=np.array([[10.0, 20.0, 40.0, 25.0]], np.float32),
        scores=np.array([0.75], np.float32),
        labels=np.array([79], np.int64),
    )
    (result,) = detections_to_coco_results(7, dets, spec.COCO_CATEGORY_IDS)
    assert result == {"image_id": 7, "category_id": 90, "bbox": [10.0, 20.0, 30.0, 5.0], "score": 0.75}
    assert detections_to_coco_results(7, spec.Detections(), spec.COCO_CATEGORY_IDS) == []
    with pytest.raises(UserError, match="label 80 has no COCO category"):
        detections_to_coco_results(7, spec.Detections(dets.boxes, dets.scores, np.array([80])), spec.COCO_CATEGORY_IDS)


def test_write_metrics_round_trip(tmp_path: Path) -> None:
    metrics = {"stats": [0.5] * 12, "stat_names": list(STAT_NAMES), "num_images": 3, "num_detections": 9}
    path = tmp_path / "out" / "metrics.json"
    write_metrics(path, metrics)
    assert json.loads(path.read_text()) == metrics
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_module_needs_neither_torch_nor_cv2() -> None:
    import ast
    import gflv2_deploy.eval.coco_eval as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "cv2"}
