"""``gflv2-deploy infer`` on a local Ray cluster (``--ray local``: started by the command, 127.0.0.1 only).

Pictures: 8 COCO photos and 3 unreadable files (``coco_subset``); model: the detecting tiny COCO ONNX at a fixed
320 x 320 (``coco_tiny_onnx``), onnxruntime, one thread per actor. Checked: detections equal ``predict``'s for
every photo, the unreadable files listed with their errors, ``eval --results`` on the output gives the AP of
``eval`` running the model itself, all in a run where an actor died mid-run (``GFLV2_INFER_EXIT_AT_BATCH``);
a driver killed after two shards (``GFLV2_INFER_KILL_AFTER_SHARDS``) resumes without recomputing them.

Every run is a subprocess in its own session, time-boxed (``RUN_TIMEOUT_S``); whatever it leaves behind (Ray's
agents outlive a killed driver) is ended through its process group. On this 2-core machine each actor reserves
at most 0.75 CPU (``ray_engine.actor_cpus``), so the decode tasks always get CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.batch import shards as shard_io
from gflv2_deploy.batch.ray_engine import READ_CPUS, actor_cpus
from gflv2_deploy.batch.run import KILL_ENV
from gflv2_deploy.batch.worker import FAULT_ENV

pytest.importorskip("ray.data")  # the [ray] extra, which scripts/setup.sh installs

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 150
UNREADABLE = ("broken.jpg", "empty.png", "truncated.jpg")


def run_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``gflv2-deploy ARGS`` in a new session, time-boxed; the session's leftovers are killed afterwards."""
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})},
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"infer ran over {RUN_TIMEOUT_S} s: {err[-2000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes this run started and left behind
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def read_rows(out: Path) -> list[dict]:
    rows = [r for f in sorted(out.glob(shard_io.SHARD_GLOB)) for r in shard_io.read_shard(f).to_pylist()]
    return sorted(rows, key=lambda r: r["index"])


def assert_each_picture_once(out: Path, photos: Path) -> list[dict]:
    rows = read_rows(out)
    assert [r["path"] for r in rows] == sorted(str(p) for p in photos.iterdir())
    assert [r["index"] for r in rows] == list(range(len(rows)))
    return rows


@pytest.fixture(scope="module")
def ray_run(coco_tiny_onnx: Path, coco_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infer on Ray: 2 actors, batches of 2, shards of 3, results with the subset's COCO ids, and one actor ending
    its process at its third batch (11 pictures make 6 batches: one of the two actors gets a third)."""
    out = tmp_path_factory.mktemp("ray") / "out"
    proc = run_cli("infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out", out,
                   "--ray", "local", "--actors", "2", "--batch-size", "2", "--shard-size", "3",
                   "--gt", coco_subset / "annotations" / "instances_val2017.json",
                   env={FAULT_ENV: f"3:{out.parent / 'crashed'}"})
    assert proc.returncode == 0, proc.stderr
    return out


def test_ray_detections_equal_predict_and_unreadable_pictures_are_listed(ray_run: Path, coco_tiny_onnx: Path,
                                                                         coco_subset: Path, tmp_path: Path) -> None:
    rows = assert_each_picture_once(ray_run, coco_subset / "val2017")
    photos = [Path(r["path"]) for r in rows if Path(r["path"]).name not in UNREADABLE]
    pred = subprocess.run([sys.executable, str(REPO / "cli.py"), "predict", f"onnxruntime:{coco_tiny_onnx}", *map(str, photos),
                           "--out", str(tmp_path / "pred")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert pred.returncode == 0, pred.stderr
    for row in rows:
        name = Path(row["path"]).name
        if name in UNREADABLE:
            assert row["error"] and name in row["error"] and row["boxes"] == [] and row["height"] == 0
            continue
        expected = json.loads((tmp_path / "pred" / f"{Path(name).stem}.json").read_text())
        assert row["error"] is None and len(row["scores"]) == len(expected["scores"]) > 0
        assert (row["height"], row["width"]) == (expected["height"], expected["width"])
        assert np.array_equal(np.asarray(row["boxes"], np.float32), np.asarray(expected["boxes"], np.float32))
        assert np.array_equal(np.asarray(row["scores"], np.float32), np.asarray(expected["scores"], np.float32))
        assert row["labels"] == expected["labels"] and row["class_names"] == expected["class_names"]
    summary = json.loads((ray_run / "summary.json").read_text())
    assert summary["failures"] == 3 and sorted(Path(f["path"]).name for f in summary["failed"]) == sorted(UNREADABLE)
    run = summary["run"]
    assert run["engine"] == "ray" and run["actors"] == 2
    assert run["cpus_per_actor"] == actor_cpus(run["cluster_cpus"], 2, 1)  # 0.75 each on 2 cores: CPU left to decode
    assert 2 * run["cpus_per_actor"] + READ_CPUS <= run["cluster_cpus"]


def test_eval_of_the_results_file_gives_the_ap_of_eval_in_process(ray_run: Path, coco_tiny_onnx: Path,
                                                                    coco_subset: Path, tmp_path: Path) -> None:
    gt = coco_subset / "annotations" / "instances_val2017.json"
    from_file = subprocess.run([sys.executable, str(REPO / "cli.py"), "eval", "--gt", str(gt), "--results",
                                str(ray_run / "results.json"), "--out", str(tmp_path / "file.json")],
                               capture_output=True, text=True, timeout=300, cwd=REPO)
    in_process = subprocess.run([sys.executable, str(REPO / "cli.py"), "eval", "--backend", "onnxruntime", "--model",
                                 str(coco_tiny_onnx), "--data", str(coco_subset), "--threads", "1", "--out",
                                 str(tmp_path / "model.json")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert from_file.returncode == 0 and in_process.returncode == 0, from_file.stderr + in_process.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("file.json", "model.json"))
    assert a["stats"] == b["stats"] and a["num_images"] == b["num_images"] == 8
    assert max(a["stats"][:6]) > 0  # the random detector does hit some objects: the ids really match


def test_an_actor_dying_mid_run_costs_nothing(ray_run: Path, coco_subset: Path) -> None:
    # the run the other tests check (detections equal predict's, AP equal eval's) had an actor die in it
    assert (ray_run.parent / "crashed").exists()  # an actor did end itself (os._exit) and Ray replaced it
    assert_each_picture_once(ray_run, coco_subset / "val2017")
    summary = json.loads((ray_run / "summary.json").read_text())
    assert summary["pictures"] == 11 and summary["pictures_read"] + summary["failures"] == 11
    assert summary["run"]["pictures_computed"] == 11 and summary["run"]["shards_computed"] == 4


def test_a_killed_driver_resumes_without_recomputing_complete_shards(ray_run: Path, coco_tiny_onnx: Path, coco_subset: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "o"
    command = ["infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out", out, "--ray", "local",
               "--batch-size", "1", "--shard-size", "2"]
    killed = run_cli(*command, env={KILL_ENV: "2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob(shard_io.SHARD_GLOB)}
    assert 2 <= len(done) < 6 and not (out / "results.json").exists()  # a shard being written may have finished too

    rerun = run_cli(*command)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob(shard_io.SHARD_GLOB)}
    assert {name: after[name] for name in done} == done  # the same files, untouched
    assert len(after) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["shards_reused"] == len(done) and summary["run"]["shards_computed"] == 6 - len(done)
    assert assert_each_picture_once(out, coco_subset / "val2017") == read_rows(ray_run)
    assert not list(out.glob(".part-*"))  # no temporary file left behind
