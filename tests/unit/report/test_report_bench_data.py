"""The data behind the bench section: samples per case, the stage split, throughput by batch, speed-ups."""

from __future__ import annotations

import pytest

from gflv2_deploy.report.bench_data import case_label, latency_cases, machine_rows, ratio_rows, stage_split, throughput_series


def _stats(p50: float, mean: float, batch: int = 1, samples=None) -> dict:
    d = {"p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "mean_ms": mean, "throughput_img_s": 1000 * batch / p50}
    return {**d, "samples_ms": samples} if samples is not None else d


def _row(backend: str, batch: int, p50: float, stages=(1.0, 8.0, 2.0)) -> dict:
    return {"backend": backend, "model": "gflv2_tiny", "shape": "64x96", "batch": batch,
            "infer": _stats(p50, p50, batch, [p50, p50 + 1]), "e2e": _stats(p50 + 3, sum(stages), batch),
            "e2e_stages": {k: _stats(v, v) for k, v in zip(("preprocess", "network", "postprocess"), stages)}}


RESULTS = [_row("torch", 2, 20.0), _row("onnxruntime", 2, 10.0), _row("torch", 1, 12.0), _row("onnxruntime", 1, 5.0)]


def test_cases_and_samples() -> None:
    cases = latency_cases(RESULTS)
    assert [c.label for c in cases] == ["torch 64x96 b2", "onnxruntime 64x96 b2", "torch 64x96 b1", "onnxruntime 64x96 b1"]
    assert cases[1].infer_samples == [10.0, 11.0] and cases[1].e2e_samples is None
    assert case_label({**RESULTS[0], "model": "r50"}, models=2) == "torch r50 64x96 b2"


def test_stage_split_uses_means_that_add_up() -> None:
    split = stage_split(RESULTS)[0]
    assert (split.preprocess, split.network, split.postprocess, split.e2e_mean) == (1.0, 8.0, 2.0, 11.0)
    assert stage_split([{**RESULTS[0], "e2e": None, "e2e_stages": None}]) == []


def test_throughput_by_batch_per_backend() -> None:
    series = throughput_series(RESULTS)
    assert list(series) == ["torch 64x96", "onnxruntime 64x96"]
    assert [(b, round(v, 3)) for b, v, _ in series["onnxruntime 64x96"]] == [(1, 200.0), (2, 200.0)]
    assert series["torch 64x96"][0][2] == pytest.approx(1000 / 15)


def test_ratios_come_from_the_bench_comparison_rows() -> None:
    report = {"results": RESULTS, "comparison": [
        {"backend": "torch", "model": "gflv2_tiny", "shape": "64x96", "batch": 2, "infer_speedup_vs_torch": 1.0, "e2e_speedup_vs_torch": 1.0},
        {"backend": "onnxruntime", "model": "gflv2_tiny", "shape": "64x96", "batch": 2, "infer_speedup_vs_torch": 2.0,
         "e2e_speedup_vs_torch": 1.5},
        {"backend": "openvino", "model": "gflv2_tiny", "shape": "64x96", "batch": 2, "infer_speedup_vs_torch": None}]}
    assert ratio_rows(report) == [{"label": "onnxruntime 64x96 b2", "infer": 2.0, "e2e": 1.5}]


def test_machine_rows_name_cpu_flags_and_load() -> None:
    rows = dict(machine_rows({"machine": {"processor": "EPYC", "cpu_flags": ["avx2", "fma"], "cpu_count": 2, "affinity_cpus": 2,
                                          "load_average_at_start_1_5_15min": [0.5, 0.4, 0.3], "load_average_1_5_15min": [1.0, 0.5, 0.3],
                                          "torch": "2.13.0", "onnxruntime": "1.32.0"},
                              "settings": {"iterations": 20, "warmup": 3, "rounds": 2, "device": "cpu", "image": "x.jpg"},
                              "load_warning": None}))
    assert rows["CPU"] == "EPYC" and rows["ISA flags"] == "avx2, fma"
    assert rows["load average 1/5/15 min"] == "0.5, 0.4, 0.3 at start, 1.0, 0.5, 0.3 at end"
    assert rows["versions"] == "torch 2.13.0, onnxruntime 1.32.0" and "warning" not in rows
