"""User-facing errors.

Anything a user can cause (missing file, corrupt image, wrong checkpoint, missing optional
dependency) raises ``UserError`` with one line that says what is wrong and what to do. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input or environment, reported as one clear line."""


class MissingDependencyError(UserError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python module '{module}', which is not installed: "
            f"pip install 'gflv2-deploy[{extra}]'"
        )
        self.module = module
        self.extra = extra
