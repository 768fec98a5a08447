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
import json
import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.batch.shards import read_shard
from gflv2_deploy.batch.source import is_uri
from gflv2_deploy.eval.coco_eval import detections_to_coco_results
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


class _Identity:
    """label -> label: category ids without a ground truth."""

    def __getitem__(self, label: int) -> int:
        return label

    def __len__(self) -> int:
        return 0


def write_results_json(path: Path, shard_files: Sequence[Path], ids: CocoIds | None) -> dict[str, Any]:
    """Write the COCO results of ``shard_files`` (in order) to ``path`` atomically; return the totals.

    Totals: ``pictures_read`` (detected), ``failures`` (count) and ``failed`` ([{path, error}] in listing order),
    ``detections``, ``results`` (entries written) and, with ``ids``, ``not_in_gt`` (pictures left out).
    Raises UserError when a label has no category in the ground truth (a model of other classes).
    """
    cat_map: Any = ids.cat_ids if ids is not None else _Identity()
    totals: dict[str, Any] = {"pictures_read": 0, "failures": 0, "detections": 0, "results": 0, "failed": []}
    if ids is not None:
        totals["not_in_gt"] = 0
    columns = ("index", "path", "boxes", "scores", "labels", "error")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for shard_file in shard_files:
            table = read_shard(shard_file, columns)
            for row in table.to_pylist():
                if row["error"] is not None:
                    totals["failures"] += 1
                    totals["failed"].append({"path": row["path"], "error": row["error"]})
                    continue
                totals["pictures_read"] += 1
                totals["detections"] += len(row["scores"])
                image_id = _image_id(row, ids)
                if image_id is None:
                    totals["not_in_gt"] += 1
                    continue
                dets = spec.Detections(boxes=np.asarray(row["boxes"], np.float32).reshape(-1, 4),
                                       scores=np.asarray(row["scores"], np.float32),
                                       labels=np.asarray(row["labels"], np.int64))
                for result in detections_to_coco_results(image_id, dets, cat_map):
                    fh.write(("," if totals["results"] else "") + "\n" + json.dumps(result))
                    totals["results"] += 1
        fh.write("\n]\n")
    return totals


def _image_id(row: dict[str, Any], ids: CocoIds | None) -> int | None:
    if ids is None:
        return int(row["index"])
    location = str(row["path"])
    name = location.replace("\\", "/").rsplit("/", 1)[-1]
    return ids.image_ids.get(unquote(name) if is_uri(location) else name)
