"""The cross-backend benchmark: JSON structure, positive statistics, ONNX cache, the CLI table (small inputs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gflv2_deploy.bench.backends import comparison_rows, run_backend_benchmark, source_image
from gflv2_deploy.bench.timing import stats_from_samples
from gflv2_deploy.errors import UserError

REPO = Path(__file__).resolve().parents[3]
STAT_KEYS = {"iterations", "warmup", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "batch",
             "throughput_img_s", "cov"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("bench_cache")
    return run_backend_benchmark(backends=("torch", "onnxruntime"), config="gflv2_tiny", shapes=[(64, 96)], batches=[1, 2],
                                 iterations=3, warmup=1, rounds=2, threads=1, cache_dir=cache)


def test_report_structure_and_positive_statistics(report: dict) -> None:
    assert set(report) == {"machine", "settings", "results", "comparison", "notes"}
    m = report["machine"]
    assert m["torch_threads"] == 1 and m["onnxruntime_intra_op_threads"] == 1
    assert {"torch", "onnxruntime", "numpy", "processor", "cpu_count", "python"} <= set(m)
    s = report["settings"]
    assert s["backends"] == ["torch", "onnxruntime"] and s["threads"] == 1 and s["iterations"] == 3 and s["rounds"] == 2
    assert [(r["backend"], r["batch"]) for r in report["results"]] == [("torch", 1), ("onnxruntime", 1), ("torch", 2), ("onnxruntime", 2)]
    for r in report["results"]:
        assert r["shape"] == "64x96" and r["model"] == "gflv2_tiny"
        for timing in (r["infer"], r["e2e"]):
            assert set(timing) == STAT_KEYS and timing["iterations"] == 3 and timing["batch"] == r["batch"]
            assert 0 < timing["min_ms"] <= timing["p50_ms"] <= timing["p90_ms"] <= timing["p99_ms"] <= timing["max_ms"]
            assert timing["throughput_img_s"] > 0
    assert any("random weights" in n for n in report["notes"])
    by_batch = {(r["backend"], r["batch"]): r for r in report["results"]}
    assert by_batch[("torch", 2)]["gflop"] == pytest.approx(2 * by_batch[("torch", 1)]["gflop"]) and by_batch[("torch", 1)]["gflop"] > 0
    for r in report["results"]:
        assert r["infer_gflop_s"] == pytest.approx(r["gflop"] / (r["infer"]["p50_ms"] / 1000.0))
    json.dumps(report)  # serialisable as is


def test_comparison_has_speedups_relative_to_torch(report: dict) -> None:
    rows = {(c["backend"], c["batch"]): c for c in report["comparison"]}
    assert rows[("torch", 1)]["infer_speedup_vs_torch"] == 1.0
    ort = rows[("onnxruntime", 2)]
    torch_row = next(r for r in report["results"] if r["backend"] == "torch" and r["batch"] == 2)
    ort_row = next(r for r in report["results"] if r["backend"] == "onnxruntime" and r["batch"] == 2)
    assert ort["infer_speedup_vs_torch"] == pytest.approx(torch_row["infer"]["p50_ms"] / ort_row["infer"]["p50_ms"])
    assert ort["e2e_speedup_vs_torch"] == pytest.approx(torch_row["e2e"]["p50_ms"] / ort_row["e2e"]["p50_ms"])


def test_onnx_export_is_cached_and_reused(report: dict, tmp_path: Path) -> None:
    graph = Path(report["settings"]["onnx_files"]["64x96"])
    assert graph.is_file() and graph.name.endswith("-64x96-none.onnx")
    before = graph.stat().st_mtime_ns
    again = run_backend_benchmark(backends=("onnxruntime",), config="gflv2_tiny", shapes=[(64, 96)], batches=[1], iterations=1,
                                  warmup=0, rounds=1, e2e=False, cache_dir=graph.parent)
    assert graph.stat().st_mtime_ns == before and again["settings"]["onnx_files"]["64x96"] == str(graph)
    assert again["results"][0]["e2e"] is None and again["comparison"][0]["infer_speedup_vs_torch"] is None  # no torch row


@pytest.mark.usefixtures("one_torch_thread")
def test_several_configurations_share_one_report_and_one_peak(tmp_path: Path) -> None:
    report = run_backend_benchmark(backends=("torch", "onnxruntime"), config=["gflv2_tiny", "gflv2_r18_fpn"], shapes=[(64, 64)],
                                   iterations=1, warmup=0, rounds=1, threads=1, e2e=False, peak=True, cache_dir=tmp_path)
    assert report["settings"]["config"] == ["gflv2_tiny", "gflv2_r18_fpn"]
    assert set(report["settings"]["onnx_files"]) == {"gflv2_tiny 64x64", "gflv2_r18_fpn 64x64"}
    assert [(r["model"], r["backend"]) for r in report["results"]] == [
        ("gflv2_tiny", "torch"), ("gflv2_tiny", "onnxruntime"), ("gflv2_r18_fpn", "torch"), ("gflv2_r18_fpn", "onnxruntime")]
    best = max(report["peak"]["gflop_s"].values())  # one measurement behind every row's fraction
    for row, c in zip(report["results"], report["comparison"]):
        assert c["model"] == row["model"] and c["fraction_of_peak"] == pytest.approx(row["infer_gflop_s"] / best)
    with pytest.raises(UserError, match="at most one --config"):
        run_backend_benchmark(backends=("torch",), model=tmp_path / "m.onnx", config=["gflv2_tiny", "gflv2_r18_fpn"])


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="torch, onnxruntime"):
        run_backend_benchmark(backends=("tensorflow",), shapes=[(64, 64)])
    with pytest.raises(UserError, match="once"):
        run_backend_benchmark(backends=("torch", "torch"), shapes=[(64, 64)])
    with pytest.raises(UserError, match="not found"):
        run_backend_benchmark(backends=("torch",), model="missing.pth", shapes=[(64, 64)])
    with pytest.raises(UserError, match="--device cpu"):
        run_backend_benchmark(backends=("torch",), shapes=[(64, 64)], device="cuda", peak=True)


def test_source_image_and_stats_helpers() -> None:
    picture = source_image()
    assert picture.dtype.name == "uint8" and picture.ndim == 3 and picture.shape[2] == 3
    s = stats_from_samples([4.0, 2.0, 3.0, 1.0], warmup=0, batch=2)
    assert s.p50_ms == 2.5 and s.throughput == pytest.approx(800.0)
    assert comparison_rows([]) == []


def test_cli_bench_compares_backends_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "bench", "--backend", "torch,onnxruntime", "--config", "gflv2_tiny",
                           "--shape", "64x64", "--iterations", "2", "--warmup", "0", "--threads", "1",
                           "--cache-dir", str(tmp_path / "cache"), "--peak", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "x torch" in proc.stdout and "% peak" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert data["comparison"][1]["infer_speedup_vs_torch"] > 0
    assert set(data["peak"]["gflop_s"]) == {"torch", "onnxruntime"}
    best = max(data["peak"]["gflop_s"].values())
    assert data["comparison"][1]["fraction_of_peak"] == pytest.approx(data["results"][1]["infer_gflop_s"] / best)
