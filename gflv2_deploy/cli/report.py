"""``gflv2-deploy report``: one self-contained HTML page from compare, eval and bench result files.

The same page for one result comes from ``--html`` on compare, eval and bench (``options.check_html``,
``options.write_html``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import check_count, say, warn_missing

def report(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files, as written by `gflv2-deploy compare --report`, "
                                                        "`gflv2-deploy eval --out` and `gflv2-deploy bench --out`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")],
    worst: Annotated[int, typer.Option(help="Pictures per comparison, worst first (a result keeps up to 50).")] = 12,
    missed: Annotated[int, typer.Option(help="Pictures per evaluation, most missed objects first (up to 50 kept).")] = 12,
    score_thr: Annotated[float, typer.Option(help="Lowest score of a detection drawn in the pictures.")] = 0.3,
    title: Annotated[Optional[str], typer.Option(help="Page title (default: the kinds of results in it).")] = None,
) -> None:
    """One self-contained HTML page (no network needed) from compare, eval and bench results; several give a summary on top."""
    from gflv2_deploy.report.build import ReportOptions, write_report
    from gflv2_deploy.report.plots import require_matplotlib
    from gflv2_deploy.report.results import load_result

    check_count("--worst", worst, minimum=0)
    check_count("--missed", missed, minimum=0)
    require_matplotlib()
    check_writable(out)
    loaded = [load_result(path, i) for i, path in enumerate(results)]  # every file checked before drawing anything
    written = write_report(loaded, out, ReportOptions(worst=worst, missed=missed, score_thr=score_thr), title)
    say(f"report written to {written.path}: {written.bytes / 1e6:.1f} MB, {written.pictures} pictures, "
        f"{len(loaded)} result(s), {written.seconds:.1f} s")
    warn_missing(written.missing)


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(report)
