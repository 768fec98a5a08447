"""The result files a report reads: compare, eval and bench JSON, recognised by their fields.

``gflv2-deploy compare --report``, ``eval --out`` and ``bench --out`` write them. A file is recognised by
the fields its writer always sets (older files without the fields added for reports are still read; the
sections they cannot fill say so). Anything else is a ``UserError`` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gflv2_deploy.errors import UserError

__all__ = ["KINDS", "Result", "classify", "load_result", "result_from_data"]

KINDS: tuple[str, ...] = ("compare", "eval", "bench")
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "compare": ("ref", "test", "budgets", "detections"),
    "eval": ("stats", "stat_names"),
    "bench": ("machine", "settings", "results", "comparison"),
}


@dataclass(frozen=True)
class Result:
    """One result: its kind, its data, where it came from, and its place in the page.

    name: what the page calls it (the file name by default). anchor: the HTML id of its section.
    source: the JSON file, or None for a result handed over in memory (``--html`` of a command); relative
    picture paths are looked up from the current folder, then from the source's folder.
    """

    kind: str
    data: Mapping[str, Any]
    name: str
    anchor: str
    source: Path | None = None


def classify(data: Any) -> str | None:
    """"compare", "eval" or "bench" for a result dict, None for anything else."""
    if not isinstance(data, dict):
        return None
    for kind, keys in _SIGNATURES.items():
        if all(k in data for k in keys):
            return kind
    return None


def result_from_data(data: Mapping[str, Any], name: str, index: int = 0, source: Path | None = None) -> Result:
    """A ``Result`` for a dict already in memory; ValueError when it is none of the three kinds."""
    kind = classify(data)
    if kind is None:
        raise ValueError(f"{name}: not a compare, eval or bench result")
    return Result(kind, data, name, f"{kind}-{index + 1}", source)


def load_result(path: str | os.PathLike[str], index: int = 0) -> Result:
    """Read a result JSON; UserError when it is missing, unreadable, or none of the three kinds."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"result file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder: give the JSON files written by `gflv2-deploy compare --report`, "
                        "`gflv2-deploy eval --out` or `gflv2-deploy bench --out`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read result file {path}: {exc}") from None
    if classify(data) is None:
        raise UserError(f"{path} is not a compare, eval or bench result (the JSON of `gflv2-deploy compare --report`, "
                        "`gflv2-deploy eval --out` or `gflv2-deploy bench --out`)")
    return result_from_data(data, path.name, index, path)
