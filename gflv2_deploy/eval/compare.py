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
(b) DETECTIONS, after matching (never by position): per image and class, reference detections in
    descending score each take the unmatched test detection of that class with the highest IoU, if
    that IoU >= ``iou_thr``. Boxes whose corners agree within ``BOX_ATOL`` px count as IoU 1, because a
    box clamped to zero width has IoU 0 even with itself. Reported: the matched fraction of reference
    detections, |delta score| max/mean over matched pairs, unmatched counts on both sides, per class,
    and the worst images. Within one class a reference set has pairwise IoU <= the NMS threshold (0.6),
    so for ``iou_thr`` > ~0.8 a test box can match at most one reference box: greedy is exact here.
(c) AP of each backend (when ground truth exists) and the drop ``AP_ref - AP_test``.

``check_budgets`` turns a report into failure lines ("scores: max abs error 3e-3 > atol 1e-4 ...");
an empty list is a pass. Budgets per precision live in ``BUDGETS``: fp32 parity is strict (IoU 0.99,
|delta score| 1e-4, AP drop 0.001); the fp16 / int8 rows are provisional starting points (the head
stays fp32 in both recipes, deploy_landscape §5) to be tightened with measurements of those builds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.eval.coco_eval import STAT_NAMES

__all__ = [
    "Tolerance", "Budgets", "TOLERANCES", "BUDGETS", "AP_BUDGETS", "PRECISIONS", "BOX_ATOL",
    "default_budgets", "box_iou", "match_detections", "ImageMatch",
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
BOX_ATOL = 1e-2  # px: corners this close count as the same box (degenerate, zero-area boxes)


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

_DECADES = (-12, 6)  # histogram range of absolute/relative errors: 1e-12 .. 1e6
_BINS_PER_DECADE = 100
_EDGES = 10.0 ** (np.arange(_DECADES[0] * _BINS_PER_DECADE, _DECADES[1] * _BINS_PER_DECADE + 1) / _BINS_PER_DECADE)


class _Quantile:
    """Streaming upper-bound quantile of non-negative values (zero bin + log bins + overflow)."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(_EDGES) + 1, np.int64)  # [0] exact zeros / below 1e-12, [i] (E[i-1], E[i]], [-1] > 1e6

    def add(self, values: np.ndarray) -> None:
        idx = np.searchsorted(_EDGES, values, side="left")  # value <= E[0] -> 0; E[i-1] < v <= E[i] -> i
        self.counts += np.bincount(idx.ravel(), minlength=len(self.counts))[: len(self.counts)]

    def quantile(self, q: float, maximum: float) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        rank = math.ceil(q * total)
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        if i == 0:
            return float(min(maximum, _EDGES[0])) if maximum > 0 else 0.0
        return float(min(maximum, _EDGES[i])) if i < len(_EDGES) else maximum


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
        self._abs_q = _Quantile()
        self._rel_q = _Quantile()

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


# --- (b) detections ------------------------------------------------------------------------------------

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


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of K x 4 and M x 4 (x1, y1, x2, y2) boxes -> K x M float64 (0 where the union is empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class ImageMatch:
    """Matched pairs of one image: indices into the reference and test detections, their IoU and score delta."""

    ref_index: np.ndarray  # M int64
    test_index: np.ndarray  # M int64
    iou: np.ndarray  # M float64 (1.0 for boxes equal within BOX_ATOL)
    score_delta: np.ndarray  # M float64, test - ref
    num_ref: int
    num_test: int

    @property
    def matched(self) -> int:
        return int(self.ref_index.shape[0])


def match_detections(ref: spec.Detections, test: spec.Detections, iou_thr: float = 0.99,
                     box_atol: float = BOX_ATOL) -> ImageMatch:
    """One-to-one matching of one image's detections, per class, greedy by reference score.

    Each reference detection (descending score) takes the unmatched test detection of the same label
    with the highest IoU, if that IoU >= ``iou_thr`` (corners within ``box_atol`` px count as IoU 1).
    Order of either input does not matter.
    """
    pairs_r: list[int] = []
    pairs_t: list[int] = []
    ious: list[float] = []
    if len(ref) and len(test):
        for label in np.intersect1d(ref.labels, test.labels):
            r_idx = np.flatnonzero(ref.labels == label)
            t_idx = np.flatnonzero(test.labels == label)
            r_idx = r_idx[np.argsort(-ref.scores[r_idx], kind="stable")]
            iou = box_iou(ref.boxes[r_idx], test.boxes[t_idx])
            same = np.abs(ref.boxes[r_idx][:, None, :].astype(np.float64) - test.boxes[t_idx][None, :, :]).max(-1) <= box_atol
            iou = np.where(same, 1.0, iou)
            used = np.zeros(len(t_idx), bool)
            for row, r in enumerate(r_idx):
                cand = np.where(used, -1.0, iou[row])
                j = int(np.argmax(cand))
                if cand[j] >= iou_thr:
                    used[j] = True
                    pairs_r.append(int(r))
                    pairs_t.append(int(t_idx[j]))
                    ious.append(float(cand[j]))
    ri = np.asarray(pairs_r, np.int64)
    ti = np.asarray(pairs_t, np.int64)
    delta = test.scores[ti].astype(np.float64) - ref.scores[ri].astype(np.float64) if len(ri) else np.zeros(0)
    return ImageMatch(ri, ti, np.asarray(ious, np.float64), delta, len(ref), len(test))


class DetectionAgreement:
    """Detection-level agreement accumulated over images (see ``match_detections``)."""

    def __init__(self, iou_thr: float, max_score_delta: float, class_names: Sequence[str] = ()) -> None:
        self.iou_thr = float(iou_thr)
        self.max_score_delta = float(max_score_delta)
        self.class_names = tuple(class_names)
        self.images = 0
        self.num_ref = self.num_test = self.matched = self.within_score = 0
        self.deltas: list[np.ndarray] = []
        self.min_iou = 1.0
        self.per_class: dict[int, list[int]] = {}  # label -> [ref, test, matched]
        self.per_image: list[dict[str, Any]] = []

    def update(self, image: Any, ref: spec.Detections, test: spec.Detections) -> ImageMatch:
        m = match_detections(ref, test, self.iou_thr)
        self.images += 1
        self.num_ref += m.num_ref
        self.num_test += m.num_test
        self.matched += m.matched
        abs_delta = np.abs(m.score_delta)
        self.within_score += int(np.count_nonzero(abs_delta <= self.max_score_delta))
        self.deltas.append(abs_delta)
        if m.matched:
            self.min_iou = min(self.min_iou, float(m.iou.min()))
        for labels, col in ((ref.labels, 0), (test.labels, 1), (ref.labels[m.ref_index], 2)):
            for label, count in zip(*np.unique(labels, return_counts=True)):
                self.per_class.setdefault(int(label), [0, 0, 0])[col] += int(count)
        self.per_image.append({"image": image, "ref": m.num_ref, "test": m.num_test, "matched": m.matched,
                               "max_score_delta": float(abs_delta.max(initial=0.0))})
        return m

    def _name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def result(self, worst: int = 5) -> dict[str, Any]:
        deltas = np.concatenate(self.deltas) if self.deltas else np.zeros(0)
        frac = self.matched / self.num_ref if self.num_ref else (1.0 if self.num_test == 0 else 0.0)
        bad = sorted(self.per_image, key=lambda r: (r["matched"] - max(r["ref"], r["test"]), -r["max_score_delta"]))
        return {
            "images": self.images, "iou_thr": self.iou_thr, "num_ref": self.num_ref, "num_test": self.num_test,
            "matched": self.matched, "matched_fraction": frac,
            "matched_within_score_fraction": self.within_score / self.num_ref if self.num_ref else frac,
            "unmatched_ref": self.num_ref - self.matched, "unmatched_test": self.num_test - self.matched,
            "score_delta_max": float(deltas.max(initial=0.0)), "score_delta_mean": float(deltas.mean()) if deltas.size else 0.0,
            "min_matched_iou": self.min_iou if self.matched else None,
            "per_class": {self._name(k): {"ref": v[0], "test": v[1], "matched": v[2]} for k, v in sorted(self.per_class.items())},
            "worst_images": [r for r in bad[:worst] if r["matched"] < max(r["ref"], r["test"]) or r["max_score_delta"] > 0],
        }  # fmt: skip


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


def check_budgets(report: Mapping[str, Any]) -> list[str]:
    """One line per exceeded budget of a report made by ``build_report`` (empty list: passed)."""
    b = report["budgets"]
    failures = []
    for name, t in (report.get("tensors") or {}).items():
        if not t["passed"]:
            what = f"{t['nonfinite']} non-finite value(s), " if t["nonfinite"] else ""
            failures.append(f"{name}: {what}{t['violations']} of {t['elements']} elements beyond atol {t['atol']:g} / "
                            f"rtol {t['rtol']:g} (max abs error {t['max_abs']:.3g}, max rel {t['max_rel']:.3g})")
    d = report["detections"]
    if d["num_ref"] < b.get("min_ref_dets", 1):
        failures.append(f"detections: the reference made {d['num_ref']} detection(s), fewer than the required "
                        f"{b.get('min_ref_dets', 1)}: nothing was compared (a model that detects nothing, or scores all "
                        "below the threshold), so parity is not shown")
    if d["matched_fraction"] < b["min_matched"]:
        failures.append(f"detections: matched fraction {d['matched_fraction']:.4f} < {b['min_matched']} at IoU >= {d['iou_thr']} "
                        f"({d['unmatched_ref']} reference and {d['unmatched_test']} test detections unmatched)")
    if d["score_delta_max"] > b["max_score_delta"]:
        failures.append(f"detections: max |score delta| {d['score_delta_max']:.3g} > {b['max_score_delta']:g}")
    ap = report.get("ap")
    if ap is not None and ap["ap_drop"] > b["max_ap_drop"]:
        failures.append(f"AP: drop {ap['ap_drop']:.4f} (ref {ap['ref']['AP']:.4f}, test {ap['test']['AP']:.4f}) > {b['max_ap_drop']}")
    return failures
