"""Reading and writing pictures as H x W x 3 uint8 BGR arrays (the layout OpenCV and spec §3.1 use).

Files are read as bytes and decoded with ``cv2.imdecode`` so that paths with non-ASCII characters work
on every platform (``cv2.imread`` cannot open them on Windows). Decoding uses ``IMREAD_UNCHANGED``:
every pixel format is seen as stored and converted here in one place (grayscale, alpha, 16-bit), and
the EXIF orientation tag is ignored, so pixel coordinates match the stored image (COCO annotations
are given in that frame).

Everything a user can get wrong (missing file, a folder, an empty, corrupt or truncated file, an
unsupported pixel format) raises a one-line ``UserError`` that names the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.errors import UserError

__all__ = ["read_image", "decode_image", "image_header_size", "write_image"]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BMP_SIGNATURE = b"BM"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): C0-CF except DHT C4, JPG C8, DAC CC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a picture file into an H x W x 3 uint8 BGR array (C-contiguous).

    Conversions: grayscale -> BGR (the gray value in all three channels); an alpha channel is
    dropped (not composited); 16-bit samples are scaled to 8 bits (x / 257, rounded).

    Raises ``UserError`` (one line, naming the file) when the file is missing, is a folder, is
    empty, cannot be decoded (corrupt, truncated or not an image), or has a pixel format other than
    1-4 channels of 8 or 16 bits.
    """
    file = Path(path)
    if not file.exists():
        raise UserError(f"image file not found: {file}")
    if file.is_dir():
        raise UserError(f"expected an image file but got a folder: {file}")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read image file {file}: {exc.strerror or exc}") from None
    return decode_image(data, f"image file {file}")


