"""The report's sections as HTML: compare, eval, bench, and the summary table over several results.

Each section function takes a ``Result`` and ``ReportOptions`` and returns its HTML and the pictures it
shows (embedded, or a note where the file could not be read). Data comes from ``compare_data`` / ``eval_data`` / ``bench_data``, plots from
``plots``, pictures from ``pictures``; every text goes through ``html.esc`` (``html.table`` and
``html.figure`` escape what they are given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gflv2_deploy.eval.coco_eval import STAT_NAMES
from gflv2_deploy.report import bench_data, compare_data, eval_data, plots
from gflv2_deploy.report.html import Cell, badge, esc, figure, fmt, num, table
from gflv2_deploy.report.pictures import Picture, compare_picture, missed_picture
from gflv2_deploy.report.results import Result

__all__ = ["ReportOptions", "compare_section", "eval_section", "bench_section", "summary_section"]


@dataclass(frozen=True)
class ReportOptions:
    """worst: pictures of a comparison (worst first); missed: pictures of an evaluation (most missed first);
    score_thr: the lowest score drawn in pictures; max_classes: classes of the confusion matrix before the
    others are summed into one row and column."""

    worst: int = 12
    missed: int = 12
    score_thr: float = 0.3
    max_classes: int = 20


def _heading(result: Result, title: str, sub: str, verdict: bool | None = None) -> str:
    mark = ""
    if verdict is not None:
        mark = f' <span class="verdict {"pass" if verdict else "fail"}">{"PASS" if verdict else "FAIL"}</span>'
    return f'<h2>{esc(title)}{mark}</h2><p class="sub">{esc(result.name)} · {esc(sub)}</p>'


def _two(left: str, right: str) -> str:
    """Two columns side by side on a wide screen, one below the other on a narrow one."""
    return f'<div class="two"><div>{left}</div><div>{right}</div></div>'


def _notes(lines: Sequence[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in lines) + "</ul>" if lines else ""


def _plot(p: plots.Plot, caption: str = "") -> str:
    return figure(p.uri, p.width, p.height, p.alt, caption)


def _pictures(pictures: Sequence[Any]) -> str:
    return '<div class="pictures">' + "".join(
        figure(p.uri, p.width, p.height, p.alt, p.caption, p.missing) for p in pictures) + "</div>"


def _legend(items: Sequence[tuple[str, str, bool]]) -> str:
    return '<p class="legend sub">' + "".join(
        f'<span class="{"dash" if dashed else ""}" style="border-color:{color}"></span>{esc(text)}' for text, color, dashed in items) + "</p>"


# --- compare -------------------------------------------------------------------------------------------------
def compare_section(result: Result, options: ReportOptions) -> tuple[str, list[Picture]]:
    """Verdict per budget, detections and tensors, Δ histograms, AP of both, the models, the worst pictures."""
    r = result.data
    d = r["detections"]
    s = r.get("settings", {})
    passed = compare_data.verdict(r)
    parts = [_heading(result, f"compare: {r['ref'].get('label')} vs {r['test'].get('label')}",
                      f"{s.get('images', d['images'])} images, batch {s.get('batch_size', '?')}, "
                      f"{r['budgets'].get('precision', '?')} budgets" + (f", data {s['data']}" if s.get("data") else ""), passed)]
    budgets = "<h3>Budgets</h3>" + table(
        ("budget", "measured", "limit", "verdict"),
        [(c.budget, Cell(c.measured, cls="wrap"), c.limit, badge(c.passed)) for c in compare_data.budget_checks(r)])
    budgets += _notes([*r.get("notes", []), *([r["tensors_note"]] if r.get("tensors_note") else [])])
    matched = "<h3>Detections, matched per image and class</h3>" + table(("", ""), [
        ("match IoU >=", num(d["iou_thr"], "g")), ("reference / test detections", Cell(f"{d['num_ref']} / {d['num_test']}", cls="num")),
        ("matched", num(d["matched"], "d")), ("matched fraction", num(d["matched_fraction"], ".4f")),
        ("unmatched reference / test", Cell(f"{d['unmatched_ref']} / {d['unmatched_test']}", cls="num")),
        ("|Δ score| max / mean", Cell(f"{d['score_delta_max']:.2e} / {d['score_delta_mean']:.2e}", cls="num")),
        ("|Δ box| max / mean (px)", Cell(f"{fmt(d.get('box_delta_max'), '.2e')} / {fmt(d.get('box_delta_mean'), '.2e')}", cls="num")),
        ("lowest IoU of a matched pair", num(d.get("min_matched_iou"), ".4f"))])
    parts.append(_two(budgets, matched))
    if "score_delta_hist" in d:
        box_atol = ((r.get("budgets") or {}).get("tolerances") or {}).get("boxes", {}).get("atol")
        parts.append(_plot(plots.delta_histograms(compare_data.display_bins(d["score_delta_hist"]),
                                                  compare_data.display_bins(d["box_delta_hist"]),
                                                  r["budgets"].get("max_score_delta"), box_atol),
                           "Δ = test − reference of each matched pair; the red line is the budget (score) or the "
                           "pre-NMS box tolerance"))
    else:
        parts.append(_notes(["no Δ histograms: this result was written before compare kept them"]))
    if r.get("tensors"):
        parts.append("<h3>Pre-NMS tensors</h3>" + table(
            ("output", "elements", "max abs", "mean abs", "p99 abs", "max rel", "p99 rel", "atol", "rtol", "verdict"),
            [(name, num(t["elements"], "d"), num(t["max_abs"], ".2e"), num(t["mean_abs"], ".2e"), num(t["p99_abs"], ".2e"),
              num(t["max_rel"], ".2e"), num(t["p99_rel"], ".2e"), num(t["atol"], "g"), num(t["rtol"], "g"), badge(t["passed"]))
             for name, t in r["tensors"].items()]))
    ap = compare_data.ap_rows(r.get("ap"))
    ap_html = "<h3>COCO AP of both</h3>" + (table(
        ("statistic", "reference", "test", "test − reference"),
        [(name, num(a), num(b), num(delta, "+.4f", "bad" if name == "AP" and -delta > r["budgets"]["max_ap_drop"] else ""))
         for name, a, b, delta in ap],
        caption=f"AP drop (reference − test) {r['ap']['ap_drop']:.4f}, budget {r['budgets']['max_ap_drop']}")
        if ap else _notes(["no AP: compared on loose images (--images), not a COCO folder (--data)"]))
    per_class = "<h3>Per class</h3>" + table(
        ("class", "reference", "test", "matched", "matched fraction"),
        [(name, num(v["ref"], "d"), num(v["test"], "d"), num(v["matched"], "d"),
          num(v["matched"] / v["ref"] if v["ref"] else None, ".4f")) for name, v in d.get("per_class", {}).items()],
        sortable=True, scroll=True)
    parts.append(_two(ap_html, per_class))
    parts.append("<h3>The two models</h3>" + table(("", "reference", "test"),
                                                   [(k, Cell(a, cls="wrap"), Cell(b, cls="wrap")) for k, a, b in compare_data.model_rows(r)]))
    worst = compare_data.select_worst(d.get("worst_details", []), options.worst)
    names = d.get("class_names") or []
    pictures = [compare_picture(w, names, options.score_thr, result.source) for w in worst]
    parts.append(f"<h3>Worst images ({len(pictures)} of {len(d.get('worst_details', []))} kept)</h3>")
    if pictures:
        parts.append(_legend([("reference", plots.REF_COLOR, False), ("test", plots.TEST_COLOR, False),
                              ("unmatched (dashed, labelled with class and score)", "#555", True)]))
        parts.append(_pictures(pictures))
    else:
        parts.append(_notes(["every image agrees exactly: nothing to show" if "worst_details" in d
                             else "no pictures: this result was written before compare kept the worst images"]))
    return "".join(parts), list(pictures)


# --- eval ----------------------------------------------------------------------------------------------------
def eval_section(result: Result, options: ReportOptions) -> tuple[str, list[Picture]]:
    """COCO statistics, the per-class AP table, PR curves, AP by size, the confusion matrix, the most-missed pictures."""
    m = result.data
    label = f"{m['backend']}:{Path(str(m['model'])).name}" if m.get("backend") and m.get("model") else result.name
    parts = [_heading(result, f"eval: {label}", f"{m.get('num_images', '?')} images, {m.get('num_detections', '?')} detections"
                      + (f", {m['data']['ann_file']}" if m.get("data") else ""))]
    names = list(m.get("stat_names") or STAT_NAMES)
    parts.append(table(names, [[num(eval_data.stat(m, n)) for n in names]], caption="COCO bbox (IoU .50:.95 unless named; "
                                                                                   "–: no ground truth of that size)"))
    rows = eval_data.class_table(m.get("per_class", []))
    classes = "<h3>AP per class (worst first; click a header to sort)</h3>" + (table(
        ("class", *eval_data.CLASS_COLUMNS, "objects", "dets"),
        [(r["class"], *(num(r[c], ".3f") for c in eval_data.CLASS_COLUMNS), num(r["gt"], "d"), num(r["detections"], "d"))
         for r in rows], sortable=True, scroll=True, cls="compact") if rows else _notes(["no per-class AP: this result was "
                                                                                          "written without details"]))
    sizes = "<h3>Object size</h3>" + _plot(plots.size_bars(eval_data.size_rows(m)),
                                           "small < 32² px ≤ medium < 96² px ≤ large (object area)")
    parts.append(_two(classes, sizes))
    series = eval_data.pr_series(m)
    if series:
        parts.append("<h3>Precision-recall</h3>" + _plot(
            plots.pr_curves(series, {r["class"]: r["AP"] for r in rows}),
            "precision at 101 recall points (area all, 100 detections); grey: the other classes"))
    confusion = m.get("confusion")
    if confusion:
        view = eval_data.confusion_view(confusion, options.max_classes)
        parts.append("<h3>Confusion matrix</h3>" + _plot(
            plots.confusion_matrix(view, confusion["iou_thr"], confusion["score_thr"]),
            "columns: true class, rows: predicted class; background row: missed objects, background column: false "
            "positives; colour: share of the column"))
    missed = eval_data.select_missed(m.get("missed_images", []), options.missed)
    names_list = m.get("class_names") or [r["class"] for r in m.get("per_class", [])]
    pictures = [missed_picture(rec, names_list, result.source) for rec in missed]
    if confusion is None and not pictures:
        parts.append(_notes(["no confusion matrix or pictures: they need a model run on a COCO folder "
                             "(eval --data with --html, or --out written by this version)"]))
    elif pictures:
        parts.append(f"<h3>Images with the most missed objects ({len(pictures)})</h3>")
        parts.append(_legend([("found", "#2ca02c", False), ("missed", "#d62728", True), ("confused (true as predicted)", "#ffa500", True),
                              ("false positive", "#bd40bd", True)]))
        parts.append(_pictures(pictures))
    return "".join(parts), list(pictures)


# --- bench ---------------------------------------------------------------------------------------------------
def bench_section(result: Result, options: ReportOptions) -> tuple[str, list[Picture]]:
    """Latency table and distributions, the stage split, throughput against batch, ratios to torch, the machine."""
    b = result.data
    s = b.get("settings", {})
    results = b["results"]
    parts = [_heading(result, f"bench: {', '.join(s.get('backends') or sorted({r['backend'] for r in results}))}",
                      f"model {s.get('config', '?')}, shapes {', '.join(s.get('shapes', []))}, batches "
                      f"{', '.join(str(x) for x in s.get('batches', []))}")]
    cases = bench_data.latency_cases(results)
    parts.append("<h3>Latency (ms per call)</h3>" + table(
        ("case", "p50", "p90", "p99", "mean", "CoV", "img/s", "e2e p50", "e2e p99", "e2e img/s"),
        [(c.label, num(c.infer["p50_ms"], ".2f"), num(c.infer["p90_ms"], ".2f"), num(c.infer["p99_ms"], ".2f"),
          num(c.infer["mean_ms"], ".2f"), num(c.infer.get("cov"), ".3f"), num(c.infer["throughput_img_s"], ".1f"),
          num((c.e2e or {}).get("p50_ms"), ".2f"), num((c.e2e or {}).get("p99_ms"), ".2f"),
          num((c.e2e or {}).get("throughput_img_s"), ".1f")) for c in cases], sortable=True,
        caption="network: the graph alone on a preprocessed batch; e2e: preprocessing + network + NMS; CoV: std / mean"))
    parts.append(_plot(plots.latency_distributions(cases), "box: quartiles and 1.5 IQR whiskers; dots: every timed call"
                       if all(c.infer_samples for c in cases) else "markers: p50, p90, p99 (this file has no raw samples)"))
    extra = []
    splits = bench_data.stage_split(results)
    if splits:
        extra.append(_plot(plots.stage_bars(splits), "means of the stages timed inside the same end-to-end calls"))
    ratios = bench_data.ratio_rows(b)
    if ratios:
        extra.append(_plot(plots.ratio_bars(ratios), "torch p50 / backend p50 on the same model, shape and batch"))
    series = bench_data.throughput_series(results)
    several_batches = any(len(points) > 1 for points in series.values())
    if several_batches:
        extra.append(_plot(plots.throughput_lines(series), "batch x 1000 / p50"))
    parts.append('<h3>Where the time goes, speed-ups, throughput</h3><div class="plots">' + "".join(extra) + "</div>")
    if not several_batches:
        parts.append(_notes(["throughput against batch size: one batch size was timed (bench --batch 1 --batch 8 ... times several)"]))
    parts.append("<h3>Machine</h3>" + table(("", ""), [(k, Cell(v, cls="wrap")) for k, v in bench_data.machine_rows(b)]))
    notes = [*b.get("notes", []), *(f"{r['backend']} {r['shape']} b{r['batch']}: {n}" for r in results for n in r.get("consistency", []))]
    parts.append(_notes(notes))
    return "".join(parts), []


# --- summary -------------------------------------------------------------------------------------------------
def summary_section(results: Sequence[Result]) -> str:
    """One table per kind present, one row per result, each linking to its section."""
    parts = ["<h2>Summary</h2>"]
    compares = [r for r in results if r.kind == "compare"]
    if compares:
        parts.append(table(
            ("result", "reference", "test", "budgets", "matched", "max |Δ score|", "AP ref", "AP test", "AP drop", "verdict"),
            [(Cell(r.name, href=f"#{r.anchor}"), r.data["ref"].get("label", "?"), r.data["test"].get("label", "?"),
              r.data["budgets"].get("precision", "?"), num(r.data["detections"]["matched_fraction"]),
              num(r.data["detections"]["score_delta_max"], ".2e"), num((r.data.get("ap") or {}).get("ref", {}).get("AP")),
              num((r.data.get("ap") or {}).get("test", {}).get("AP")), num((r.data.get("ap") or {}).get("ap_drop"), "+.4f"),
              badge(compare_data.verdict(r.data))) for r in compares], sortable=True, caption="comparisons"))
    evals = [r for r in results if r.kind == "eval"]
    if evals:
        parts.append(table(("result", "images", "AP", "AP50", "AP75", "APs", "APm", "APl"),
                           [(Cell(r.name, href=f"#{r.anchor}"), num(r.data.get("num_images"), "d"),
                             *(num(eval_data.stat(r.data, n)) for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
                            for r in evals], sortable=True, caption="evaluations"))
    benches = [r for r in results if r.kind == "bench"]
    if benches:
        rows = []
        for r in benches:
            best = max(r.data["results"], key=lambda x: x["infer"]["throughput_img_s"])
            rows.append((Cell(r.name, href=f"#{r.anchor}"), num(len(r.data["results"]), "d"),
                         ", ".join(sorted({x["backend"] for x in r.data["results"]})),
                         bench_data.case_label(best), num(best["infer"]["throughput_img_s"], ".1f"),
                         str(r.data["machine"].get("processor", "?"))))
        parts.append(table(("result", "cases", "backends", "fastest case", "img/s", "CPU"), rows, sortable=True,
                           caption="benchmarks"))
    return "".join(parts)
