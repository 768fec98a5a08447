"""The cross-backend benchmark: JSON structure, positive statistics, ONNX cache, the CLI table (small inputs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.bench.backends import (E2E_STAGES, comparison_rows, consistency_notes, default_cache_dir, run_backend_benchmark,
                                         source_image)
from gflv2_deploy.bench.timing import load_warning, parse_cpuinfo, stats_from_samples
from gflv2_deploy.errors import UserError

REPO = Path(__file__).resolve().parents[3]
STAT_KEYS = {"iterations", "warmup", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "batch",
             "throughput_img_s", "cov", "samples_ms"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("bench_cache")
    return run_backend_benchmark(backends=("torch", "onnxruntime"), config="gflv2_tiny", shapes=[(64, 96)], batches=[1, 2],
                                 iterations=3, warmup=1, rounds=2, threads=1, cache_dir=cache)


def test_report_structure_and_positive_statistics(report: dict) -> None:
    assert set(report) == {"machine", "settings", "results", "comparison", "notes", "load_warning"}
    m = report["machine"]
    assert m["torch_threads"] == 1 and m["onnxruntime_intra_op_threads"] == 1
    assert {"torch", "onnxruntime", "numpy", "processor", "cpu_count", "python", "cpu_flags"} <= set(m)
    assert len(m["load_average_at_start_1_5_15min"]) == 3 and len(m["load_average_1_5_15min"]) == 3
    assert report["load_warning"] == load_warning(max(m["load_average_at_start_1_5_15min"][0], m["load_average_1_5_15min"][0]),
                                                  m["affinity_cpus"])
    s = report["settings"]
    assert s["backends"] == ["torch", "onnxruntime"] and s["threads"] == 1 and s["iterations"] == 3 and s["rounds"] == 2
    assert [(r["backend"], r["batch"]) for r in report["results"]] == [("torch", 1), ("onnxruntime", 1), ("torch", 2), ("onnxruntime", 2)]
    for r in report["results"]:
        assert r["shape"] == "64x96" and r["model"] == "gflv2_tiny"
        for timing in (r["infer"], r["e2e"]):
            assert set(timing) == STAT_KEYS and timing["iterations"] == 3 and timing["batch"] == r["batch"]
            assert 0 < timing["min_ms"] <= timing["p50_ms"] <= timing["p90_ms"] <= timing["p99_ms"] <= timing["max_ms"]
            assert timing["throughput_img_s"] > 0
            # the raw samples behind the statistics travel with them (a report draws their distribution)
            assert len(timing["samples_ms"]) == 3
            assert timing["p50_ms"] == pytest.approx(float(np.median(timing["samples_ms"])), abs=1e-3)
        stages = r["e2e_stages"]
        assert set(stages) == set(E2E_STAGES) and all(stages[k]["iterations"] == 3 for k in E2E_STAGES)
        # timed inside the same iterations: every percentile of e2e is at least the network's and the stages' sum
        for q in ("min_ms", "p50_ms", "p90_ms", "max_ms"):
            assert r["e2e"][q] >= stages["network"][q] > 0
        assert r["e2e"]["mean_ms"] >= sum(stages[k]["mean_ms"] for k in E2E_STAGES)
        assert r["consistency"] == consistency_notes(r)
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
    assert "onnxruntime" in proc.stdout and "x torch" in proc.stdout and "% peak" in proc.stdout and "e2e/net" in proc.stdout
    assert "flags:" in proc.stdout and "load average" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "onnxruntime"]
    assert data["comparison"][1]["infer_speedup_vs_torch"] > 0
    assert set(data["peak"]["gflop_s"]) == {"torch", "onnxruntime"}
    best = max(data["peak"]["gflop_s"].values())
    assert data["comparison"][1]["fraction_of_peak"] == pytest.approx(data["results"][1]["infer_gflop_s"] / best)


def _stats(p50: float) -> dict:
    return stats_from_samples([p50], warmup=0).to_dict()


def test_consistency_notes_flag_e2e_below_network() -> None:
    row = {"infer": _stats(10.0), "e2e": _stats(12.0), "e2e_stages": {"network": _stats(9.0)}}
    assert consistency_notes(row) == []
    assert consistency_notes({**row, "e2e": None}) == []
    busy = {**row, "infer": _stats(14.0)}  # the separate network timing hit a slow spell
    (note,) = consistency_notes(busy)
    assert "below the separately timed network p50 14.00 ms" in note and "inside e2e the network took 9.00 ms" in note
    broken = {**row, "e2e_stages": {"network": _stats(13.0)}}
    assert any("timing bug" in n for n in consistency_notes(broken))
    rows = comparison_rows([{**busy, "backend": "torch", "model": "m", "shape": "64x64", "batch": 1, "consistency": consistency_notes(busy)}])
    assert rows[0]["consistent"] is False and rows[0]["e2e_over_network"] == pytest.approx(12.0 / 9.0)


def test_load_warning_above_half_the_cores() -> None:
    assert load_warning(1.0, 2) is None and load_warning(0.0, 1) is None
    line = load_warning(1.5, 2)
    assert line is not None and "1.50" in line and "2 cores" in line and "\n" not in line


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_tile amx_int8 amx_bf16

processor\t: 1
model name\t: Other
flags\t\t: fpu sse2
"""


