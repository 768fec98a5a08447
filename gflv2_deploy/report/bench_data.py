"""What the bench section shows, selected from a bench result: latency samples, stage split, throughput, ratios, machine.

Plain data for ``plots`` and ``sections``. A case is one row of the result: backend x model x shape x batch.
Files written before raw samples were kept have percentiles only; their cases have no samples (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["STAGES", "case_label", "LatencyCase", "latency_cases", "StageSplit", "stage_split", "throughput_series",
           "ratio_rows", "machine_rows"]

STAGES: tuple[str, ...] = ("preprocess", "network", "postprocess")


def case_label(row: Mapping[str, Any], models: int = 1) -> str:
    """"onnxruntime 640x640 b1" (the model's name too when the result times several models)."""
    model = f" {row['model']}" if models > 1 else ""
    return f"{row['backend']}{model} {row['shape']} b{row['batch']}"


def _models(results: Sequence[Mapping[str, Any]]) -> int:
    return len({r["model"] for r in results})


@dataclass(frozen=True)
class LatencyCase:
    """One case's latencies (ms per call): network alone and end to end, raw samples when the file has them."""

    label: str
    backend: str
    infer: Mapping[str, Any]  # the statistics dict (p50_ms, p90_ms, p99_ms, ...)
    e2e: Mapping[str, Any] | None
    infer_samples: list[float] | None
    e2e_samples: list[float] | None


def latency_cases(results: Sequence[Mapping[str, Any]]) -> list[LatencyCase]:
    """Every case in the file's order (backends of one shape and batch next to each other)."""
    models = _models(results)
    return [LatencyCase(case_label(r, models), r["backend"], r["infer"], r.get("e2e"), r["infer"].get("samples_ms"),
                        (r.get("e2e") or {}).get("samples_ms")) for r in results]


@dataclass(frozen=True)
class StageSplit:
    """Mean milliseconds of each end-to-end stage of one case (timed inside the same calls, so they add up)."""

    label: str
    preprocess: float
    network: float
    postprocess: float
    e2e_mean: float


def stage_split(results: Sequence[Mapping[str, Any]]) -> list[StageSplit]:
    """The pre / network / post split of every case timed end to end, in file order.

    Means, not medians: means of the stages add up to the mean of their sum; medians do not.
    """
    models = _models(results)
    out = []
    for r in results:
        stages = r.get("e2e_stages") or {}
        if r.get("e2e") and all(s in stages for s in STAGES):
            out.append(StageSplit(case_label(r, models), *(float(stages[s]["mean_ms"]) for s in STAGES), float(r["e2e"]["mean_ms"])))
    return out


def throughput_series(results: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float | None]]]:
    """Per backend (and model and shape): (batch, network img/s, end-to-end img/s or None), by batch size.

    Throughput at the median latency: batch * 1000 / p50 ms.
    """
    models = _models(results)
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for r in results:
        key = f"{r['backend']}{' ' + r['model'] if models > 1 else ''} {r['shape']}"
        e2e = (r.get("e2e") or {}).get("throughput_img_s")
        series.setdefault(key, []).append((int(r["batch"]), float(r["infer"]["throughput_img_s"]), e2e))
    return {k: sorted(v) for k, v in series.items()}


def ratio_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per case of a backend other than torch (the reference): its speed-up over torch on the same model,
    shape and batch (torch p50 / its p50; > 1 is faster), network and end to end, as the bench's own
    ``comparison`` rows computed them. Empty when torch was not timed."""
    models = _models(report["results"])
    return [{"label": case_label(c, models), "infer": c["infer_speedup_vs_torch"], "e2e": c.get("e2e_speedup_vs_torch")}
            for c in report.get("comparison", []) if c["backend"] != "torch" and c.get("infer_speedup_vs_torch")]


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    return "-" if value is None else str(value)


def machine_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows: CPU model, ISA flags, cores, load averages, threads, library versions, settings."""
    m = report["machine"]
    s = report.get("settings", {})
    rows = [("CPU", _text(m.get("processor"))),
            ("ISA flags", _text(m.get("cpu_flags")) if m.get("cpu_flags") else "none of avx2 / avx512 / vnni / amx"),
            ("cores (usable)", f"{m.get('cpu_count')} ({m.get('affinity_cpus', '?')})"),
            ("load average 1/5/15 min", f"{_text(m.get('load_average_at_start_1_5_15min'))} at start, "
                                        f"{_text(m.get('load_average_1_5_15min'))} at end"),
            ("threads", f"torch {m.get('torch_threads', '?')}, onnxruntime {m.get('onnxruntime_intra_op_threads', '?')}"),
            ("platform", f"{_text(m.get('platform'))}, Python {_text(m.get('python'))}")]
    versions = [f"{lib} {m[lib]}" for lib in ("numpy", "torch", "onnxruntime", "onnx", "openvino") if lib in m]
    rows.append(("versions", ", ".join(versions) or "-"))
    if s:
        rows.append(("timing", f"{s.get('iterations')} iterations after {s.get('warmup')} warm-up, "
                               f"{s.get('rounds')} rounds, device {s.get('device')}"))
        rows.append(("end-to-end picture", _text(s.get("image"))))
    if report.get("load_warning"):
        rows.append(("warning", str(report["load_warning"])))
    return rows
