"""``gflv2-deploy compare``: parity of two backends on the same images, the CI gate (exit 1 when a budget fails).

A gate that compared nothing fails too: the reference must produce at least ``--min-ref-dets`` detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import (BatchSizeOpt, ConfigOpt, DeviceOpt, HtmlOpt, LimitOpt, SplitOpt, Tf32Opt, ThreadsOpt,
                                      UnsafeOpt, cell, check_count, check_html, check_range, console, metrics_table,
                                      parse_scale, print_wide, say, say_error, write_html)
from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.factory import backends_help


def compare(
    ref: Annotated[str, typer.Option(help=f"Reference BACKEND:PATH, e.g. torch:run/latest.pth; backends: {backends_help()}.")],
    test: Annotated[str, typer.Option(help="Model under test BACKEND:PATH, e.g. onnxruntime:run/latest.e2e.onnx.")],
    data: Annotated[Optional[Path], typer.Option(help="COCO-format folder (adds AP of both and the AP drop).")] = None,
    split: SplitOpt = None,
    images: Annotated[Optional[list[Path]], typer.Option(help="Image files or folders instead of --data (no AP); repeatable.")] = None,
    config: ConfigOpt = None,
    limit: LimitOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch (both backends get the same padded batch).")] = 1,
    scale: Annotated[Optional[str], typer.Option(help="Override the test scale of both, LONGxSHORT (e.g. 800x480).")] = None,
    precision: Annotated[str, typer.Option(help="Budget row of eval/compare.py: fp32, fp16 or int8.")] = "fp32",
    iou: Annotated[Optional[float], typer.Option(help="IoU for a detection match (default: the precision's, 0.99 for fp32).")] = None,
    min_matched: Annotated[Optional[float], typer.Option(help="Budget: matched fraction of reference detections (fp32: 0.995).")] = None,
    max_score_delta: Annotated[Optional[float], typer.Option(help="Budget: max |score delta| of a matched pair (fp32: 1e-4).")] = None,
    max_ap_drop: Annotated[Optional[float], typer.Option(help="Budget: AP_ref - AP_test (fp32: 0.001).")] = None,
    min_ref_dets: Annotated[Optional[int], typer.Option(help="Fail unless the reference makes at least this many detections "
                                                        "in all (default 1: a comparison of nothing is no pass).")] = None,
    no_align: Annotated[bool, typer.Option("--no-align", help="Keep each model's own post-processing settings (nms_pre, thresholds).")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write the JSON report here.")] = None,
    html: HtmlOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = "cpu",
    tf32: Tf32Opt = False,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Parity of two backends on the same images: pre-NMS tensor errors, matched detections, AP; exit 1 when a budget fails."""
    from gflv2_deploy.eval.compare import default_budgets
    from gflv2_deploy.runtime.evaluate import compare_backends
    from gflv2_deploy.runtime.factory import make_detector, parse_model_spec

    check_count("--batch-size", batch_size)
    check_count("--limit", limit)
    check_count("--min-ref-dets", min_ref_dets, minimum=0)
    check_range("--iou", iou, 0.0, 1.0, low_open=True)
    check_range("--min-matched", min_matched, 0.0, 1.0)
    check_range("--max-score-delta", max_score_delta, 0.0, 1.0)
    check_range("--max-ap-drop", max_ap_drop, -1.0, 1.0)
    test_scale = parse_scale(scale) if scale else None
    if report is not None:
        check_writable(report)
    check_html(html)
    try:
        budgets = default_budgets(precision, iou_thr=iou, min_matched=min_matched, max_score_delta=max_score_delta,
                                  max_ap_drop=max_ap_drop, min_ref_dets=min_ref_dets)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    (rb, rp), (tb, tp) = parse_model_spec(ref), parse_model_spec(test)
    if tf32 and "torch" not in (rb, tb):
        raise UserError("--tf32 sets the math of a torch side on CUDA: neither --ref nor --test is torch")
    ref_det = make_detector(rb, rp, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle, expose_pre_nms=True,
                            tf32=tf32 and rb == "torch")
    test_det = make_detector(tb, tp, config, device, threads, allow_unsafe_pickle=allow_unsafe_pickle, expose_pre_nms=True,
                             tf32=tf32 and tb == "torch")
    result = compare_backends(ref_det, test_det, data_dir=data, split=split, image_paths=images, budgets=budgets,
                              batch_size=batch_size, limit=limit, scale=test_scale,
                              labels=(f"{rb}:{rp.name}", f"{tb}:{tp.name}"), align=not no_align)
    if report is not None:
        from gflv2_deploy.atomic import write_json_atomic

        write_json_atomic(report, result)
    _print_comparison(result)
    if report is not None:
        say(f"report written to {report}")
    write_html(html, result, report.name if report is not None else "compare", report)
    if not result["passed"]:
        for line in result["failures"]:
            say_error("budget exceeded:", line)
        raise typer.Exit(1)
    console.print("[bold green]parity: all budgets hold[/]")


def _print_comparison(r: dict) -> None:
    say(f"reference {r['ref']['label']}  vs  test {r['test']['label']}  ({r['settings']['images']} images, "
        f"batch {r['settings']['batch_size']}, budgets {r['budgets']['precision']})")
    for note in r["notes"]:
        say(f"  note: {note}")
    if r["tensors"]:
        table = Table(title="pre-NMS tensors: |test - ref| and rel = |test - ref| / max(|ref|, atol)")
        for col in ("output", "max abs", "mean abs", "p99 abs", "max rel", "p99 rel", "atol", "rtol", "pass"):
            table.add_column(col, justify="right")
        for name, t in r["tensors"].items():
            table.add_row(cell(name), *(f"{t[k]:.2e}" for k in ("max_abs", "mean_abs", "p99_abs", "max_rel", "p99_rel")),
                          f"{t['atol']:g}", f"{t['rtol']:g}", "yes" if t["passed"] else "[red]NO[/]")
        print_wide(table)
    else:
        say(f"pre-NMS tensors: not compared ({r['tensors_note']})")
    d = r["detections"]
    table = Table(title=f"detections matched per image and class, IoU >= {d['iou_thr']}")
    for col in ("ref", "test", "matched", "matched frac", "unmatched ref", "unmatched test", "max |d score|", "mean |d score|",
                "max |d box| px"):
        table.add_column(col, justify="right")
    table.add_row(str(d["num_ref"]), str(d["num_test"]), str(d["matched"]), f"{d['matched_fraction']:.4f}", str(d["unmatched_ref"]),
                  str(d["unmatched_test"]), f"{d['score_delta_max']:.2e}", f"{d['score_delta_mean']:.2e}",
                  f"{d['box_delta_max']:.2e}")
    print_wide(table)
    if r["ap"]:
        print_wide(metrics_table({r["ref"]["label"]: {"stats": list(r["ap"]["ref"].values())},
                                  r["test"]["label"]: {"stats": list(r["ap"]["test"].values())}}))
        say(f"AP drop (ref - test): {r['ap']['ap_drop']:.5f}")


def register(app: typer.Typer) -> None:
    """Add ``compare`` to ``app``."""
    app.command("compare")(compare)
