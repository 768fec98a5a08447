"""What the compare section shows, selected from a compare result: budgets, histogram bins, worst images, AP, models.

Plain data (lists, dicts, numpy arrays) for ``plots``, ``pictures`` and ``sections``; no HTML here, no
drawing. Works on files from before the fields for reports existed: what is missing comes back empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy.eval.coco_eval import STAT_NAMES
from gflv2_deploy.eval.compare import budget_checks
from gflv2_deploy.eval.histogram import LogHistogram
from gflv2_deploy.eval.matching import worst_first_key

__all__ = ["HistogramBins", "display_bins", "select_worst", "ap_rows", "model_rows", "verdict"]


@dataclass(frozen=True)
class HistogramBins:
    """Bars of a log histogram as shown: bar i counts the values in (lo[i], hi[i]].

    zeros: values exactly 0 (identical pairs), kept off the log axis. total: every value counted.
    The first bar's lo is one bin below the histogram's smallest edge when it holds values at or
    below that edge; the last bar's hi one bin above its largest edge when it holds values beyond it.
    """

    lo: np.ndarray
    hi: np.ndarray
    counts: np.ndarray
    zeros: int
    total: int

    @property
    def empty(self) -> bool:
        return self.counts.size == 0


def display_bins(hist: Mapping[str, Any], max_bins: int = 24) -> HistogramBins:
    """The non-empty range of a ``LogHistogram.to_dict()`` histogram, merged to at most ``max_bins`` bars.

    Bars run from the first to the last bin holding a non-zero value; when that span has more than
    ``max_bins`` bins, each bar merges ``ceil(span / max_bins)`` neighbouring bins (from the first one on),
    so counts are never split or lost: ``counts.sum() + zeros == total``.
    """
    h = LogHistogram.from_dict(hist)
    step = 10.0 ** (1.0 / h.bins_per_decade)
    n = len(h.counts)
    hi = h.edges[0] * step ** np.arange(n)  # bin i covers (E0 * step^(i-1), E0 * step^i]; the last one, overflow
    lo = hi / step
    counts = h.counts.copy()
    counts[0] -= h.zeros
    filled = np.flatnonzero(counts)
    if filled.size == 0:
        return HistogramBins(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), h.zeros, h.total)
    first, last = int(filled[0]), int(filled[-1])
    factor = max(1, math.ceil((last - first + 1) / max_bins))
    starts = np.arange(first, last + 1, factor)
    ends = np.minimum(starts + factor - 1, last)
    merged = np.array([counts[s : e + 1].sum() for s, e in zip(starts, ends)], np.int64)
    return HistogramBins(lo[starts], hi[ends], merged, h.zeros, h.total)


def verdict(data: Mapping[str, Any]) -> bool:
    """Whether every budget held (the result's own ``passed`` when it has one)."""
    return bool(data["passed"]) if "passed" in data else all(c.passed for c in budget_checks(data))


def select_worst(details: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The ``n`` worst images of ``detections.worst_details``: most unmatched detections, then the largest
    |delta score|, then the largest |delta box| (``eval.matching.worst_first_key``); ties keep file order."""
    return sorted(details, key=lambda r: worst_first_key(dict(r)))[: max(n, 0)]


def ap_rows(ap: Mapping[str, Any] | None) -> list[tuple[str, float, float, float]]:
    """(statistic, reference, test, test - reference) for the 12 COCO statistics; empty without AP."""
    if not ap:
        return []
    return [(name, ap["ref"][name], ap["test"][name], ap["test"][name] - ap["ref"][name]) for name in STAT_NAMES
            if name in ap["ref"] and name in ap["test"]]


def _contract_facts(side: Mapping[str, Any]) -> dict[str, str]:
    cfg = side.get("test_cfg") or {}
    contract = side.get("contract") or {}
    post = contract.get("postprocessing") or {}
    producer = contract.get("producer") or {}
    model = contract.get("model") or {}
    recipe = (contract.get("precision") or {}).get("recipe")
    images = next((t for t in contract.get("inputs", []) if t.get("name") == "images"), None)
    facts = {
        "backend": str(side.get("backend", "?")),
        "model file": str(side.get("model", "-")),
        "precision": str(side.get("precision", "fp32 (not recorded)")) + (f" ({_short(recipe)})" if recipe else ""),
        "NMS": {"none": "host (pre-NMS graph)", "onnx": "in the graph (ONNX NonMaxSuppression)",
                "trt": "in the graph (TensorRT EfficientNMS)", "plugin": "in the graph (GFLV2NMS_TRT plugin)"}.get(
                    post.get("nms"), "host (torch reference)" if not contract else str(post.get("nms"))),
        "nms_pre": f"{cfg.get('nms_pre', '?')}" + (" (selected in the graph)" if post.get("nms_pre_in_graph") else ""),
        "score / IoU threshold, max detections": f"{cfg.get('score_thr', '?')} / {cfg.get('iou_thr', '?')}, {cfg.get('max_per_img', '?')}",
        "test scale": "x".join(str(v) for v in cfg.get("scale", [])) or "?",
        "input": (f"images {images.get('dtype')} [{', '.join(str(d) for d in images.get('shape', []))}]" if images
                  else ("fixed " + "x".join(map(str, side["pad_to"])) if side.get("pad_to") else "any size (padded to 32)")),
        "outputs": ", ".join(side.get("outputs", [])) or "?",
        "exported by": (f"{producer.get('exporter')} exporter, opset {producer.get('opset')}, torch {producer.get('torch_version')}"
                        if producer else "-"),
        "checkpoint": (f"{model.get('checkpoint') or '?'} (sha256 {str(model.get('checkpoint_sha256'))[:12]})"
                       if model.get("checkpoint_sha256") else str(model.get("checkpoint") or "-")),
    }
    return facts


def _short(value: Any, limit: int = 80) -> str:
    text = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, Mapping) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_rows(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(fact, reference, test) rows: backend, file, precision, NMS form, thresholds, input, exporter, checkpoint."""
    ref, test = _contract_facts(data["ref"]), _contract_facts(data["test"])
    return [(key, ref[key], test[key]) for key in ref]
