"""Cross-backend comparison: tensor error statistics, detection matching, AP deltas, budgets, one report.

Numpy only (no torch, no runtime): the runtime layer runs two backends on the same preprocessed batches
and feeds their outputs here (``runtime.evaluate.compare_backends``). Three levels, each with a budget:

(a) PRE-NMS TENSORS (``boxes`` N x A x 4 input pixels, ``scores`` N x A x C), element-wise: max / mean /
    p99 of the absolute and relative error. An element passes when ``|test - ref| <= atol`` OR
    ``|test - ref| <= rtol * |ref|``; an output passes when every element does (``TOLERANCES``, one table
    per precision). Relative error is ``|test - ref| / max(|ref|, atol)``, so values below the absolute
    tolerance (scores of empty background, ~1e-6) are not amplified into huge ratios. p99 comes from a
    log-spaced histogram (100 bins per decade) and is the upper edge of its bin: at most 2.3 % above
    the exact value, never below it; max and mean are exact.
(b) DETECTIONS, after matching (never by position, ``eval/matching.py``): the matched fraction of reference
    detections, |delta score| and |delta box| over matched pairs (max, mean, log histograms), unmatched
    counts on both sides, per class, and the worst images with their detections.
(c) AP of each backend (when ground truth exists) and the drop ``AP_ref - AP_test``.

``check_budgets`` turns a report into failure lines ("scores: max abs error 3e-3 > atol 1e-4 ...");
an empty list is a pass. Budgets per precision live in ``BUDGETS``: fp32 parity is strict (IoU 0.99,
|delta score| 1e-4, AP drop 0.001); the fp16 / int8 rows are provisional starting points (the head
stays fp32 in both recipes, deploy_landscape §5) to be tightened with measurements of those builds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.eval.coco_eval import STAT_NAMES
from gflv2_deploy.eval.histogram import LogHistogram
# (b) lives in eval/matching.py; its names stay importable from here
from gflv2_deploy.eval.matching import BOX_ATOL, DetectionAgreement, ImageMatch, box_iou, match_detections

__all__ = [
    "Tolerance", "Budgets", "TOLERANCES", "BUDGETS", "AP_BUDGETS", "PRECISIONS", "BOX_ATOL",
    "default_budgets", "box_iou", "match_detections", "ImageMatch", "BudgetCheck", "budget_checks",
    "TensorErrorAccumulator", "DetectionAgreement", "ap_comparison", "build_report", "check_budgets",
]


@dataclass(frozen=True)
class Tolerance:
    """Per-output element tolerance: passes when |d| <= atol or |d| <= rtol * |ref| (units of the output)."""

    atol: float
    rtol: float


# THE tolerance table: precision -> pre-NMS output -> tolerance. boxes are in input pixels, scores in [0, 1].
# fp32: two fp32 implementations of the same graph differ by accumulation order only (~1e-6 on scores,
# ~1e-4 px on 1000 px coordinates). fp16/int8: provisional (see the module docstring).
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "fp32": {spec.OUT_SCORES: Tolerance(atol=1e-4, rtol=1e-5), spec.OUT_BOXES: Tolerance(atol=1e-3, rtol=1e-5)},
    "fp16": {spec.OUT_SCORES: Tolerance(atol=5e-3, rtol=1e-2), spec.OUT_BOXES: Tolerance(atol=0.5, rtol=2e-3)},
    "int8": {spec.OUT_SCORES: Tolerance(atol=3e-2, rtol=5e-2), spec.OUT_BOXES: Tolerance(atol=4.0, rtol=1e-2)},
}
PRECISIONS: tuple[str, ...] = tuple(TOLERANCES)


@dataclass(frozen=True)
class Budgets:
    """Detection- and AP-level budgets, and the tensor tolerances of ``precision``.

    iou_thr: IoU for a match. min_matched: matched fraction of reference detections. max_score_delta:
    largest |score_test - score_ref| of a matched pair. max_ap_drop: AP_ref - AP_test (COCO AP .50:.95).
    min_ref_dets: fewest reference detections (over all images) for a pass: a comparison of nothing is no pass.
    """

    precision: str = "fp32"
    iou_thr: float = 0.99
    min_matched: float = 0.995
    max_score_delta: float = 1e-4
    max_ap_drop: float = 0.001
    min_ref_dets: int = 1

    @property
    def tolerances(self) -> dict[str, Tolerance]:
        return TOLERANCES[self.precision]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "tolerances": {k: dataclasses.asdict(v) for k, v in self.tolerances.items()}}


BUDGETS: dict[str, Budgets] = {
    "fp32": Budgets("fp32", iou_thr=0.99, min_matched=0.995, max_score_delta=1e-4, max_ap_drop=0.001),
    "fp16": Budgets("fp16", iou_thr=0.9, min_matched=0.98, max_score_delta=1e-2, max_ap_drop=0.003),
    "int8": Budgets("int8", iou_thr=0.9, min_matched=0.9, max_score_delta=5e-2, max_ap_drop=0.01),
}


# THE AP-drop budget of each reduced precision, in 0..1 units (0.003 = 0.3 AP points): the compare gate, the INT8
# sensitivity search (export/sensitivity.py) and scripts/precision_report.py all read it from here.
AP_BUDGETS: dict[str, float] = {name: row.max_ap_drop for name, row in BUDGETS.items()}


def default_budgets(precision: str = "fp32", **overrides: float | int | None) -> Budgets:
    """The ``BUDGETS`` row of ``precision`` with the non-None ``overrides`` applied. ValueError if unknown."""
    if precision not in BUDGETS:
        raise ValueError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    return dataclasses.replace(BUDGETS[precision], **{k: v for k, v in overrides.items() if v is not None})


# --- (a) tensors ---------------------------------------------------------------------------------------

_BINS_PER_DECADE = 100  # p99 histograms: the reported p99 is at most 2.3 % above the exact value

class TensorErrorAccumulator:
    """Error statistics of one output over many batches (reference vs test arrays of equal shape)."""

    def __init__(self, name: str, tolerance: Tolerance) -> None:
        self.name = name
        self.tolerance = tolerance
        self.count = 0
        self.violations = 0
        self.nonfinite = 0
        self.sum_abs = 0.0
        self.sum_rel = 0.0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ref_abs_max = 0.0
        self.worst: dict[str, Any] | None = None
        self._abs_q = LogHistogram(bins_per_decade=_BINS_PER_DECADE)
        self._rel_q = LogHistogram(bins_per_decade=_BINS_PER_DECADE)

    def update(self, ref: np.ndarray, test: np.ndarray, batch_offset: int = 0) -> None:
        """Add one batch. ``batch_offset`` (images seen before it) makes the reported worst index global."""
        ref = np.asarray(ref, np.float64)
        test = np.asarray(test, np.float64)
        if ref.shape != test.shape:
            raise ValueError(f"output '{self.name}': reference shape {ref.shape} != test shape {test.shape}")
        if ref.size == 0:
            return
        diff = np.abs(test - ref)
        bad = ~np.isfinite(diff)
        self.nonfinite += int(bad.sum())
        diff = np.where(bad, np.inf, diff)
        ref_abs = np.abs(ref)
        tol = self.tolerance
        rel = diff / np.maximum(ref_abs, max(tol.atol, 1e-30))
        self.violations += int(np.count_nonzero((diff > tol.atol) & (diff > tol.rtol * ref_abs)))
        self.count += diff.size
        finite = np.isfinite(diff)
        self.sum_abs += float(diff[finite].sum())
        self.sum_rel += float(rel[finite].sum())
        self.ref_abs_max = max(self.ref_abs_max, float(ref_abs[np.isfinite(ref_abs)].max(initial=0.0)))
        flat = int(np.argmax(diff))
        if diff.flat[flat] > self.max_abs or self.worst is None:
            index = list(np.unravel_index(flat, diff.shape))
            index[0] += batch_offset
            self.worst = {"index": [int(i) for i in index], "ref": float(ref.flat[flat]), "test": float(test.flat[flat])}
        self.max_abs = max(self.max_abs, float(diff.flat[flat]))
        self.max_rel = max(self.max_rel, float(rel.max()))
        self._abs_q.add(diff)
        self._rel_q.add(rel)

    @property
    def passed(self) -> bool:
        return self.count > 0 and self.violations == 0 and self.nonfinite == 0

    def result(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {
            "elements": self.count,
            "max_abs": self.max_abs, "mean_abs": self.sum_abs / n, "p99_abs": self._abs_q.quantile(0.99, self.max_abs),
            "max_rel": self.max_rel, "mean_rel": self.sum_rel / n, "p99_rel": self._rel_q.quantile(0.99, self.max_rel),
            "ref_abs_max": self.ref_abs_max, "violations": self.violations, "nonfinite": self.nonfinite,
            "worst": self.worst, "atol": self.tolerance.atol, "rtol": self.tolerance.rtol, "passed": self.passed,
        }  # fmt: skip


# --- (a) tensors of graphs that select points per level -------------------------------------------------

def align_selected_rows(ref: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], rows_per_level: int,
                        window: int = 4, score_tol: float = 1e-3, box_tol: float = 1.0) -> tuple[dict[str, np.ndarray], int]:
    """Reference pre-NMS rows reordered to face the test's rows, for graphs that select points per level.

    Both sides keep the top ``rows_per_level`` points of every level sorted by max class score, so points
    whose scores differ by less than the numerical error between backends may swap places, and the last
    kept points of a level may differ. Each test row is paired with the reference row of the same level block
    that is closest in max(|d max score| / score_tol, |d box| / box_tol), searched over the whole block: an
    FP16 or INT8 score error moves a point among near-tied neighbours by far more than a few places (a
    window of 4 rows paired different points and reported box errors of ~100 px for FP16 graphs whose
    point-for-point error is below 0.5 px). A row without a partner within both tolerances, over the whole
    class-score vector, that could have been kept by one side only (among the last ``window`` of its
    level, or scoring within ``score_tol`` of the level's lowest kept score on either side) takes the
    test's own values and is counted; any other row keeps its best partner, however far (real errors show).
    ref / test: {"boxes": N x A x 4, "scores": N x A x C}, A a multiple of ``rows_per_level``.
    Returns (aligned reference arrays, number of unpaired rows).
    """
    r_scores, t_scores = np.asarray(ref["scores"]), np.asarray(test["scores"])
    r_boxes, t_boxes = np.asarray(ref["boxes"]), np.asarray(test["boxes"])
    n, a, _ = t_scores.shape
    k = int(rows_per_level)
    r_best, t_best = r_scores.max(axis=2).astype(np.float64), t_scores.max(axis=2).astype(np.float64)
    pick = np.tile(np.arange(a), (n, 1))
    for i in range(n):
        for start in range(0, a, k):  # K_ref x K_test cost per level block (8 MB at K = 1000)
            block = slice(start, start + k)
            cost = np.abs(r_best[i, block][:, None] - t_best[i, block][None, :]) / score_tol
            for c in range(4):
                diff = np.abs(r_boxes[i, block, c][:, None].astype(np.float64) - t_boxes[i, block, c][None, :])
                np.maximum(cost, diff / box_tol, out=cost)
            pick[i, block] = start + cost.argmin(axis=0)
    rows = np.arange(n)[:, None]
    full = np.maximum(np.abs(r_scores[rows, pick] - t_scores).max(axis=2) / score_tol,
                      np.abs(r_boxes[rows, pick] - t_boxes).max(axis=2) / box_tol)
    cut = np.maximum(r_best.reshape(n, -1, k).min(axis=2), t_best.reshape(n, -1, k).min(axis=2))  # per level
    near_cut = t_best <= np.repeat(cut, k, axis=1) + score_tol
    tail = (np.arange(a) % k >= k - window)[None, :]
    unpaired = (full > 1.0) & (tail | near_cut)
    aligned = {key: np.where(unpaired[..., None], np.asarray(test[key]), np.asarray(ref[key])[rows, pick]) for key in ref}
    return aligned, int(unpaired.sum())


# --- (c) AP, report, budgets ---------------------------------------------------------------------------

def ap_comparison(ref_metrics: Mapping[str, Any], test_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Named COCO statistics of both backends, test - ref per statistic, and ``ap_drop`` = AP_ref - AP_test."""
    ref = dict(zip(STAT_NAMES, ref_metrics["stats"]))
    test = dict(zip(STAT_NAMES, test_metrics["stats"]))
    return {"ref": ref, "test": test, "delta": {k: test[k] - ref[k] for k in STAT_NAMES}, "ap_drop": ref["AP"] - test["AP"],
            "num_images": ref_metrics.get("num_images")}


def build_report(*, ref: Mapping[str, Any], test: Mapping[str, Any], budgets: Budgets,
                 tensors: Mapping[str, TensorErrorAccumulator] | None, tensors_note: str | None,
                 detections: DetectionAgreement, ap: Mapping[str, Any] | None, settings: Mapping[str, Any],
                 notes: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON report: what ran, (a) tensors, (b) detections, (c) AP, budgets, failures and the verdict."""
    report: dict[str, Any] = {
        "ref": dict(ref), "test": dict(test), "settings": dict(settings), "budgets": budgets.to_dict(),
        "tensors": {k: acc.result() for k, acc in tensors.items()} if tensors else None, "tensors_note": tensors_note,
        "detections": detections.result(), "ap": dict(ap) if ap is not None else None, "notes": list(notes),
    }  # fmt: skip
    report["failures"] = check_budgets(report)
    report["passed"] = not report["failures"]
    return report


@dataclass(frozen=True)
class BudgetCheck:
    """One budget of a comparison: what was measured against which limit, and whether it held.

    budget: short name ("scores", "matched fraction", ...). measured / limit: human-readable values.
    failure: the line ``check_budgets`` prints when the budget does not hold.
    """

    budget: str
    measured: str
    limit: str
    passed: bool
    failure: str


def budget_checks(report: Mapping[str, Any]) -> list[BudgetCheck]:
    """Every budget of a report made by ``build_report``, held or not, in the order the report lists them."""
    b = report["budgets"]
    checks = []
    for name, t in (report.get("tensors") or {}).items():
        what = f"{t['nonfinite']} non-finite value(s), " if t["nonfinite"] else ""
        checks.append(BudgetCheck(
            f"pre-NMS {name}", f"max abs {t['max_abs']:.3g}, {t['violations']} of {t['elements']} beyond",
            f"atol {t['atol']:g} or rtol {t['rtol']:g}", bool(t["passed"]),
            f"{name}: {what}{t['violations']} of {t['elements']} elements beyond atol {t['atol']:g} / "
            f"rtol {t['rtol']:g} (max abs error {t['max_abs']:.3g}, max rel {t['max_rel']:.3g})"))
    d = report["detections"]
    min_ref = b.get("min_ref_dets", 1)
    checks.append(BudgetCheck(
        "reference detections", str(d["num_ref"]), f">= {min_ref}", d["num_ref"] >= min_ref,
        f"detections: the reference made {d['num_ref']} detection(s), fewer than the required {min_ref}: nothing was "
        "compared (a model that detects nothing, or scores all below the threshold), so parity is not shown"))
    checks.append(BudgetCheck(
        "matched fraction", f"{d['matched_fraction']:.4f} at IoU >= {d['iou_thr']}", f">= {b['min_matched']}",
        d["matched_fraction"] >= b["min_matched"],
        f"detections: matched fraction {d['matched_fraction']:.4f} < {b['min_matched']} at IoU >= {d['iou_thr']} "
        f"({d['unmatched_ref']} reference and {d['unmatched_test']} test detections unmatched)"))
    checks.append(BudgetCheck(
        "max |score delta|", f"{d['score_delta_max']:.3g}", f"<= {b['max_score_delta']:g}",
        d["score_delta_max"] <= b["max_score_delta"],
        f"detections: max |score delta| {d['score_delta_max']:.3g} > {b['max_score_delta']:g}"))
    ap = report.get("ap")
    if ap is not None:
        checks.append(BudgetCheck(
            "AP drop", f"{ap['ap_drop']:.4f} (ref {ap['ref']['AP']:.4f}, test {ap['test']['AP']:.4f})",
            f"<= {b['max_ap_drop']}", ap["ap_drop"] <= b["max_ap_drop"],
            f"AP: drop {ap['ap_drop']:.4f} (ref {ap['ref']['AP']:.4f}, test {ap['test']['AP']:.4f}) > {b['max_ap_drop']}"))
    return checks


def check_budgets(report: Mapping[str, Any]) -> list[str]:
    """One line per exceeded budget of a report made by ``build_report`` (empty list: passed)."""
    return [c.failure for c in budget_checks(report) if not c.passed]