def test_parse_cpuinfo_reads_model_and_isa_flags() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == {"model": "Intel(R) Xeon(R) Platinum 8480+",
                    "flags": ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"]}
    avx2_only = parse_cpuinfo("model name : AMD EPYC 7B12\nflags : fpu avx avx2 fma\n")
    assert avx2_only == {"model": "AMD EPYC 7B12", "flags": ["avx2", "fma"]}
    assert parse_cpuinfo("") == {"model": "unknown", "flags": []}
    assert parse_cpuinfo("Features\t: fp asimd asimddp\n")["flags"] == []  # ARM: none of the x86 flags


def test_default_cache_dir_is_never_the_current_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "gflv2-deploy" / "bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG specification asks
    assert default_cache_dir() == Path.home() / ".cache" / "gflv2-deploy" / "bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir().is_absolute()


def test_default_cache_is_not_written_into_the_current_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    report = run_backend_benchmark(backends=("onnxruntime",), config="gflv2_tiny", shapes=[(64, 64)], iterations=1, warmup=0,
                                   rounds=1, threads=1, e2e=False)
    assert list((tmp_path / "work").iterdir()) == []
    assert Path(report["settings"]["onnx_files"]["64x64"]).parent == tmp_path / "xdg" / "gflv2-deploy" / "bench"


def test_openvino_rows_beside_the_others(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    report = run_backend_benchmark(backends=("torch", "onnxruntime", "openvino"), config="gflv2_tiny", shapes=[(64, 96)],
                                   batches=[1], iterations=2, warmup=1, rounds=1, threads=1, cache_dir=tmp_path)
    rows = {r["backend"]: r for r in report["results"]}
    assert list(rows) == ["torch", "onnxruntime", "openvino"]
    assert rows["openvino"]["graph"] == rows["onnxruntime"]["graph"]  # the same exported ONNX
    assert rows["openvino"]["infer"]["p50_ms"] > 0 and rows["openvino"]["e2e_stages"]["network"]["p50_ms"] > 0
    assert report["machine"]["openvino_inference_num_threads"] == 1 and "openvino" in report["machine"]
    assert report["comparison"][2]["infer_speedup_vs_torch"] > 0


def test_network_and_e2e_alternate_call_by_call_within_a_backend_block() -> None:
    from gflv2_deploy.bench.backends import _time_interleaved

    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n) or ({"network": 1.0} if n.endswith("e2e") else None))
           for name in ("a/infer", "a/e2e", "b/infer", "b/e2e")}
    stats = _time_interleaved(fns, iterations=4, warmup=0, rounds=2, batch=1)
    assert calls == ["a/infer", "a/e2e"] * 2 + ["b/infer", "b/e2e"] * 2 + ["a/infer", "a/e2e"] * 2 + ["b/infer", "b/e2e"] * 2
    assert stats["a/e2e.network"]["iterations"] == 4 and "a/infer.network" not in stats
    assert stats["a/e2e.network"]["samples_ms"] == [1.0] * 4 and len(stats["b/infer"]["samples_ms"]) == 4


def test_clocked_network_times_the_runner_itself_and_restores_it() -> None:
    """No copy of the runner (a copy of one owning a native handle was a second owner: the C++ double free):
    its network methods are shadowed for the block, a nested call counts once, and they are restored after."""
    import time

    from gflv2_deploy.bench.backends import clocked_network

    class Runner:  # infer calls head_outputs, as TorchRunner does
        def head_outputs(self, x: int) -> int:
            time.sleep(0.002)
            return x

        def infer(self, x: int) -> int:
            return self.head_outputs(x)

    runner, spent = Runner(), []
    with clocked_network(runner, spent):
        assert runner.infer(1) == 1 and runner.head_outputs(2) == 2
    assert len(spent) == 2 and min(spent) >= 2.0
    assert "infer" not in vars(runner) and "head_outputs" not in vars(runner)
    runner.infer(3)
    assert len(spent) == 2
    with pytest.raises(ZeroDivisionError), clocked_network(runner, spent):
        1 / 0
    assert "infer" not in vars(runner)
