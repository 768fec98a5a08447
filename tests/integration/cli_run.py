"""Running ``gflv2-deploy`` in the test process through its real entry point (``gflv2_deploy.cli.main``), and the
check every bad-input test makes: one ``error:`` line on stderr, status 2, no traceback."""

from __future__ import annotations

import signal
import sys
import warnings

import pytest
from typer import rich_utils

from gflv2_deploy.cli import main


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``gflv2-deploy ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["gflv2-deploy", *args])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own; undo afterwards
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", rich_utils.MAX_WIDTH)  # and widens piped --help
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # and catches SIGTERM
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def assert_one_error_line(result: tuple[int, str, str], *fragments: str, after_progress: bool = False) -> str:
    """Status 2, no traceback, and stderr is one ``error:`` line holding ``fragments`` (with ``after_progress``:
    the last of stderr's lines, after progress lines of work that had started)."""
    code, out, err = result
    lines = [line for line in err.strip().splitlines() if line.strip()]
    if after_progress:
        lines = lines[-1:] if sum(line.startswith("error:") for line in lines) == 1 else lines
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, out, err)
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
