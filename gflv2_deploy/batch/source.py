"""Where the pictures of an ``infer`` job come from: list a SOURCE into sorted picture locations, read one.

SOURCE is a folder (searched recursively for picture files), a text file of picture paths (one per line;
blank lines and ``#`` comments skipped; paths are on the list file's file system, relative ones relative to
its folder), a glob
(``photos/**/*.jpg``: ``*`` and ``?`` stay within one path segment, ``**`` spans any number of them), or a
single picture. Each may be a local path or a URI (``s3://bucket/photos/``, ``gs://...``, ``file:///...``):
URIs are opened through ``pyarrow.fs.FileSystem.from_uri``, so every file system pyarrow (and with it Ray
Data) reads works here without a line of our code knowing it.

A location is a string: an absolute local path, or a URI. The listing is sorted by that string and free of
duplicates, so the same SOURCE always gives the same listing, whatever the current folder (shards and
resumption depend on it).
"""

from __future__ import annotations

import functools
import glob
import os
import posixpath
import re
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from gflv2_deploy.data.image_io import decode_image, read_image
from gflv2_deploy.errors import MissingDependencyError, UserError

PICTURE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/]*)(.*)$")
_GLOB_CHARS = re.compile(r"[*?[]")


def is_uri(location: str) -> bool:
    """True for ``scheme://...`` (an object store or ``file://``); False for a local path (also ``C:\\x``)."""
    return _URI.match(location) is not None


def is_picture_name(name: str) -> bool:
    """True when ``name`` ends in a picture suffix (.jpg, .png, ...; any case)."""
    return name.lower().endswith(PICTURE_SUFFIXES)


def list_pictures(source: str) -> list[str]:
    """The sorted, duplicate-free picture locations SOURCE names (module docstring); UserError when it names none.

    A folder contributes its picture files (``PICTURE_SUFFIXES``) at any depth, skipping names that start with
    a dot; a list file or a glob contributes every file it names, picture suffix or not (a wrong entry is then
    reported as an unreadable picture, never dropped).
    """
    text = str(source)
    if not text.strip():
        raise UserError("SOURCE is empty: give a folder, a list file, a glob or a URI")
    if _GLOB_CHARS.search(text):
        found = _glob_uri(text) if is_uri(text) else _glob_local(text)
        what = "files match"
    elif is_uri(text):
        found = _list_uri(text)
        what = "pictures are"
    else:
        found = _list_local(text)
        what = "pictures are"
    unique = sorted(set(found))
    if not unique:
        raise UserError(f"no {what} in {text} (picture files end in {', '.join(PICTURE_SUFFIXES)})")
    return unique


def read_picture(location: str) -> np.ndarray:
    """The picture at ``location`` (local path or URI) as an H x W x 3 uint8 BGR array.

    Raises UserError (one line naming the location) for a missing, unreadable or undecodable file.
    """
    if not is_uri(location):
        return read_image(location)
    fs, path = resolve_uri(location)
    try:
        with fs.open_input_stream(path) as stream:
            data = stream.read()
    except (OSError, ValueError) as exc:  # pyarrow's errors: FileNotFoundError, ArrowIOError (an OSError), ...
        raise UserError(f"cannot read image file {location}: {exc}") from None
    return decode_image(data, f"image file {location}")


