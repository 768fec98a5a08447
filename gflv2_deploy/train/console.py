"""Console side of training: rank-0 printing, the rich progress bar, and a graceful first Ctrl-C."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["Printer", "TrainProgress", "StopOnInterrupt"]


class Printer:
    """Prints on rank 0 only (stderr, plain lines when not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._console = None

    def __call__(self, text: str) -> None:
        if not self.enabled:
            return
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        self._console.print(text, markup=False, soft_wrap=True)  # paths and names print as typed


class TrainProgress:
    """A rich progress bar over iterations with the current losses, lr and ETA (hidden when not a terminal)."""

    def __init__(self, enabled: bool, total: int, completed: int) -> None:
        self.visible = False
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)
        self._task = self._bar.add_task("train", total=total, completed=completed, info="")
        self.visible = True

    def __enter__(self) -> "TrainProgress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, info: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=info)


class StopOnInterrupt:
    """First Ctrl-C: finish the current iteration, save ``latest.pth`` and return; the second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnInterrupt":
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: keep the default behaviour
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
