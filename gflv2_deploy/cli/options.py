"""What every command module shares: option types declared once, option-text parsers, and safe printing.

Option types are ``Annotated`` aliases, so ``--config`` or ``--allow-unsafe-pickle`` reads the same on
every command. Printing goes through ``say`` / ``say_error`` / ``cell``, which never interpret user text
(paths, file names, labels) as Rich markup: ``x[/bad]/img.jpg`` or ``[red]`` in a path print as typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gflv2_deploy import spec as io_spec
from gflv2_deploy.atomic import check_writable
from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.factory import backends_help

console = Console()
err_console = Console(stderr=True)
PIPED_WIDTH = 160  # columns of tables and --help written to a file or a pipe (logs, CI), instead of Rich's 80

# --- option types --------------------------------------------------------------------------------------------
ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="Model configuration name (gflv2-deploy configs lists them) or TOML path; needed for official checkpoints.")]
DeviceOpt = Annotated[str, typer.Option(help="torch device: cpu or cuda[:N].")]
UnsafeOpt = Annotated[bool, typer.Option("--allow-unsafe-pickle", help="Allow checkpoints that need arbitrary unpickling (only for files you trust).")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Intra-op threads of torch, onnxruntime and openvino (default: each library's choice).")]
BackendOpt = Annotated[Optional[str], typer.Option("--backend", "-b", help=f"{backends_help()}; default: what the file is.")]
Tf32Opt = Annotated[bool, typer.Option("--tf32", help="torch on CUDA: let convolutions and matmuls use TF32 (faster, about 1e-3 "
                                        "relative error; recorded in the outputs). Default: true FP32, the reference.")]
SplitOpt = Annotated[Optional[str], typer.Option(help="Split name when the folder has several.")]
LimitOpt = Annotated[Optional[int], typer.Option(help="Only the first N images (N >= 1).")]
BatchSizeOpt = Annotated[int, typer.Option(help="Images per forward pass (>= 1).")]
OutFileOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")]
HtmlOpt = Annotated[Optional[Path], typer.Option("--html", help="Also write the result as a self-contained HTML report "
                                                 "(plots and pictures embedded; needs matplotlib).")]


# --- printing ------------------------------------------------------------------------------------------------
def say(text: str) -> None:
    """One line of plain text on stdout: no markup, no highlighting, no wrapping inside words."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def say_error(prefix: str, text: str) -> None:
    """``prefix`` in bold red, then ``text`` verbatim, on stderr (``error:``, ``warning:``, ``budget exceeded:``)."""
    err_console.print(f"[bold red]{prefix}[/] {escape(text)}" if text else f"[bold red]{prefix}[/]", highlight=False, soft_wrap=True)


def cell(text: object) -> Text:
    """A table cell that shows ``text`` as typed (a file name with brackets stays intact)."""
    return Text(str(text))


def print_wide(renderable: object) -> None:
    """Tables at full width: the terminal's, or ``PIPED_WIDTH`` columns when the output is a file or a pipe (logs, CI)."""
    (console if console.is_terminal else Console(width=PIPED_WIDTH)).print(renderable)


def metrics_table(rows: dict[str, dict], title: str = "COCO bbox") -> Table:
    """One row per backend/model: AP, AP50, AP75, APs, APm, APl."""
    table = Table(title=cell(title))
    table.add_column("model")
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        table.add_column(name, justify="right")
    for label, m in rows.items():
        table.add_row(cell(label), *(f"{v:.4f}" for v in m["stats"][:6]))
    return table


# --- option text ---------------------------------------------------------------------------------------------
def parse_hw(text: str) -> tuple[int, int]:
    """``"800x1344"`` -> (800, 1344); UserError unless ``spec.input_hw_problem`` accepts it (multiples of 32, bounded)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"shape must look like 800x1344 (height x width), got '{text}'") from None
    problem = io_spec.input_hw_problem(h, w)
    if problem:
        raise UserError(f"shape {text}: {problem}")
    return h, w


def parse_scale(text: str) -> tuple[int, int]:
    """``"800x480"`` -> (long, short) edges of the test scale; UserError unless ``spec.scale_problem`` accepts it
    (positive, and within the network input size rule once padded)."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"scale must look like 800x480 (long x short edge), got '{text}'") from None
    problem = io_spec.scale_problem(max(a, b), min(a, b))
    if problem:
        raise UserError(f"--scale {text}: {problem}")
    return max(a, b), min(a, b)


def check_count(option: str, value: int | None, minimum: int = 1) -> None:
    """UserError unless the count option ``option`` (e.g. ``--limit``) is None or at least ``minimum``."""
    if value is not None and value < minimum:
        raise UserError(f"{option} must be at least {minimum}, got {value}")


# --- the HTML report of one result (--html on compare, eval, bench) ----------------------------------------
def check_html(html: Path | None) -> None:
    """Before a command's long work: ``html`` can be written and the report can be drawn (else UserError)."""
    if html is None:
        return
    from gflv2_deploy.report.plots import require_matplotlib

    require_matplotlib()
    check_writable(html)


def write_html(html: Path | None, result: Mapping[str, Any], name: str, source: Path | None = None) -> None:
    """Write the report page of one result to ``html`` (nothing when None) and say where it went."""
    if html is None:
        return
    from gflv2_deploy.report.build import write_result_report

    written = write_result_report(result, name, html, source)
    say(f"HTML report written to {written.path} ({written.bytes / 1e6:.1f} MB, {written.pictures} pictures)")
    warn_missing(written.missing)


def warn_missing(missing: list[str]) -> None:
    """One ``warning:`` line when pictures of a report could not be read (the page shows a note in their place)."""
    if missing:
        say_error("warning:", f"{len(missing)} picture(s) left out of the report, e.g. {missing[0]}")
def check_range(option: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    """UserError unless the option ``option`` is None or within [low, high] (``low_open``: (low, high]); NaN never is."""
    if value is None:
        return
    inside = (low < value if low_open else low <= value) and value <= high
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise UserError(f"{option} must be in {interval}, got {value:g}")
