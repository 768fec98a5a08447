"""The report's plots: matplotlib figures rendered to SVG and embedded as ``data:`` image URIs.

matplotlib is imported inside the functions (``require_matplotlib`` gives the one-line install hint): the
package imports without it. Figures are bare ``matplotlib.figure.Figure`` objects (no pyplot, no global
backend change). SVG keeps lines and text sharp at any zoom; each plot is an ``<img>`` of its own rather
than inline ``<svg>``, so the ids matplotlib writes cannot collide between plots, and a browser test can
check every plot like any picture (``naturalWidth``). Text is drawn as paths (each glyph defined once per
plot), so a plot looks the same on a machine without matplotlib's font; dense line bundles are rasterized
inside the SVG; the date is left out and ids are salted, so the same data gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy.errors import UserError
from gflv2_deploy.report.bench_data import LatencyCase, StageSplit
from gflv2_deploy.report.compare_data import HistogramBins
from gflv2_deploy.report.eval_data import ConfusionView, PrSeries

__all__ = ["REF_COLOR", "TEST_COLOR", "Plot", "require_matplotlib", "delta_histograms", "pr_curves", "size_bars",
           "confusion_matrix", "latency_distributions", "stage_bars", "throughput_lines", "ratio_bars"]

REF_COLOR = "#1f6fb4"  # the reference side, in plots and pictures
TEST_COLOR = "#f07f0e"  # the side under test
_STAGE_COLORS = ("#8fb8de", "#1f6fb4", "#f0a35e")  # preprocess, network, postprocess
_STYLE = {"svg.fonttype": "path", "svg.hashsalt": "gflv2-deploy-report", "font.size": 9,
          "font.family": "sans-serif", "axes.spines.top": False,
          "axes.spines.right": False, "axes.titlesize": 10, "legend.fontsize": 8, "legend.frameon": False}


@dataclass(frozen=True)
class Plot:
    """A rendered plot: ``data:image/svg+xml`` URI, its size in CSS pixels and a text alternative."""

    uri: str
    width: int
    height: int
    alt: str


def require_matplotlib() -> None:
    """UserError (one line, naming the extra) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("the HTML report draws its plots with matplotlib, which is not installed: "
                        "pip install 'gflv2-deploy[report]'") from None


