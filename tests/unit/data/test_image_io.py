"""read_image / write_image on real COCO JPEGs and on pictures written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gflv2_deploy.data.image_io import read_image, write_image
from gflv2_deploy.errors import UserError


def _first_jpeg(tiny50: Path) -> Path:
    jpegs = sorted((tiny50 / "val2017").glob("*.jpg"))
    assert jpegs, f"no JPEGs under {tiny50 / 'val2017'}"
    return jpegs[0]


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    return encoded.tobytes()


def test_reads_real_coco_jpeg_as_bgr_uint8(tiny50: Path) -> None:
    path = _first_jpeg(tiny50)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags.c_contiguous
    # Same pixels as OpenCV's own colour decoder (BGR order).
    np.testing.assert_array_equal(image, cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR))
    # Same size as the COCO annotation says.
    coco = json.loads((tiny50 / "annotations" / "instances_val2017.json").read_text())
    entry = next(img for img in coco["images"] if img["file_name"] == path.name)
    assert image.shape[:2] == (entry["height"], entry["width"])


def test_grayscale_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    path = tmp_path / "gray.png"
    path.write_bytes(_encode(".png", gray))
    image = read_image(path)
    assert image.shape == (12, 20, 3) and image.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_rgba_png_drops_alpha_and_keeps_bgr(tmp_path: Path) -> None:
    bgra = np.zeros((7, 9, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 10, 200, 90  # B, G, R
    bgra[..., 3] = np.linspace(0, 255, 9, dtype=np.uint8)  # varying alpha, incl. fully transparent
    path = tmp_path / "rgba.png"
    path.write_bytes(_encode(".png", bgra))
    image = read_image(path)
    assert image.shape == (7, 9, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, bgra[..., :3])


def test_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    values = np.array([[0, 257, 257 * 100, 65535, 300]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_encode(".png", values))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (1, 5, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 100, 255, 1])


def test_write_then_read_round_trip_with_non_ascii_name(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (15, 11, 3), dtype=np.uint8)
    path = tmp_path / "unterordner" / "bild_äöü 猫.png"
    write_image(path, image)
    assert path.is_file()
    np.testing.assert_array_equal(read_image(path), image)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_write_unknown_extension_fails_and_leaves_nothing(tmp_path: Path) -> None:
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="out.notaformat"):
        write_image(tmp_path / "out.notaformat", image)
    with pytest.raises(UserError, match="extension"):
        write_image(tmp_path / "no_extension", image)
    assert list(tmp_path.iterdir()) == []


def _assert_user_error_names(path: Path) -> str:
    with pytest.raises(UserError) as info:
        read_image(path)
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _assert_user_error_names(tmp_path / "missing.jpg")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in _assert_user_error_names(path)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.jpg"
    path.mkdir()
    assert "folder" in _assert_user_error_names(path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "decode" in _assert_user_error_names(path)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_jpeg(tiny50: Path, tmp_path: Path, fraction: float) -> None:
    data = _first_jpeg(tiny50).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    _assert_user_error_names(path)


def test_jpeg_with_trailing_bytes_after_end_marker_is_accepted(tiny50: Path, tmp_path: Path) -> None:
    # Phones append data after the end-of-image marker; that is not a truncation.
    source = _first_jpeg(tiny50)
    path = tmp_path / "trailing.jpg"
    path.write_bytes(source.read_bytes() + b"appended\x00\xff\xd8 data")
    np.testing.assert_array_equal(read_image(path), read_image(source))


def test_opencv_log_lines_stay_off_stderr(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """A cut-off PNG: OpenCV logs "[ WARN:0@...] ... PNG input buffer is incomplete" on stderr by itself; the one
    UserError line says it instead, and OpenCV's log level is the caller's again afterwards."""
    from cv2.utils import logging as cv_log

    ok, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.tobytes()[: len(png) // 2])
    level = cv_log.getLogLevel()
    capfd.readouterr()
    with pytest.raises(UserError, match="cannot decode"):
        read_image(cut)
    err = capfd.readouterr().err
    assert "[ WARN" not in err and "[ERROR" not in err, err
    assert cv_log.getLogLevel() == level
