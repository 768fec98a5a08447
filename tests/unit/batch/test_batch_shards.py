"""Shards of an infer job: deterministic slices, atomic complete files, each picture exactly once, results JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.batch import shards as shard_io
from gflv2_deploy.batch.ray_engine import READ_CPUS, actor_cpus, user_error_inside
from gflv2_deploy.batch.results import CocoIds, write_results_json
from gflv2_deploy.batch.run import ShardCollector
from gflv2_deploy.batch.worker import parse_fault
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.coco_eval import detections_to_coco_results
from gflv2_deploy.spec import Detections

pa = pytest.importorskip("pyarrow")  # the [parquet] extra; installed by scripts/setup.sh

LOCATIONS = tuple(f"/photos/{i:03d}.jpg" for i in range(11))


def result_row(index: int, plan: shard_io.ShardPlan, n_dets: int = 2) -> dict:
    """A result row as the detector returns it (with its shard), ``n_dets`` boxes; index 3 is unreadable."""
    bad = index == 3
    return {"index": index, "path": plan.locations[index], "height": 0 if bad else 480, "width": 0 if bad else 640,
            "boxes": [] if bad else [[1.0 + index, 2.0, 30.1, 40.0 + k / 3] for k in range(n_dets)],
            "scores": [] if bad else [0.5 - k / 7 for k in range(n_dets)],
            "labels": [] if bad else [index % 3] * n_dets, "class_names": [] if bad else ["c"] * n_dets,
            "error": "cannot decode image file" if bad else None, "shard": index // plan.shard_size}


def table_of(rows: list[dict]):
    return pa.Table.from_pylist(rows, schema=shard_io.detection_schema())


def read_all(out: Path) -> list[dict]:
    rows = [r for f in sorted(out.glob(shard_io.SHARD_GLOB)) for r in shard_io.read_shard(f).to_pylist()]
    return sorted(rows, key=lambda r: r["index"])


def test_plan_cuts_the_listing_into_consecutive_slices_once() -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    assert plan.count == 3 and [list(plan.indices(s)) for s in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    digests = [plan.shard_sha256(s) for s in range(3)]
    assert len(set(digests)) == 3 and digests == [shard_io.ShardPlan(LOCATIONS, 4).shard_sha256(s) for s in range(3)]
    assert shard_io.shard_name(7) == "part-000007.parquet"
    with pytest.raises(UserError, match="--shard-size"):
        shard_io.ShardPlan(LOCATIONS, 0)


def test_collector_writes_each_shard_once_complete_and_drops_retried_copies(tmp_path: Path) -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    collector = ShardCollector(plan, [0, 1, 2])
    rows = [result_row(i, plan) for i in range(11)]
    # out of order, shard 1's first half delivered twice (a batch retried after its actor died)
    batches = [table_of(rows[4:6]), table_of(rows[0:3]), table_of(rows[4:6]), table_of(rows[8:11] + rows[3:4]),
               table_of(rows[6:8])]
    written = []
    for shard in collector.shards_written(iter(batches), tmp_path, "f" * 64):
        written.append(shard)
        assert (tmp_path / shard_io.shard_name(shard)).is_file()  # announced once its file is in place
    assert sorted(written) == [0, 1, 2]
    assert collector.stats()["duplicates_dropped"] == 2
    got = read_all(tmp_path)
    assert [r["index"] for r in got] == list(range(11)) and [r["path"] for r in got] == list(LOCATIONS)
    assert got[3]["error"] and got[3]["boxes"] == [] and all(r["error"] is None for r in got if r["index"] != 3)
    assert {r["model_sha256"] for r in got} == {"f" * 64}
    assert shard_io.complete_shards(tmp_path, plan, "f" * 64) == {0, 1, 2}


def test_a_picture_that_never_comes_back_is_an_error_and_its_shard_is_not_written(tmp_path: Path) -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    collector = ShardCollector(plan, [0, 1])
    with pytest.raises(UserError, match="1 pictures of 1 shards never came back"):
        list(collector.shards_written(iter([table_of([result_row(i, plan) for i in range(7)])]), tmp_path, "f" * 64))
    assert [p.name for p in tmp_path.glob(shard_io.SHARD_GLOB)] == ["part-000000.parquet"]


def test_write_shard_refuses_incomplete_or_foreign_rows(tmp_path: Path) -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    rows = [result_row(i, plan) for i in range(4)]
    with pytest.raises(ValueError):
        shard_io.write_shard(tmp_path, plan, 0, table_of(rows[:3]), "f" * 64)
    with pytest.raises(ValueError):
        shard_io.write_shard(tmp_path, plan, 0, table_of([*rows[:3], {**rows[3], "path": "/elsewhere.jpg"}]), "f" * 64)
    assert list(tmp_path.iterdir()) == []


def test_only_files_of_this_slice_and_model_count_as_complete(tmp_path: Path) -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    shard_io.write_shard(tmp_path, plan, 0, table_of([result_row(i, plan) for i in range(4)]), "a" * 64)
    shard_io.write_shard(tmp_path, plan, 2, table_of([result_row(i, plan) for i in range(8, 11)]), "b" * 64)  # another model
    (tmp_path / shard_io.shard_name(1)).write_bytes(b"PAR1 damaged")
    other = shard_io.ShardPlan(LOCATIONS[:3] + ("/photos/new.jpg",) + LOCATIONS[4:], 4)  # shard 0's slice changed
    assert shard_io.complete_shards(tmp_path, plan, "a" * 64) == {0}
    assert shard_io.complete_shards(tmp_path, other, "a" * 64) == set()


def test_an_output_folder_holds_one_job(tmp_path: Path) -> None:
    job = shard_io.JobIdentity(source="/photos", pictures=11, listing_sha256=shard_io.listing_sha256(LOCATIONS), shard_size=4,
                               backend="onnxruntime", model="m.onnx", model_sha256="a" * 64)
    shard_io.claim_output(tmp_path, job)
    shard_io.claim_output(tmp_path, job.__class__(**{**job.__dict__, "source": "photos/", "model": "/abs/m.onnx"}))
    for change in ({"model_sha256": "b" * 64}, {"shard_size": 5}, {"listing_sha256": "c" * 64, "pictures": 12}):
        with pytest.raises(UserError, match="another job"):
            shard_io.claim_output(tmp_path, job.__class__(**{**job.__dict__, **change}))


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".part-000003.parquet.abc123.tmp.parquet").write_bytes(b"half")
    (tmp_path / "part-000001.parquet").write_bytes(b"kept")
    assert shard_io.remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["part-000001.parquet"]


def test_results_json_uses_listing_positions_or_the_ground_truth_ids(tmp_path: Path) -> None:
    plan = shard_io.ShardPlan(LOCATIONS, 4)
    for shard in range(plan.count):
        shard_io.write_shard(tmp_path, plan, shard, table_of([result_row(i, plan) for i in plan.indices(shard)]), "f" * 64)
    files = [tmp_path / shard_io.shard_name(s) for s in range(plan.count)]
    totals = write_results_json(tmp_path / "r.json", files, None)
    results = json.loads((tmp_path / "r.json").read_text())
    assert totals["pictures_read"] == 10 and totals["failures"] == 1 and totals["detections"] == totals["results"] == 20
    assert totals["failed"] == [{"path": LOCATIONS[3], "error": "cannot decode image file"}]
    assert sorted({r["image_id"] for r in results}) == [i for i in range(11) if i != 3]
    assert results[0] == {"image_id": 0, "category_id": 0, "bbox": [1.0, 2.0, 29.100000381469727, 38.0], "score": 0.5}
    expected = []  # what eval's own conversion makes of the same detections
    for row in read_all(tmp_path):
        if row["error"] is None:
            dets = Detections(np.asarray(row["boxes"], np.float32), np.asarray(row["scores"], np.float32),
                              np.asarray(row["labels"], np.int64))
            expected += detections_to_coco_results(row["index"], dets, range(3))
    assert results == expected

    ids = CocoIds(image_ids={"000.jpg": 500, "001.jpg": 501}, cat_ids=(7, 9, 11))
    totals = write_results_json(tmp_path / "gt.json", files, ids)
    results = json.loads((tmp_path / "gt.json").read_text())
    assert totals["not_in_gt"] == 8 and {(r["image_id"], r["category_id"]) for r in results} == {(500, 7), (501, 9)}
    with pytest.raises(UserError, match="label 2 has no COCO category"):
        write_results_json(tmp_path / "bad.json", files, CocoIds(image_ids={"002.jpg": 1}, cat_ids=(7, 9)))
    assert not (tmp_path / "bad.json").exists()


def test_fault_setting_and_actor_cpus() -> None:
    assert parse_fault(None) is None and parse_fault("3") == (3, None) and parse_fault("2:/tmp/once") == (2, "/tmp/once")
    with pytest.raises(ValueError):
        parse_fault("zero")
    assert actor_cpus(2, 2, 1) == 0.75 and actor_cpus(2, 1, 1) == 1.0  # 2 cores: room left for decoding
    assert actor_cpus(64, 16, 1) == 1.0 and actor_cpus(64, 4, 8) == 8.0
    assert 2 * actor_cpus(2, 2, 1) + READ_CPUS <= 2
    with pytest.raises(UserError, match="too few"):
        actor_cpus(0.5, 1, 1)


def test_a_user_error_inside_a_ray_error_is_found() -> None:
    class Wrapped(Exception):
        def __init__(self, cause: Exception) -> None:
            super().__init__("task failed")
            self.cause = cause

    assert str(user_error_inside(Wrapped(UserError("model file not found: m.onnx")))) == "model file not found: m.onnx"
    text = RuntimeError("ray::MapWorker failed\n  gflv2_deploy.errors.UserError: the model file differs\n")
    assert str(user_error_inside(text)) == "the model file differs"
    assert user_error_inside(RuntimeError("segfault")) is None


def test_gpus_missing_from_a_local_cluster_are_an_error_and_from_a_remote_one_a_warning() -> None:
    from gflv2_deploy.batch.ray_engine import check_gpus

    assert check_gpus({"address": "local", "gpus": 2.0}, 4, 0.5) is None
    with pytest.raises(UserError, match="need 2 GPUs; the Ray cluster shows 0"):
        check_gpus({"address": "local", "gpus": 0.0}, 4, 0.5)
    assert "autoscaling" in check_gpus({"address": "auto", "gpus": 8.0}, 16, 1)


def test_ground_truth_ids_by_file_name(tiny50: Path, tmp_path: Path) -> None:
    from gflv2_deploy.batch.results import coco_id_maps
    from gflv2_deploy.spec import COCO_CATEGORY_IDS

    ids = coco_id_maps(tiny50 / "annotations" / "instances_val2017.json")
    assert len(ids.image_ids) == 50 and ids.image_ids["000000397133.jpg"] == 397133
    assert ids.cat_ids == COCO_CATEGORY_IDS  # labels map as eval maps them
    twice = {"images": [{"id": 1, "file_name": "a/x.jpg"}, {"id": 2, "file_name": "b/x.jpg"}],
             "categories": [{"id": 1, "name": "c"}]}
    (tmp_path / "gt.json").write_text(json.dumps(twice))
    with pytest.raises(UserError, match="two images are named x.jpg"):
        coco_id_maps(tmp_path / "gt.json")
