"""Progress of long loops on stderr: a rich bar on a terminal, plain lines in logs and CI (not a terminal);
``progress_step`` for the steps of a command that is not a loop (export).

Without a terminal a line ``detect: 120/500 (24%), 31 s elapsed, ~98 s left`` is printed every
``LINE_EVERY_S`` seconds (and once at the end), so a job's log shows that it is alive and how far it got.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

LINE_EVERY_S = 10.0


def progress_iter(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True,
                  plain: bool = False) -> Iterator[T]:
    """Iterate over ``items`` with a rich progress bar (elapsed, ETA) on a terminal, or progress lines otherwise.

    plain: progress lines on a terminal too (a bar redraws from a thread of its own, which would share the CPU
    with a timing loop).
    """
    if not enabled:
        yield from items
        return
    from rich.console import Console

    console = Console(stderr=True)
    if plain or not console.is_terminal:
        yield from progress_lines(items, total, description, sys.stderr)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def progress_lines(items: Iterable[T], total: int | None, description: str, stream: TextIO,
                   every_s: float = LINE_EVERY_S) -> Iterator[T]:
    """Iterate over ``items``, writing ``description: done/total (pct), elapsed, ~left`` to ``stream`` every
    ``every_s`` seconds and after the last item (nothing for an empty or sub-``every_s`` loop but that last line)."""
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            stream.write(_line(description, done, total, now - start) + "\n")
            stream.flush()
    if done:
        stream.write(_line(description, done, total, time.monotonic() - start) + "\n")
        stream.flush()


def _line(description: str, done: int, total: int | None, elapsed: float) -> str:
    if not total:
        return f"{description}: {done} done, {elapsed:.0f} s elapsed"
    left = elapsed / done * (total - done)
    return f"{description}: {done}/{total} ({100 * done / total:.0f}%), {elapsed:.0f} s elapsed, ~{left:.0f} s left"


def progress_step(description: str, step: str, enabled: bool = True, stream: TextIO | None = None) -> None:
    """One line ``description: step`` on stderr (``stream``) for a long step that is not a loop (an export's trace,
    its checks), so that a log shows what a command is doing."""
    if enabled:
        out = stream or sys.stderr
        out.write(f"{description}: {step}\n")
        out.flush()
