"""One self-contained HTML page from compare, eval and bench results (``gflv2-deploy report``, ``--html``).

The page: a summary table on top when there are several results, then one section per result in the
order given. It opens offline: no file or address outside it is referenced (``html.CSP``). Its size
is dominated by the pictures (``pictures.py``: at most ``MAX_PICTURE_BYTES`` each); plots are SVG of
20-180 KB each. Budget for a page with ``n`` pictures: ``page_size_budget(n)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from gflv2_deploy.atomic import write_text_atomic
from gflv2_deploy.report.html import esc, page
from gflv2_deploy.report.pictures import MAX_PICTURE_BYTES, Picture
from gflv2_deploy.report.results import Result, load_result, result_from_data
from gflv2_deploy.report.sections import ReportOptions, bench_section, compare_section, eval_section, summary_section

__all__ = ["ReportOptions", "WrittenReport", "PAGE_BASE_BYTES", "page_size_budget", "render_report", "write_report",
           "write_result_report"]

PAGE_BASE_BYTES = 1_500_000  # style, script, tables and the plots of a few sections (each plot SVG < 200 KB)
_SECTIONS = {"compare": compare_section, "eval": eval_section, "bench": bench_section}


def page_size_budget(pictures: int) -> int:
    """Bytes a page with ``pictures`` pictures stays under: the base plus ``MAX_PICTURE_BYTES`` per picture."""
    return PAGE_BASE_BYTES + pictures * MAX_PICTURE_BYTES


@dataclass(frozen=True)
class WrittenReport:
    """What ``write_report`` wrote: the file, its size in bytes, the pictures embedded, the pictures whose
    files could not be read (``missing``: path and reason), and the seconds it took."""

    path: Path
    bytes: int
    pictures: int
    missing: list[str]
    seconds: float


def render_report(results: Sequence[Result], options: ReportOptions | None = None,
                  title: str | None = None) -> tuple[str, list[Picture]]:
    """(the HTML document, the pictures it shows) for ``results``, each section in the given order."""
    from gflv2_deploy import __version__
    from gflv2_deploy.report.plots import require_matplotlib

    require_matplotlib()
    options = options or ReportOptions()
    body, nav, pictures = [], [], []
    if len(results) > 1:
        body.append(f'<section id="summary">{summary_section(results)}</section>')
        nav.append(("summary", "summary"))
    for result in results:
        html, shown = _SECTIONS[result.kind](result, options)
        pictures += shown
        body.append(f'<section class="result" id="{esc(result.anchor)}">{html}</section>')
        nav.append((result.anchor, f"{result.kind} {result.name}"))
    kinds = sorted({r.kind for r in results}, key=["compare", "eval", "bench"].index)
    title = title or f"gflv2-deploy {' / '.join(kinds)} report"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = (f"written by gflv2-deploy {esc(__version__)} on {esc(stamp)} from "
              + esc(", ".join(str(r.source or r.name) for r in results)))
    return page(title, nav, "".join(body), footer), pictures


def write_report(sources: Sequence[str | os.PathLike[str] | Result], out: str | os.PathLike[str],
                 options: ReportOptions | None = None, title: str | None = None) -> WrittenReport:
    """Read the result files (or take ``Result`` objects), render the page and write it to ``out`` atomically.

    Every file is read and checked before anything is drawn, and nothing is written on a failure.
    """
    started = time.perf_counter()
    results = [s if isinstance(s, Result) else load_result(s, i) for i, s in enumerate(sources)]
    if not results:
        raise ValueError("a report needs at least one result")
    document, pictures = render_report(results, options, title)
    data = document.encode("utf-8")
    write_text_atomic(out, document)
    return WrittenReport(Path(out), len(data), sum(p.uri is not None for p in pictures),
                         [p.missing for p in pictures if p.missing], time.perf_counter() - started)


def write_result_report(data: Mapping[str, Any], name: str, out: str | os.PathLike[str],
                        source: str | os.PathLike[str] | None = None, options: ReportOptions | None = None) -> WrittenReport:
    """The page of one result held in memory (``--html`` of compare, eval and bench); ``source``: the JSON file
    written beside it, if any (relative picture paths are also looked up from its folder)."""
    return write_report([result_from_data(data, name, 0, Path(source) if source is not None else None)], out, options)
