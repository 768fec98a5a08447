"""``gflv2-deploy demo``: the end-to-end demo on generated data (the README's first command)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import ThreadsOpt, cell, print_wide, say, say_error


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (data, checkpoint, ONNX, reports, picture).")] = Path("out/demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes everywhere (a pipeline check, about a minute).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Use this trained gflv2_tiny checkpoint instead of training one.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    threads: ThreadsOpt = None,
) -> None:
    """End to end on generated data: synthesise, train gflv2_tiny briefly, export, compare torch vs onnxruntime, evaluate,
    benchmark, draw, and write an HTML report."""
    check_writable(out, folder=True)
    from gflv2_deploy.demo import run_demo

    summary = run_demo(out, quick=quick, checkpoint=checkpoint, seed=seed, threads=threads, say=say)
    table = Table(title=f"gflv2_tiny on synthetic val ({summary['seconds']['total']:.0f} s)")
    for col in ("backend", "variant", "AP", "AP50", "matched", "max |d score|", "scores err", "boxes err", "parity",
                "p50 ms", "e2e p50 ms", "x torch"):
        table.add_column(col, justify="right")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in summary["rows"]:
        parity = "-" if r["passed"] is None else ("pass" if r["passed"] else "[red]FAIL[/]")
        table.add_row(cell(r["backend"]), cell(r["variant"]), f"{r['AP']:.4f}", f"{r['AP50']:.4f}", fmt(r["matched"], ".4f"),
                      fmt(r["score_delta_max"], ".2g"), fmt(r["scores_max_abs"], ".2g"), fmt(r["boxes_max_abs"], ".2g"), parity,
                      fmt(r["infer_p50_ms"], ".1f"), fmt(r["e2e_p50_ms"], ".1f"), fmt(r["speedup"], ".2f"))
    print_wide(table)
    for note in summary["notes"]:
        say(f"note: {note}")
    say(f"picture: {summary['picture']}; JSON results and summary.json in {out}")
    say(f"report: {summary['report']} ({summary['report_bytes'] / 1e6:.1f} MB; open it in a browser)")
    if not summary["passed"]:
        for line in summary["failures"]:
            say_error("budget exceeded:", line)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)
