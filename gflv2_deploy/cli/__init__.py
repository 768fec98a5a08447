"""The ``gflv2-deploy`` command line: thin typer commands, each parsing options and calling one library function.

One module per command group, each adding its commands with ``register(app)``:
``reference`` (configs, predict, eval), ``train`` (train, data synth), ``export``, ``engine`` (quantize,
build), ``parity`` (compare), ``bench``, ``infer`` (batch detection on Ray Data), ``report``, ``demo``, ``triton``; shared option types and safe printing in ``options``.
Heavy modules (torch, onnx) are imported inside commands so ``--help`` and ``--version`` stay fast.
User mistakes (``UserError``) print one ``error:`` line and exit with status 2; no traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

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
    """Console-script entry point: run the app, turning user errors into one line and exit status 2."""
    warnings.showwarning = _show_warning
    try:
        app()
    except UserError as exc:
        say_error("error:", str(exc))
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:
            raise
        # the environment, not the program: a disk filled up, a file vanished or lost its permissions mid-run
        say_error("error:", f"{exc.filename}: {exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        say_error("interrupted", "")
        sys.exit(130)
