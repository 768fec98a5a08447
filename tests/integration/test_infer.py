"""``gflv2-deploy infer`` without Ray: the in-process engine, resumption, file:// sources, the fallback message when
Ray is missing (a subprocess whose import system refuses ``ray``), and bad input as one error line.

The Ray engine itself is tested in test_infer_ray.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.batch import shards as shard_io
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.runtime.ort_runner import load_onnx_detector

pytest.importorskip("pyarrow")  # the [parquet] extra (scripts/setup.sh installs it with [ray])

REPO = Path(__file__).resolve().parents[2]
UNREADABLE = ("broken.jpg", "empty.png", "truncated.jpg")

# The CLI with an import hook that refuses the modules named in argv[1] (comma-separated), as if not installed.
_WITHOUT = """
import importlib.abc, sys
blocked = sys.argv[1].split(",")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"No module named '{name}' (refused by the test)", name=name)
sys.meta_path.insert(0, Refuse())
sys.argv = ["gflv2-deploy"] + sys.argv[2:]
from gflv2_deploy.cli import main
try:
    main()
finally:
    leaked = [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in blocked)]
    assert not leaked, leaked
"""


def run_without(blocked: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT, blocked, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def read_rows(out: Path) -> list[dict]:
    """Every row of every shard in ``out``, by listing position."""
    rows = [r for f in sorted(out.glob(shard_io.SHARD_GLOB)) for r in shard_io.read_shard(f).to_pylist()]
    return sorted(rows, key=lambda r: r["index"])


def error_lines(stderr: str) -> list[str]:
    """stderr without progress lines (``infer (shards): 3/3 ...``)."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("infer (shards)")]


def file_stats(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob(shard_io.SHARD_GLOB)}