def _figure(width_in: float, height_in: float, cols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    return fig, list(axes)


def _render(fig: Any, alt: str) -> Plot:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": _STYLE["svg.hashsalt"]}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, dpi=144)  # dpi: rasterized parts only
    width, height = (int(round(v * 96)) for v in fig.get_size_inches())  # CSS pixels at 96 per inch
    return Plot("data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), width, height, alt)


def _styled() -> Any:
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


# --- compare -------------------------------------------------------------------------------------------------
def delta_histograms(score: HistogramBins, box: HistogramBins, score_limit: float | None, box_limit: float | None) -> Plot:
    """|delta score| and |delta box| (px) of matched pairs, on log axes, with the budget / tolerance lines."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    with _styled():
        fig, axes = _figure(9.6, 2.9, cols=2)
        for ax, bins, limit, what, unit, line in (
                (axes[0], score, score_limit, "|Δ score|", "", "budget"),
                (axes[1], box, box_limit, "|Δ box|", " (px, largest corner)", "pre-NMS tolerance")):
            if bins.empty:
                _no_data(ax, f"all {bins.zeros} matched pairs identical" if bins.zeros else "no matched pairs")
                ax.set_title(f"{what} of matched pairs")
                continue
            ax.bar(bins.lo, bins.counts, width=bins.hi - bins.lo, align="edge", color=TEST_COLOR, edgecolor="white", linewidth=0.5)
            ax.set_xscale("log")
            if limit:
                ax.axvline(limit, color="#c0392b", linestyle="--", linewidth=1, label=f"{line} {limit:g}")
                ax.legend(loc="upper right")
            low, high = ax.get_xlim()
            # a narrow range gets 1-2-5 ticks, a wide one powers of ten only; labels as plain numbers
            subs = (1.0, 2.0, 5.0) if np.log10(high / low) <= 2.5 else (1.0,)
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(what + unit)
            ax.set_ylabel("matched pairs")
            ax.set_title(f"{what} of matched pairs" + (f" ({bins.zeros} identical not shown)" if bins.zeros else ""))
        return _render(fig, "histograms of the score and box differences of matched detections")


# --- eval ----------------------------------------------------------------------------------------------------
def pr_curves(series: Sequence[PrSeries], ap_by_class: Mapping[str, float | None]) -> Plot:
    """Precision against recall per IoU: every class (grey), the worst classes (coloured), the class mean (black)."""
    with _styled():
        fig, axes = _figure(8.4, 3.4, cols=max(1, len(series)))
        palette = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
        for ax, s in zip(axes, series):
            for k, curve in enumerate(s.per_class):
                if (curve >= 0).any() and k not in s.highlight:
                    # rasterized: 80 classes of vector paths would weigh ~400 KB; as pixels ~30 KB
                    ax.plot(s.recall, np.clip(curve, 0, None), color="#bbbbbb", linewidth=0.6, rasterized=True)
            for color, k in zip(palette, s.highlight):
                ap = ap_by_class.get(s.classes[k])
                ax.plot(s.recall, np.clip(s.per_class[k], 0, None), color=color, linewidth=1.2,
                        label=f"{s.classes[k]}" + (f" (AP {ap:.3f})" if ap is not None else ""))
            ax.plot(s.recall, np.clip(s.mean, 0, None), color="black", linewidth=2.0, label="mean of classes")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            ax.set_title(f"IoU {s.iou:g}")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower left")
        return _render(fig, "precision-recall curves at IoU " + " and ".join(f"{s.iou:g}" for s in series))


def size_bars(rows: Sequence[tuple[str, float | None, float | None]]) -> Plot:
    """AP and AR@100 by object size (small, medium, large); an undefined value is marked n/a."""
    with _styled():
        fig, (ax,) = _figure(4.2, 2.8)
        x = np.arange(len(rows))
        for offset, index, name, color in ((-0.2, 1, "AP", REF_COLOR), (0.2, 2, "AR@100", "#8fb8de")):
            values = [r[index] for r in rows]
            ax.bar(x + offset, [v or 0.0 for v in values], width=0.38, color=color, label=name)
            for xi, v in zip(x + offset, values):
                ax.text(xi, (v or 0.0) + 0.01, "n/a" if v is None else f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [r[0] for r in rows])
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("COCO bbox")
        ax.legend(loc="upper left", ncols=2)
        ax.set_title("AP and AR by object size")
        return _render(fig, "AP and AR by object size")


def confusion_matrix(view: ConfusionView, iou: float, score_thr: float) -> Plot:
    """The confusion matrix coloured by column fraction, with the counts written in (rows predicted, columns true)."""
    n = len(view.labels)
    side = min(8.0, max(4.6, 0.34 * n + 1.4))
    with _styled():
        fig, (ax,) = _figure(side + 0.8, side)
        image = ax.imshow(view.fractions, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_xticks(range(n), view.labels, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), view.labels)
        ax.set_xlabel("true class")
        ax.set_ylabel("predicted class")
        ax.set_title(f"confusion at IoU {iou:g}, score >= {score_thr:g}")
        ax.spines[:].set_visible(False)
        if n <= 25:
            for i in range(n):
                for j in range(n):
                    if view.counts[i, j]:
                        dark = view.fractions[i, j] > 0.55
                        ax.text(j, i, str(view.counts[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if dark else "black")
        fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class's objects")
        return _render(fig, "confusion matrix of classes")


# --- bench ---------------------------------------------------------------------------------------------------
def latency_distributions(cases: Sequence[LatencyCase]) -> Plot:
    """Per case, the distribution of the network and end-to-end latencies: box plot with every sample as a dot
    (p50 / p90 / p99 marks where a file has no samples)."""
    rows = len(cases)
    with _styled():
        fig, axes = _figure(8.4, min(9.0, 1.0 + 0.42 * rows), cols=2)
        rng = np.random.default_rng(0)  # jitter of the dots only
        backends = list(dict.fromkeys(c.backend for c in cases))
        palette = dict(zip(backends, (REF_COLOR, TEST_COLOR, "#2ca02c", "#d62728", "#9467bd", "#8c564b") * 4))
        for ax, what in ((axes[0], "network"), (axes[1], "end to end")):
            for y, case in enumerate(cases):
                samples = case.infer_samples if what == "network" else case.e2e_samples
                stats = case.infer if what == "network" else case.e2e
                if samples:
                    ax.boxplot([samples], positions=[y], orientation="horizontal", widths=0.6, showfliers=False,
                               medianprops={"color": "black"}, boxprops={"color": "#555"}, whiskerprops={"color": "#555"},
                               capprops={"color": "#555"})
                    ax.scatter(samples, y + rng.uniform(-0.2, 0.2, len(samples)), s=7, alpha=0.7, color=palette[case.backend],
                               zorder=3)
                elif stats:
                    for key, marker in (("p50_ms", "o"), ("p90_ms", "s"), ("p99_ms", "^")):
                        ax.scatter([stats[key]], [y], marker=marker, color=palette[case.backend], zorder=3)
            ax.set_yticks(range(rows), [c.label for c in cases] if what == "network" else [""] * rows)
            ax.set_ylim(rows - 0.5, -0.5)
            ax.set_xlabel("ms per call")
            ax.set_xlim(left=0)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(f"{what} latency")
        return _render(fig, "latency distributions per backend, shape and batch")


def stage_bars(splits: Sequence[StageSplit]) -> Plot:
    """Stacked horizontal bars of the mean preprocess / network / postprocess time of each case."""
    with _styled():
        fig, (ax,) = _figure(6.4, min(8.0, 1.4 + 0.4 * len(splits)))
        y = np.arange(len(splits))
        left = np.zeros(len(splits))
        for stage, color in zip(("preprocess", "network", "postprocess"), _STAGE_COLORS):
            values = np.array([getattr(s, stage) for s in splits])
            ax.barh(y, values, left=left, color=color, label=stage, height=0.6)
            left += values
        for yi, s in zip(y, splits):
            ax.text(s.preprocess + s.network + s.postprocess, yi, f" {s.e2e_mean:.1f} ms", va="center", fontsize=8)
        ax.set_yticks(y, [s.label for s in splits])
        ax.set_ylim(len(splits) - 0.5, -0.5)
        ax.set_title("where end-to-end time goes", loc="left")
        ax.set_xlabel("mean ms per call (end to end)")
        fig.legend(loc="outside upper right", ncols=3)
        ax.margins(x=0.12)
        return _render(fig, "stacked bars of preprocessing, network and postprocessing time")


def throughput_lines(series: Mapping[str, Sequence[tuple[int, float, float | None]]]) -> Plot:
    """Images per second against batch size per backend: network (solid) and end to end (dashed)."""
    with _styled():
        fig, (ax,) = _figure(7.2, 3.0)
        colors = ("#1f6fb4", "#f07f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
        for color, (name, points) in zip(colors * 4, series.items()):
            batches = [p[0] for p in points]
            ax.plot(batches, [p[1] for p in points], marker="o", color=color, label=f"{name} network")
            e2e = [(b, p[2]) for b, p in zip(batches, points) if p[2] is not None]
            if e2e:
                ax.plot([b for b, _ in e2e], [v for _, v in e2e], marker="s", linestyle="--", color=color, label=f"{name} e2e")
        all_batches = sorted({p[0] for points in series.values() for p in points})
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_batches, [str(b) for b in all_batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s (at p50)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        fig.legend(loc="outside right upper")
        ax.set_title("throughput against batch size")
        return _render(fig, "throughput against batch size")


def ratio_bars(rows: Sequence[Mapping[str, Any]], reference: str = "torch") -> Plot:
    """Speed-up of each case over the reference backend (p50 ratio), network and end to end; 1 = as fast."""
    with _styled():
        fig, (ax,) = _figure(5.4, min(8.0, 1.4 + 0.45 * len(rows)))
        y = np.arange(len(rows))
        ax.barh(y - 0.18, [r["infer"] for r in rows], height=0.34, color=REF_COLOR, label="network")
        ax.barh(y + 0.18, [r["e2e"] or 0.0 for r in rows], height=0.34, color=_STAGE_COLORS[2], label="end to end")
        for yi, r in zip(y, rows):
            ax.text(r["infer"], yi - 0.18, f" {r['infer']:.2f}x", va="center", fontsize=8)
            if r["e2e"]:
                ax.text(r["e2e"], yi + 0.18, f" {r['e2e']:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(y, [r["label"] for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(f"speed-up over {reference} (p50 ratio, > 1 is faster)")
        ax.margins(x=0.15)
        fig.legend(loc="outside upper right", ncols=2)
        return _render(fig, f"speed-up over {reference}")