def decode_image(data: bytes, source: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded picture bytes (JPEG, PNG, ...) into an H x W x 3 uint8 BGR array, as ``read_image``.

    source: how messages name the picture (e.g. "image file a.jpg", "request 3").
    max_pixels: when given, a PNG, JPEG or BMP whose header declares more than this many pixels is
        refused before anything is decoded (a server must not allocate 20000 x 20000 x 3 bytes for a
        request); other formats are left to OpenCV's own limit.
    Raises ``UserError`` (one line, naming ``source``) for empty, oversized, corrupt or truncated data.
    """
    if not data:
        raise UserError(f"{source} is empty (0 bytes)")
    if max_pixels is not None:
        size = image_header_size(data)
        if size is not None and size[0] * size[1] > max_pixels:
            raise UserError(f"{source} is {size[1]} x {size[0]} pixels by its header, over the limit of "
                            f"{max_pixels} pixels: downscale it before sending")
    try:
        with _opencv_log_silenced():  # its "[ WARN ] PNG input buffer is incomplete" etc.: we say it in one line below
            decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None:
        raise UserError(
            f"cannot decode {source}: it is corrupt, truncated or not a picture format "
            "OpenCV reads (JPEG, PNG, BMP, TIFF, WebP, ...)"
        )
    # OpenCV before 5.0 returns a partly grey picture for a cut-off JPEG and only prints a warning.
    if _jpeg_is_truncated(data):
        raise UserError(f"{source} is truncated (JPEG without its end-of-image marker)")
    return _to_bgr8(decoded, source)


_log_lock = threading.Lock()
_log_users = 0
_log_level_before: int | None = None


@contextlib.contextmanager
def _opencv_log_silenced() -> Iterator[None]:
    """OpenCV's own logger (``[ WARN:0@...]`` / ``[ERROR:0@...]`` lines on stderr) silenced while the block runs,
    then set back; nested and concurrent blocks restore the level the first one found. Messages libpng and
    libjpeg print themselves are not OpenCV's logger and are not affected."""
    global _log_users, _log_level_before
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:  # an OpenCV build without the logging bindings
        yield
        return
    with _log_lock:
        if _log_users == 0:
            _log_level_before = log.getLogLevel()
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        _log_users += 1
    try:
        yield
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0 and _log_level_before is not None:
                log.setLogLevel(_log_level_before)


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) declared by a PNG, JPEG or BMP header, read without decoding; None when unknown."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data.startswith(_BMP_SIGNATURE) and len(data) >= 26:
        return abs(int.from_bytes(data[22:26], "little", signed=True)), abs(int.from_bytes(data[18:22], "little", signed=True))
    if data.startswith(_JPEG_SOI):
        pos = len(_JPEG_SOI)
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker in _JPEG_SOF and pos + 9 <= len(data):
                return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
            if length < 2 or marker == _JPEG_SOS:
                return None
            pos += 2 + length
    return None


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write ``image`` (H x W x 3 uint8 BGR, or H x W gray, or H x W x 4 BGRA) to ``path`` atomically.

    The file extension chooses the format (``.jpg``, ``.png``, ``.bmp``, ...). The file appears
    complete under its final name or not at all. Raises ``UserError`` for an extension OpenCV cannot
    encode, an image it cannot store, or a path that cannot be written.
    """
    file = Path(path)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise UserError(f"cannot write {file}: expected an H x W x 3 image array, got {_describe(image)}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise UserError(f"cannot write {file}: an image needs 1, 3 or 4 channels, got {image.shape[2]}")
    extension = file.suffix.lower()
    if not extension:
        raise UserError(f"cannot write {file}: add a file extension (.jpg, .png, ...) to choose the format")
    try:
        ok, encoded = cv2.imencode(extension, image)
    except cv2.error:
        ok, encoded = False, None
    if not ok or encoded is None:
        raise UserError(
            f"cannot write {file}: OpenCV cannot encode a {image.dtype} image with "
            f"{1 if image.ndim == 2 else image.shape[2]} channel(s) as '{extension}'; use .jpg or .png"
        )
    try:
        with atomic_path(file) as tmp:
            tmp.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise UserError(f"cannot write image file {file}: {exc.strerror or exc}") from None


def _to_bgr8(image: np.ndarray, file: object) -> np.ndarray:
    """Convert a decoded array (H x W or H x W x C, uint8 or uint16) to H x W x 3 uint8 BGR."""
    if image.dtype == np.uint16:
        # Rounded x * 255 / 65535 (= x / 257): 0 -> 0, 257 * k -> k, 65535 -> 255.
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype != np.uint8:
        raise UserError(
            f"unsupported pixel type {image.dtype} in {file}: convert it to 8-bit "
            "(or 16-bit) JPEG or PNG"
        )

    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        gray = image if image.ndim == 2 else image[:, :, 0]
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 4:  # OpenCV decodes alpha pictures as BGRA: keep B, G, R as stored.
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise UserError(
        f"unsupported channel count {channels} in {file}: expected 1 (gray), "
        "3 (colour) or 4 (colour + alpha)"
    )


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when ``data`` is a JPEG whose first scan is not followed by an end-of-image marker.

    Walks the header segments (skipping APPn, so an EXIF thumbnail's own markers are not mistaken
    for the picture's) up to the first start-of-scan, then looks for FF D9 after it. Inside
    entropy-coded data every FF byte is stuffed as FF 00, so FF D9 there can only be the real end.
    A header this walk cannot follow returns False and is left to the decoder to judge.
    """
    if not data.startswith(_JPEG_SOI):
        return False
    size = len(data)
    pos = len(_JPEG_SOI)
    while True:
        if pos >= size:
            return True
        if data[pos] != 0xFF:
            return False
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            return True
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # end of image before any scan: not a truncation
            return False
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            continue
        if pos + 2 > size:
            return True
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            return False
        if marker == _JPEG_SOS:
            return data.find(_JPEG_EOI, pos + length) == -1
        pos += length


def _describe(value: object) -> str:
    """Short description of a non-image value for error messages."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"