@pytest.fixture(scope="module")
def in_process_run(coco_tiny_onnx: Path, coco_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``infer --ray off`` over the 8 photos and 3 unreadable files, shards of 4, batches of 3."""
    out = tmp_path_factory.mktemp("infer") / "out"
    proc = run_cli("infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out", out, "--ray", "off",
                   "--shard-size", "4", "--batch-size", "3", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out


def test_every_picture_once_with_the_detectors_own_detections(in_process_run: Path, coco_tiny_onnx: Path,
                                                               coco_subset: Path) -> None:
    rows = read_rows(in_process_run)
    pictures = sorted(str(p) for p in (coco_subset / "val2017").iterdir())
    assert [r["path"] for r in rows] == pictures and [r["index"] for r in rows] == list(range(11))
    assert sorted(p.name for p in in_process_run.glob(shard_io.SHARD_GLOB)) == [shard_io.shard_name(i) for i in range(3)]
    detector = load_onnx_detector(coco_tiny_onnx, threads=1)
    for row in rows:
        if Path(row["path"]).name in UNREADABLE:
            assert row["error"] and Path(row["path"]).name in row["error"] and row["boxes"] == []
            continue
        image = read_image(row["path"])
        dets = detector.detect([image])[0]
        assert row["error"] is None and (row["height"], row["width"]) == image.shape[:2] and len(dets.scores) > 0
        assert np.array_equal(np.asarray(row["boxes"], np.float32).reshape(-1, 4), dets.boxes)
        assert np.array_equal(np.asarray(row["scores"], np.float32), dets.scores)
        assert np.array_equal(row["labels"], dets.labels) and row["class_names"][0] == detector.class_names[row["labels"][0]]
    summary = json.loads((in_process_run / "summary.json").read_text())
    assert summary["pictures"] == 11 and summary["failures"] == 3 and summary["pictures_read"] == 8
    assert sorted(Path(f["path"]).name for f in summary["failed"]) == sorted(UNREADABLE)
    assert summary["detections"] == sum(len(r["scores"]) for r in rows)
    assert summary["run"]["engine"] == "process" and summary["run"]["shards_computed"] == 3


def test_a_rerun_reuses_every_complete_shard(in_process_run: Path, coco_tiny_onnx: Path, coco_subset: Path) -> None:
    before = file_stats(in_process_run)
    proc = run_cli("infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out", in_process_run,
                   "--ray", "off", "--shard-size", "4")
    assert proc.returncode == 0, proc.stderr
    assert file_stats(in_process_run) == before  # not rewritten, not replaced
    summary = json.loads((in_process_run / "summary.json").read_text())
    assert summary["run"]["shards_reused"] == 3 and summary["run"]["pictures_computed"] == 0 and summary["pictures"] == 11


def test_a_file_uri_source_gives_the_same_detections(in_process_run: Path, coco_tiny_onnx: Path, coco_subset: Path,
                                                     tmp_path: Path) -> None:
    proc = run_cli("infer", f"file://{coco_subset}/val2017/", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out", tmp_path / "o",
                   "--ray", "off", "--shard-size", "4")
    assert proc.returncode == 0, proc.stderr
    local, remote = read_rows(in_process_run), read_rows(tmp_path / "o")
    assert [r["path"] for r in remote] == [f"file://{r['path']}" for r in local]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("path", "error")}  # noqa: E731
    assert [strip(r) for r in remote] == [strip(r) for r in local]
    assert [r["error"] is None for r in remote] == [r["error"] is None for r in local]


def test_without_ray_the_same_command_runs_in_process_with_one_note(in_process_run: Path, coco_tiny_onnx: Path,
                                                                    coco_subset: Path, tmp_path: Path) -> None:
    # a deployment install: neither Ray nor torch
    proc = run_without("ray,torch", "infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out",
                       tmp_path / "o", "--shard-size", "4", "--actors", "2")
    assert proc.returncode == 0, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("note: Ray is not installed: running in this process"), proc.stderr
    assert "pip install 'gflv2-deploy[ray]'" in lines[0]
    assert read_rows(tmp_path / "o") == read_rows(in_process_run)

    cluster = run_without("ray", "infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}", "--out",
                          tmp_path / "c", "--ray", "head.example:6379")
    assert cluster.returncode == 2 and error_lines(cluster.stderr) == [
        "error: running on the Ray cluster at head.example:6379 needs the Python module 'ray', which is not installed: "
        "pip install 'gflv2-deploy[ray]'"]
    assert not (tmp_path / "c").exists()


def test_without_pyarrow_one_error_line_and_no_output(coco_tiny_onnx: Path, coco_subset: Path, tmp_path: Path) -> None:
    proc = run_without("ray,pyarrow", "infer", coco_subset / "val2017", "--model", f"onnxruntime:{coco_tiny_onnx}",
                       "--out", tmp_path / "o")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == ["error: infer's Parquet output needs the Python module 'pyarrow', which is not "
                                        "installed: pip install 'gflv2-deploy[parquet]'"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--actors", "0"], "--actors must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--gpus-per-actor", "-1"], "--gpus-per-actor must be 0 or more"),
    (["--shard-size", "5"], "holds the results of another job (different shard_size)"),
    (["--model", "onnxruntime:/nonexistent/m.onnx"], "model file not found: /nonexistent/m.onnx"),
    (["--gt", "/nonexistent/gt.json"], "annotation file not found"),
], ids=["actors", "batch", "gpus", "another_job", "model", "gt"])
def test_bad_input_is_one_error_line(args: list[str], fragment: str, in_process_run: Path, coco_tiny_onnx: Path,
                                     coco_subset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from gflv2_deploy.cli import main

    out = in_process_run if fragment.startswith("holds") else tmp_path / "o"
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    model = [] if "--model" in args else ["--model", f"onnxruntime:{coco_tiny_onnx}"]
    monkeypatch.setattr(sys, "argv", ["gflv2-deploy", "infer", str(coco_subset / "val2017"), *model, "--out", str(out),
                                      "--ray", "off", "--shard-size", "3", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = error_lines(capsys.readouterr().err)
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == before  # nothing written


def test_a_model_the_backend_refuses_is_one_line_before_ray_starts(coco_subset: Path, tmp_path: Path, monkeypatch,
                                                                    capsys) -> None:
    pytest.importorskip("ray.data")
    from gflv2_deploy.batch.ray_engine import LOOPBACK_ENV
    from gflv2_deploy.cli import main

    monkeypatch.setenv(LOOPBACK_ENV, "0")  # what --ray local sets; restored after the test
    (tmp_path / "model.pth").write_bytes(b"a checkpoint")
    monkeypatch.setattr(sys, "argv", ["gflv2-deploy", "infer", str(coco_subset / "val2017"), "--model",
                                      f"onnxruntime:{tmp_path / 'model.pth'}", "--out", str(tmp_path / "o"), "--ray", "local"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    lines = error_lines(capsys.readouterr().err)
    assert exit_info.value.code == 2 and len(lines) == 1 and "is a checkpoint: export it first" in lines[0], lines
    import ray

    assert not ray.is_initialized() and not (tmp_path / "o").exists()
