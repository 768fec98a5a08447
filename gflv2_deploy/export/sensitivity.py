"""INT8 sensitivity: which stages cost AP when quantised, and which to keep in float to meet a budget.

TensorRT 11 has no layer-precision flags, so the old ``polygraphy debug precision`` bisection
becomes an ONNX-level exclusion list (deploy_landscape §5.7). ``run_sensitivity``:

1. AP of the fp32 graph (the baseline) and of the fully quantised graph (head tail always float);
2. AP with each stage of ``precision.STAGES`` quantised ALONE (stem, layer1-4, fpn, head cls tower,
   head reg tower, head prediction convs); drop = baseline - AP;
3. greedy: starting from the full quantisation, keep the stage with the largest solo drop in float,
   re-quantise, re-evaluate, and repeat until the drop fits ``ap_budget`` (or every stage is float).

One calibration run serves every variant: the first quantisation writes onnxruntime's tensor-range
cache (``calib_ranges.json`` in ``work_dir``) and the others read it, so variants differ only in where
Q/DQ nodes sit. AP comes from an injected ``evaluate(onnx_path) -> AP`` (0..1, COCO AP@[.5:.95]) so
this module stays below ``runtime/`` in the dependency order; ``cli.engine`` passes one built on
``runtime.ort_runner.load_onnx_detector`` + ``runtime.evaluate.evaluate_on_coco``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.compare import AP_BUDGETS
from gflv2_deploy.export.precision import STAGE_PREFIX, STAGES
from gflv2_deploy.export.quantize import DEFAULT_CALIB_IMAGES, DEFAULT_METHOD, quantize_int8

Evaluate = Callable[[Path], float]
DEFAULT_AP_BUDGET = AP_BUDGETS["int8"]  # the INT8 row of the one budget table (0.01 = 1.0 AP point)


def run_sensitivity(
    onnx_path: str | os.PathLike[str],
    *,
    calib_data: str | os.PathLike[str],
    evaluate: Evaluate,
    work_dir: str | os.PathLike[str],
    ap_budget: float = DEFAULT_AP_BUDGET,
    target: str = "onnxruntime",
    method: str = DEFAULT_METHOD,
    calib_images: int = DEFAULT_CALIB_IMAGES,
    stages: Sequence[str] = STAGES,
    exclude: Sequence[str] = (),
    auto_exclude: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-stage INT8 sensitivity of a pre-NMS fp32 ONNX and a greedy exclusion list; returns the report.

    evaluate: AP (0..1) of an ONNX file on the evaluation set. work_dir: where the variants, the
    calibration cache and ``sensitivity.json`` go. ap_budget: allowed AP drop in 0..1 units (0.01 =
    1 AP point). exclude: nodes always kept in float (as ``quantize_int8``). auto_exclude: run the
    greedy step. Report members: baseline_ap, full (ap, drop), stages [{stage, ap, drop, onnx}],
    greedy [{exclude, ap, drop}], recommended_exclude, recommended_onnx, met_budget, settings.
    """
    if not 0.0 <= ap_budget < 1.0:
        raise UserError(f"--ap-budget is an AP drop in 0..1 units (0.01 = 1 AP point), got {ap_budget}")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    say = log or (lambda message: None)
    folder = Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "calib_ranges.json"
    if cache.exists():
        cache.unlink()  # ranges of another graph or calibration set must not leak in
    common = dict(calib_data=calib_data, calib_images=calib_images, method=method, target=target,
                  calibration_cache=cache)
    started = time.perf_counter()

    def quantised_ap(name: str, **kwargs: Any) -> tuple[float, Path]:
        out = folder / f"{name}.onnx"
        quantize_int8(onnx_path, out, **common, **kwargs)  # type: ignore[arg-type]
        return float(evaluate(out)), out

    baseline = float(evaluate(Path(onnx_path)))
    say(f"fp32 baseline AP {baseline:.4f}")
    full_ap, full_onnx = quantised_ap("int8_full", exclude=list(exclude))
    say(f"int8 (all stages) AP {full_ap:.4f} (drop {baseline - full_ap:+.4f})")
    solo = []
    for stage in stages:
        ap, out = quantised_ap(f"int8_only_{stage}", exclude=list(exclude), only=[STAGE_PREFIX + stage])
        solo.append({"stage": stage, "ap": ap, "drop": baseline - ap, "onnx": str(out)})
        say(f"  only {stage:<15} AP {ap:.4f} (drop {baseline - ap:+.4f})")
    greedy: list[dict[str, Any]] = []
    kept: list[str] = []
    current_ap, current_onnx = full_ap, full_onnx
    if auto_exclude:
        ranked = [s["stage"] for s in sorted(solo, key=lambda s: s["drop"], reverse=True)]
        for stage in ranked:
            if baseline - current_ap <= ap_budget:
                break
            if len(kept) + 1 == len(stages):
                break  # keeping every stage in float leaves nothing quantised
            kept.append(stage)
            name = "int8_keep_" + "_".join(kept)
            current_ap, current_onnx = quantised_ap(name, exclude=[*exclude, *(STAGE_PREFIX + s for s in kept)])
            greedy.append({"exclude": list(kept), "ap": current_ap, "drop": baseline - current_ap, "onnx": str(current_onnx)})
            say(f"  float {'+'.join(kept)}: AP {current_ap:.4f} (drop {baseline - current_ap:+.4f})")
    report = {
        "source_onnx": str(onnx_path),
        "settings": {"target": target, "method": method, "calib_images": calib_images, "calib_data": str(calib_data),
                     "ap_budget": ap_budget, "always_excluded": list(exclude), "stages": list(stages)},
        "baseline_ap": baseline,
        "full": {"ap": full_ap, "drop": baseline - full_ap, "onnx": str(full_onnx)},
        "stages": solo,
        "greedy": greedy,
        "recommended_exclude": [STAGE_PREFIX + s for s in kept],
        "recommended_onnx": str(current_onnx),
        "recommended_ap": current_ap,
        "met_budget": baseline - current_ap <= ap_budget,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(folder / "sensitivity.json", report)
    return report


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as text lines (AP in COCO points, 0-100)."""
    base = report["baseline_ap"]
    lines = [f"fp32 baseline AP {100 * base:.2f}; budget: drop <= {100 * report['settings']['ap_budget']:.2f} AP",
             f"{'variant':<32}{'AP':>8}{'drop':>8}",
             f"{'int8, all stages':<32}{100 * report['full']['ap']:>8.2f}{100 * report['full']['drop']:>8.2f}"]
    for row in report["stages"]:
        lines.append(f"{'int8, only ' + row['stage']:<32}{100 * row['ap']:>8.2f}{100 * row['drop']:>8.2f}")
    for row in report["greedy"]:
        lines.append(f"{'int8, float ' + '+'.join(row['exclude']):<32}{100 * row['ap']:>8.2f}{100 * row['drop']:>8.2f}")
    verdict = "meets" if report["met_budget"] else "does NOT meet"
    keep = ", ".join(report["recommended_exclude"]) or "nothing"
    lines.append(f"recommended: keep {keep} in float -> AP {100 * report['recommended_ap']:.2f} ({verdict} the budget)")
    return lines