def resolve_uri(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for ``uri``; the file system is made once per scheme and host.

    ``pyarrow.fs.FileSystem.from_uri`` may ask the network (an S3 bucket's region), so it runs once per
    ``scheme://host`` and each location's path is joined onto that root's path: ``s3://b/k`` -> (S3, ``b/k``),
    ``file:///x/y`` -> (local, ``/x/y``). Percent escapes are decoded as ``from_uri`` does.
    """
    scheme, host, rest = _split_uri(uri)
    fs, root = _root_filesystem(f"{scheme}://{host}")
    rest = unquote(rest).lstrip("/")
    return fs, (root.rstrip("/") + "/" + rest) if rest else root


def _split_uri(uri: str) -> tuple[str, str, str]:
    match = _URI.match(uri)
    if match is None:
        raise UserError(f"not a URI: {uri}")
    return match.group(1).lower(), match.group(2), match.group(3)


@functools.lru_cache(maxsize=32)
def _root_filesystem(root: str) -> tuple[Any, str]:
    try:
        from pyarrow import fs as pafs
    except ImportError:
        raise MissingDependencyError("pyarrow", "parquet", f"reading {root} URIs") from None
    try:
        return pafs.FileSystem.from_uri(root + "/")
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError: unknown scheme, bad host
        raise UserError(f"cannot open {root}/: {exc}") from None


def _uri_of(root: str, fs_root: str, fs_path: str) -> str:
    """The URI of ``fs_path`` (a path inside the file system of ``root``, whose own path is ``fs_root``)."""
    rel = fs_path[len(fs_root.rstrip("/")):] if fs_path.startswith(fs_root.rstrip("/")) else fs_path
    return root + quote("/" + rel.lstrip("/"))


def _list_local(source: str) -> list[str]:
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path):
        found = []
        for folder, dirs, files in os.walk(path, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(folder, f) for f in files if not f.startswith(".") and is_picture_name(f)]
        return found
    if os.path.isfile(path):
        if is_picture_name(path):
            return [path]
        return _entries(_read_list_file(path, lambda: open(path, "rb").read()), os.path.dirname(path))
    raise UserError(f"SOURCE not found: {source} (a folder, a list file, a glob or a URI)")


def _list_uri(uri: str) -> list[str]:
    from pyarrow import fs as pafs

    scheme, host, _ = _split_uri(uri)
    root = f"{scheme}://{host}"
    fs, path = resolve_uri(uri)
    _, fs_root = _root_filesystem(root)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            return [_uri_of(root, fs_root, i.path) for i in infos
                    if i.type == pafs.FileType.File and _visible(i.path[len(path):]) and is_picture_name(i.base_name)]
        if info.type == pafs.FileType.File:
            if is_picture_name(info.base_name):
                return [uri]
            with fs.open_input_stream(path) as stream:
                data = stream.read()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot list {uri}: {exc}") from None
    else:
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"SOURCE not found: {uri}")
    return _entries(_read_list_file(uri, lambda: data), uri.rsplit("/", 1)[0])


def _visible(rel: str) -> bool:
    """False when a segment of the relative path starts with a dot (hidden files and folders are skipped)."""
    return not any(part.startswith(".") for part in rel.split("/") if part)


def _read_list_file(name: str, read: Any) -> list[str]:
    data: bytes = read()
    if b"\0" in data[:4096]:
        raise UserError(f"SOURCE {name} is neither a folder, a picture nor a text list of paths")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"list file {name} is not UTF-8 text") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _entries(lines: list[str], base: str) -> list[str]:
    """List-file entries as locations: URIs as they are; paths on the list file's own file system, relative ones
    to its folder ``base`` (so ``/photos/a.jpg`` in ``s3://bucket/list.txt`` is ``s3://bucket/photos/a.jpg``)."""
    out = []
    for entry in lines:
        if is_uri(entry):
            out.append(entry)
        elif is_uri(base):
            scheme, host, folder = _split_uri(base)
            out.append(f"{scheme}://{host}" + quote(posixpath.normpath(posixpath.join(unquote(folder) or "/", entry))))
        else:
            out.append(os.path.normpath(os.path.join(base, os.path.expanduser(entry))))
    return out


def _glob_local(pattern: str) -> list[str]:
    path = os.path.abspath(os.path.expanduser(pattern))
    return [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]


def _glob_uri(pattern: str) -> list[str]:
    """Files under a URI glob: the static folder before the first wildcard is listed, the rest matched."""
    from pyarrow import fs as pafs

    scheme, host, rest = _split_uri(pattern)
    root = f"{scheme}://{host}"
    parts = rest.lstrip("/").split("/")
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    base_uri = root + "/" + "/".join(parts[:first])
    fs, base = resolve_uri(base_uri)
    _, fs_root = _root_filesystem(root)
    regex = glob_regex("/".join(parts[first:]))
    # one segment left without ``**``: that folder alone; otherwise the whole tree below it
    recursive = "**" in parts[first:] or len(parts) - first > 1
    selector = pafs.FileSelector(base, recursive=recursive, allow_not_found=True)
    try:
        infos = fs.get_file_info(selector)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot list {base_uri}: {exc}") from None
    prefix = base.rstrip("/") + "/"
    return [_uri_of(root, fs_root, i.path) for i in infos
            if i.type == pafs.FileType.File and i.path.startswith(prefix) and regex.fullmatch(i.path[len(prefix):])]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression for a relative glob with Python's ``glob(recursive=True)`` meaning.

    ``*`` and ``?`` match within one segment and never a leading dot; ``[...]`` is a character class; a
    ``**`` segment matches zero or more segments (not hidden ones).
    """
    out = []
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(r"(?:[^./][^/]*/)*" if not last else r"(?:[^./][^/]*(?:/[^./][^/]*)*)?")
            continue
        seg = "(?!\\.)" if part[:1] in ("*", "?", "[") else ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                seg += "[^/]*"
            elif c == "?":
                seg += "[^/]"
            elif c == "[" and _class_end(part, j) > 0:
                end = _class_end(part, j)
                body = part[j + 1:end]
                seg += "[" + ("^" + body[1:] if body[:1] == "!" else body).replace("\\", "\\\\") + "]"
                j = end
            else:
                seg += re.escape(c)
            j += 1
        out.append(seg + ("" if last else "/"))
    return re.compile("".join(out))


def _class_end(part: str, start: int) -> int:
    """Index of the ``]`` closing the character class opened at ``part[start]``, or -1 (then ``[`` is literal)."""
    k = start + 1
    if part[k:k + 1] == "!":
        k += 1
    if part[k:k + 1] == "]":  # a leading ] belongs to the class
        k += 1
    return part.find("]", k)
