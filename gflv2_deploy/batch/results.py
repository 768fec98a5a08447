"""The results of an ``infer`` job read back from its complete shards: a COCO results JSON and the totals.

``results.json`` is a COCO results list (``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, boxes
in original-picture pixels) that ``gflv2-deploy eval --gt ANN --results results.json`` scores. With a ground
truth (``--gt``) its image ids are the ground truth's (pictures matched by base file name; pictures it does not
list are left out and counted) and its category ids those of the labels (ascending category id, as ``eval``
maps them). Without one, image ids are listing positions (the shards' ``index``) and category ids the labels.
It is written while streaming over the shards, so a job of millions of pictures never holds it in memory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote

import numpy as np

from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.batch.shards import read_shard
from gflv2_deploy.batch.source import is_uri
from gflv2_deploy.errors import UserError


@dataclasses.dataclass(frozen=True)
class CocoIds:
    """A ground truth's ids: ``image_ids`` by picture base name, ``cat_ids`` indexed by label."""

    image_ids: dict[str, int]
    cat_ids: tuple[int, ...]


def coco_id_maps(gt: str | os.PathLike[str]) -> CocoIds:
    """The ids of the COCO instances JSON ``gt`` (UserError when it is missing or not COCO)."""
    from gflv2_deploy.data.coco import read_coco_ids

    image_ids, cat_ids = read_coco_ids(gt)
    return CocoIds(image_ids, cat_ids)


def write_results_json(path: Path, shard_files: Sequence[Path], ids: CocoIds | None) -> dict[str, Any]:
    """Write the COCO results of ``shard_files`` (in order) to ``path`` atomically; return the totals.

    Totals: ``pictures_read`` (detected), ``failures`` (count) and ``failed`` ([{path, error}] in listing order),
    ``detections``, ``results`` (entries written) and, with ``ids``, ``not_in_gt`` (pictures left out).
    Raises UserError when a label has no category in the ground truth (a model of other classes).
    """
    totals: dict[str, Any] = {"pictures_read": 0, "failures": 0, "detections": 0, "results": 0, "failed": []}
    if ids is not None:
        totals["not_in_gt"] = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for shard_file in shard_files:
            table = read_shard(shard_file, ("index", "path", "boxes", "scores", "labels", "error"))
            lines = _shard_results(table, ids, totals)
            if lines:
                fh.write(("," if totals["results"] else "") + "\n" + ",\n".join(lines))
                totals["results"] += len(lines)
        fh.write("\n]\n")
    return totals


def _shard_results(table: Any, ids: CocoIds | None, totals: dict[str, Any]) -> list[str]:
    """One shard's results as JSON texts, column by column: the conversion of
    ``eval.coco_eval.detections_to_coco_results`` (x y w h from float64 corners), without an object per box."""
    import pyarrow.compute as pc

    errors = table.column("error").to_pylist()
    paths = table.column("path").to_pylist()
    for location, error in zip(paths, errors):
        if error is not None:
            totals["failed"].append({"path": location, "error": error})
    ok = np.array([e is None for e in errors], dtype=bool)
    totals["failures"] += int((~ok).sum())
    totals["pictures_read"] += int(ok.sum())
    counts = pc.list_value_length(table.column("scores")).to_numpy(zero_copy_only=False).astype(np.int64)
    totals["detections"] += int(counts[ok].sum())
    if ids is None:
        image_ids = table.column("index").to_numpy()
    else:
        image_ids = np.array([_gt_image_id(location, ids) for location in paths], dtype=np.int64)
        totals["not_in_gt"] += int((ok & (image_ids < 0)).sum())
    keep = np.repeat(ok & (image_ids >= 0), counts)
    boxes = pc.list_flatten(pc.list_flatten(table.column("boxes"))).to_numpy().astype(np.float64).reshape(-1, 4)[keep]
    scores = pc.list_flatten(table.column("scores")).to_numpy().astype(np.float64)[keep]
    labels = pc.list_flatten(table.column("labels")).to_numpy().astype(np.int64)[keep]
    if ids is not None and labels.size and labels.max() >= len(ids.cat_ids):
        raise UserError(f"detection label {int(labels.max())} has no COCO category (the mapping has {len(ids.cat_ids)} "
                        "classes): the model's number of classes does not match the dataset")
    categories = np.asarray(ids.cat_ids, np.int64)[labels] if ids is not None else labels
    xywh = boxes.copy()
    xywh[:, 2:] -= boxes[:, :2]  # w = x2 - x1, h = y2 - y1, as eval.coco_eval does
    return [f'{{"image_id": {i}, "category_id": {c}, "bbox": [{x}, {y}, {w}, {h}], "score": {s}}}'
            for i, c, (x, y, w, h), s in zip(np.repeat(image_ids, counts)[keep].tolist(), categories.tolist(),
                                              xywh.tolist(), scores.tolist())]


def _gt_image_id(location: str, ids: CocoIds) -> int:
    """The ground truth's id of the picture at ``location`` (by base file name), or -1."""
    name = location.replace("\\", "/").rsplit("/", 1)[-1]
    return ids.image_ids.get(unquote(name) if is_uri(location) else name, -1)
