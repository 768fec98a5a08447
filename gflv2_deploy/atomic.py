"""Atomic artifact writing: a file appears complete under its final name, or not at all.

Every artifact (checkpoint, ONNX, engine, JSON report, picture) is written to a temporary file in
the destination folder and renamed into place only after the writer finished without error, so bad
input never leaves a partial output file behind. ``check_writable`` is called by every command before its
work starts, so a long evaluation or benchmark is never lost to an output location that cannot be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from gflv2_deploy.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The caller writes to the yielded path with any library (torch.save, onnx.save, cv2.imwrite).
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


# A list of numbers, booleans or nulls that json.dumps(indent=...) spread over several lines. It starts with "[" and
# a line break, which never occurs inside a JSON string (strings escape their line breaks), so no string is touched.
_SCALAR = r"(?:-?(?:\d[\d.eE+-]*|Infinity)|NaN|true|false|null)"
_SCALAR_LIST = re.compile(r"\[\n\s*" + _SCALAR + r"(?:,\s*" + _SCALAR + r")*\s*\]")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    """Serialise ``obj`` as JSON and write it to ``path`` atomically.

    With ``indent``, lists of plain values stay on one line (boxes, statistics, histogram counts): a file of
    many detections stays readable and several times smaller than one number per line.
    """
    text = json.dumps(obj, indent=indent)
    if indent is not None:
        text = _SCALAR_LIST.sub(lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text)
    write_text_atomic(path, text + "\n")


def check_writable(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """UserError unless ``path`` can be written: as a file (created or replaced), or with ``folder`` as a folder to
    write files into (created if missing). Returns ``path`` as a Path.

    Probes the deepest folder that exists by creating and removing a temporary file in it, because permission bits
    say nothing on /proc, read-only mounts or for root. Nothing else is created: missing folders are made later, by
    the writer, only once there is something to write.
    """
    target = Path(path)
    what = "output folder" if folder else "output file"
    if target.exists():
        if folder and not target.is_dir():
            raise UserError(f"{what} {target} exists and is a file: give a folder")
        if not folder and target.is_dir():
            raise UserError(f"{what} {target} is a folder: give a file name")
    ancestor = target if folder and target.is_dir() else target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot write {what} {target}: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gflv2-deploy-write-check.", dir=ancestor)
    except OSError as exc:
        raise UserError(f"cannot write {what} {target}: no file can be created in {ancestor} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return target
