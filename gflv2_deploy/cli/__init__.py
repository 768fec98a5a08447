"""The ``gflv2-deploy`` command line: thin typer commands, each parsing options and calling one library function.

One module per command group, each adding its commands with ``register(app)``:
``reference`` (configs, predict, eval), ``train`` (train, data synth), ``export``, ``engine`` (quantize,
build), ``parity`` (compare), ``bench``, ``infer`` (batch detection on Ray Data), ``report``, ``demo``, ``triton``; shared option types and safe printing in ``options``.
Heavy modules (torch, onnx) are imported inside commands so ``--help`` and ``--version`` stay fast.
User mistakes (``UserError``) print one ``error:`` line and exit with status 2; no traceback.
"""

from __future__ import annotations

import difflib
import signal
import sys
import warnings
from typing import Annotated, Any

import typer

from gflv2_deploy import __version__
from gflv2_deploy.cli import bench, demo, engine, export, infer, parity, reference, report, train, triton
from gflv2_deploy.cli.options import say, say_error
from gflv2_deploy.errors import UserError

__all__ = ["app", "main"]

app = typer.Typer(
    name="gflv2-deploy",
    help="GFLV2 detector: PyTorch reference, ONNX export, TensorRT engines, parity checks and benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        say(f"gflv2-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """GFLV2 from a PyTorch checkpoint to fast, verified inference engines."""


for _group in (reference, train, export, engine, parity, bench, infer, report, demo, triton):
    _group.register(app)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Warnings of the library (skipped annotations, ...) as one clean ``warning:`` line, without a source path."""
    say_error("warning:", str(message))


def main() -> None:
    """Console-script entry point: run the app; user errors and bad command lines become one ``error:`` line and exit
    status 2; SIGINT and SIGTERM unwind the command (its temporary files are removed) and print ``interrupted``."""
    warnings.showwarning = _show_warning
    received: list[int] = []
    _catch_termination(received)
    _widen_piped_help()
    try:
        status = app(prog_name="gflv2-deploy", standalone_mode=False)
    except UserError as exc:
        say_error("error:", str(exc))
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:
            raise
        # the environment, not the program: a disk filled up, a file vanished or lost its permissions mid-run
        say_error("error:", f"{exc.filename}: {exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:  # outside the command itself (typer turns one inside it into status 130)
        status = 130
    except Exception as exc:
        problem = usage_problem(exc)
        if problem is None:
            raise
        if problem:  # empty: no command given, and the help was printed instead
            say_error("error:", problem)
        sys.exit(2)
    if status == 130:
        say_error("interrupted", "")
        sys.exit(128 + (received[-1] if received else signal.SIGINT))
    sys.exit(status if isinstance(status, int) else 0)  # a command's return value is not a status


def _catch_termination(received: list[int]) -> None:
    """SIGTERM (and SIGINT) raise KeyboardInterrupt in the main thread, so ``finally`` blocks and context managers
    remove temporary folders, as for Ctrl-C; the signal is appended to ``received`` for the exit status."""
    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is signal.SIG_IGN:  # e.g. SIGINT of a background job: keep it ignored
            continue
        try:
            signal.signal(signum, interrupt)
        except ValueError:  # not the main thread (an embedding program): leave its handlers alone
            return


def _widen_piped_help() -> None:
    """``--help`` into a pipe or file: lines as wide as ``print_wide``'s tables instead of Rich's 80 columns."""
    import os

    from gflv2_deploy.cli.options import PIPED_WIDTH

    if sys.stdout.isatty() or os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH"):
        return
    try:
        from typer import rich_utils
    except ImportError:
        return
    rich_utils.MAX_WIDTH = PIPED_WIDTH


def usage_problem(exc: BaseException) -> str | None:
    """One line for a command-line mistake click reports (unknown option, bad value, missing argument), "" when no
    command was given (typer printed the help already), None for any other exception. Its exit status is 2."""
    errors = sys.modules[typer.BadParameter.__module__]  # click's exceptions, vendored by typer or not
    if not isinstance(exc, errors.ClickException):
        return None
    no_args = getattr(errors, "NoArgsIsHelpError", None)
    if no_args is not None and isinstance(exc, no_args):
        return " ".join(exc.format_message().split())  # the help itself when typer did not print it
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    if isinstance(exc, errors.NoSuchOption):
        # click suggests any option within difflib's default 0.6 (eval --bogus: "--out"); only near-typos here
        known = [o for p in ctx.command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")] if ctx else []
        close = difflib.get_close_matches(exc.option_name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"no such option: {exc.option_name}{hint}{where}"
    message = " ".join(exc.format_message().split()).rstrip(".")
    return f"{message[:1].lower()}{message[1:]}{where}"
