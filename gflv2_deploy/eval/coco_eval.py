"""COCO bbox evaluation: detections -> COCO result dicts -> the 12 COCOeval statistics.

The numbers are exactly pycocotools': ``COCO(gt).loadRes(results)``, ``COCOeval(gt, dt, "bbox")``,
``evaluate()``, ``accumulate()``, ``summarize()``, ``stats``. This module only adds input checks
(a clear ``UserError`` instead of an ``AssertionError`` or a traceback) and optional silence.
It imports numpy and pycocotools only (no torch, no cv2), so any runner's output can be scored.

Undefined statistics: pycocotools reports -1 for a statistic that has no ground truth to measure
(e.g. "AP small" when the evaluated images hold no small object; categories without ground truth
are left out of every mean). We keep that -1 as it is: it means "undefined", not "bad".

Empty results: pycocotools' ``loadRes`` fails on an empty list, so for no detections we build the
empty detection set ourselves and still run ``COCOeval`` on it. Every statistic that has ground
truth is then 0.0 (all of them for normal ground truth, e.g. val2017); one without ground truth is
-1, exactly as it would be for a non-empty result list on the same images. We do not force those
to 0.0: that would claim a failure where there was nothing to find, and make the empty case
disagree with one stray detection of a category absent from the ground truth (tested).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import Counter
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gflv2_deploy import spec
from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.errors import UserError

# COCOeval.stats, in its order (IoU 0.50:0.95 unless named; area small < 32^2 <= medium < 96^2 <= large).
STAT_NAMES: tuple[str, ...] = (
    "AP",  # AP @ IoU .50:.95, all areas, maxDets=100 (the headline COCO mAP)
    "AP50",  # AP @ IoU .50
    "AP75",  # AP @ IoU .75
    "APs",  # AP small
    "APm",  # AP medium
    "APl",  # AP large
    "AR1",  # AR, maxDets=1
    "AR10",  # AR, maxDets=10
    "AR100",  # AR, maxDets=100
    "ARs",  # AR small, maxDets=100
    "ARm",  # AR medium, maxDets=100
    "ARl",  # AR large, maxDets=100
)


def detections_to_coco_results(
    image_id: int, dets: spec.Detections, label_to_cat_id: Mapping[int, int] | Sequence[int]
) -> list[dict[str, Any]]:
    """Convert one image's detections to COCO result dicts.

    ``dets.boxes``: K x 4 (x1, y1, x2, y2) in original-image pixels; ``dets.labels``: K contiguous
    labels, mapped through ``label_to_cat_id`` (a dict or a sequence indexed by label, e.g.
    ``CocoDataset.label_to_cat_id`` or ``spec.COCO_CATEGORY_IDS``). Returns K dicts
    ``{"image_id", "category_id", "bbox": [x, y, w, h] (pixels), "score"}`` with plain Python
    numbers (JSON-ready). Raises ``UserError`` for a label without a category (a model predicting
    more classes than the dataset has).
    """
    boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(dets.labels).reshape(-1)
    if not (boxes.shape[0] == scores.shape[0] == labels.shape[0]):
        raise ValueError(
            f"detections disagree in length: {boxes.shape[0]} boxes, {scores.shape[0]} scores, "
            f"{labels.shape[0]} labels"
        )
    xywh = boxes.copy()
    xywh[:, 2:] -= boxes[:, :2]  # w = x2 - x1, h = y2 - y1 (no +1: continuous pixel coordinates)
    results = []
    for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
        try:
            cat_id = label_to_cat_id[int(label)]
        except (KeyError, IndexError):
            raise UserError(
                f"detection label {int(label)} has no COCO category (the mapping has {len(label_to_cat_id)} classes): "
                "the model's number of classes does not match the dataset"
            ) from None
        results.append({"image_id": int(image_id), "category_id": int(cat_id), "bbox": box, "score": score})
    return results


def evaluate_coco(
    gt: str | os.PathLike[str] | COCO,
    results: str | os.PathLike[str] | list[dict[str, Any]],
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
    details: bool = False,
) -> dict[str, Any]:
    """Run the official COCO bbox evaluation.

    gt: a COCO instances JSON path, or a loaded ``pycocotools.coco.COCO`` (not modified).
    results: a COCO results JSON path, or a list of result dicts (see ``detections_to_coco_results``;
        not modified). Boxes are x y w h in original-image pixels.
    image_ids: evaluate only these images (default: every ground-truth image); results on other
        images are ignored.
    verbose: let pycocotools print its progress and the summary table (silenced by default).
    details: also return ``per_class`` (AP, AP50, AP75, APs/m/l, ground truth and detection counts per
        category) and ``pr_curves`` (precision at 101 recall points, IoU 0.5 and 0.75), read from the
        same evaluation (``eval/coco_details.py``) for reports.

    Returns ``{"stats": [12 floats, COCOeval.stats], "stat_names": STAT_NAMES,
    "num_images": evaluated images, "num_detections": evaluated results, "num_detections_unknown_category":
    those of them whose category id the ground truth does not list (a UserWarning says so; COCOeval ignores them)}``. A statistic without
    ground truth is -1 (pycocotools' convention); empty results give 0.0 wherever ground truth
    exists (module docstring). Raises ``UserError`` for a missing or corrupt file, malformed
    results, or image ids unknown to the ground truth.
    """
    with _quiet(not verbose):
        coco_gt = gt if isinstance(gt, COCO) else _load_gt(Path(gt))
    anns = _load_results(results) if not isinstance(results, list) else results
    _check_results(anns, str(results) if not isinstance(results, list) else "results")

    gt_ids = set(coco_gt.getImgIds())
    if image_ids is None:
        eval_ids = sorted(gt_ids)
    else:
        eval_ids = sorted({int(i) for i in image_ids})
        unknown = [i for i in eval_ids if i not in gt_ids]
        if unknown:
            raise UserError(f"{len(unknown)} requested image id(s) are not in the ground truth, e.g. {unknown[:5]}")
        wanted = set(eval_ids)
        anns = [a for a in anns if a["image_id"] in wanted]
    stray = sorted({a["image_id"] for a in anns} - gt_ids)
    if stray:
        raise UserError(
            f"results hold {len(stray)} image id(s) missing from the ground truth, e.g. {stray[:5]}: "
            "were they made on another dataset or split?"
        )
    gt_cats = set(coco_gt.getCatIds())
    foreign = [a for a in anns if a["category_id"] not in gt_cats]
    if foreign:  # COCOeval leaves them out of every statistic: an AP of 0 would say nothing about the model
        ids = sorted({a["category_id"] for a in foreign})
        warnings.warn(f"{len(foreign)} of {len(anns)} detection(s) carry category id(s) {ids[:8]}{' ...' if len(ids) > 8 else ''} "
                      f"that the ground truth does not list ({sorted(gt_cats)[:8]}{' ...' if len(gt_cats) > 8 else ''}): "
                      "they are left out of every statistic; were they written with contiguous labels instead of the "
                      "dataset's category ids?", UserWarning, stacklevel=2)

    with _quiet(not verbose):
        # loadRes writes id/area/iscrowd/segmentation into each dict: give it shallow copies.
        coco_dt = coco_gt.loadRes([dict(a) for a in anns]) if anns else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = eval_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics: dict[str, Any] = {
        "stats": [float(s) for s in evaluator.stats],
        "stat_names": list(STAT_NAMES),
        "num_images": len(eval_ids),
        "num_detections": len(anns),
        "num_detections_unknown_category": len(foreign),
    }
    if details:
        from gflv2_deploy.eval.coco_details import per_class_ap, pr_curves

        cat_ids = list(evaluator.params.catIds)
        names = [coco_gt.cats[c].get("name", str(c)) for c in cat_ids]
        gt_counts = Counter(a["category_id"] for i in eval_ids for a in coco_gt.imgToAnns.get(i, []) if not a.get("iscrowd", 0))
        det_counts = Counter(a["category_id"] for a in anns)
        metrics["per_class"] = per_class_ap(evaluator, names, [gt_counts.get(c, 0) for c in cat_ids],
                                            [det_counts.get(c, 0) for c in cat_ids])
        metrics["pr_curves"] = pr_curves(evaluator)
    return metrics


def write_metrics(path: str | os.PathLike[str], metrics: Mapping[str, Any]) -> None:
    """Write ``metrics`` (e.g. the dict from ``evaluate_coco``) as JSON, atomically."""
    write_json_atomic(path, dict(metrics))


# --- helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Swallow pycocotools' prints ("loading annotations...", the summary table) when enabled."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from None


def _load_gt(path: Path) -> COCO:
    data = _read_json(path, "ground-truth file")
    keys = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in keys):
        raise UserError(f"{path} is not a COCO instances file: expected 'images', 'annotations' and 'categories' lists")
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def _load_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    data = _read_json(Path(path), "results file")
    if not isinstance(data, list):
        raise UserError(f"{path} is not a COCO results file: expected a JSON list of detections")
    return data


def _check_results(anns: list[Any], source: str) -> None:
    """UserError naming the first entry that is not {image_id: int, category_id: int, bbox: 4 numbers, score}."""
    for index, ann in enumerate(anns):
        ok = (
            isinstance(ann, dict)
            and _is_int(ann.get("image_id"))
            and _is_int(ann.get("category_id"))
            and isinstance(ann.get("bbox"), (list, tuple))
            and len(ann["bbox"]) == 4
            and all(_is_number(v) for v in ann["bbox"])
            and _is_number(ann.get("score"))
        )
        if not ok:
            raise UserError(
                f"{source}: detection {index} is not a COCO bbox result "
                f"(needs integer image_id and category_id, bbox [x, y, w, h], score): {str(ann)[:120]}"
            )


def _empty_results(coco_gt: COCO) -> COCO:
    """The detection set with no detections, shaped as ``loadRes`` would shape it (it rejects [])."""
    dt = COCO()
    dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    dt.createIndex()
    return dt


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value)
