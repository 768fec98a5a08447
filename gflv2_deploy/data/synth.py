"""Deterministic synthetic COCO detection data: six filled shapes on cluttered backgrounds.

The default data for the demo, the tests and the CPU training run of the tiny GFLV2 model. The task
is learnable by a small model in minutes but not trivial:

- Six classes that differ by SHAPE only: disc, rectangle, triangle, ring, cross, star. Every object
  gets a uniformly random colour (independent of its class) that contrasts with the background under
  it, an optional shading ramp and an optional outline. Sizes are log-uniform from ``min_object_size``
  pixels (geometric mean of the unrotated width and height) up to ``max_object_frac`` of the short
  image side; rectangles, triangles, rings and crosses vary in aspect ratio; all but the disc rotate.
- Cluttered backgrounds: a two-colour gradient, low-frequency colour noise, sometimes a stripe
  texture, and unannotated distractors (lines, random-walk curves, arcs, specks, soft translucent
  stains, hatched patches), a few of them drawn over the objects; sensor noise and JPEG on top.
- 1 to 8 objects per image, some images empty. Objects may overlap; a placement is rejected when it
  would leave an earlier object less than ``_MIN_VISIBLE`` of its pixels visible, so every drawn
  object is annotated and recognisable. The box is the full object's box (tight around its
  rendered, anti-aliased mask at 50 % coverage), also when partly occluded; ``area`` is the visible
  pixel count, as for COCO's polygons.

Determinism: image ``i`` (0-based) is rendered from ``numpy.random.default_rng([seed, _STREAM, i])``
alone, so images can be produced in any order or in parallel and a run is byte-identical to another
with the same arguments. Ids: image ids ``1..N`` (file ``{id:012d}.jpg``); the last
``round(N * val_fraction)`` images form the val split; annotation ids are ``1..M`` in image order.

Output layout (the project's COCO convention, see ``data/coco.py``)::

    <out>/annotations/instances_train.json    <out>/train/000000000001.jpg ...
    <out>/annotations/instances_val.json      <out>/val/...

Everything is written to a hidden temporary folder beside ``out_dir`` and renamed into place at the
end, so an interrupted run never leaves a partial dataset under ``out_dir``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.errors import UserError
from gflv2_deploy.progress import progress_iter

SYNTH_VERSION = 1  # bump when the rendering changes, so old datasets are recognisably different
SYNTH_CATEGORIES: tuple[dict[str, Any], ...] = tuple(
    {"id": i + 1, "name": name, "supercategory": "shape"}
    for i, name in enumerate(("disc", "rectangle", "triangle", "ring", "cross", "star"))
)
_STREAM = 0x5F1F2  # separates this generator's random streams from other uses of the same seed
_EMPTY_IMAGE_PROB = 0.08
_MAX_OBJECTS = 8
_MIN_VISIBLE = 0.6  # an earlier object must keep >= 60 % of its pixels visible
_MIN_CONTRAST = 90.0  # Euclidean RGB distance between an object and the background under it
_PLACEMENT_TRIES = 12
_SUB = 16  # cv2 drawing with shift=4: coordinates in 1/16 pixel
_MIN_IMAGE_SIDE = 64


@dataclass(frozen=True)
class SynthObject:
    """One annotated object: ``bbox`` is COCO x, y, w, h in pixels, ``area`` its visible pixels."""

    category_id: int
    bbox: tuple[float, float, float, float]
    area: float


# --- shapes ---------------------------------------------------------------------------------------
# Each builder returns polygons in pixels around the origin: the first is filled, later ones (a
# ring's hole) are cut out. ``s`` is the geometric mean of the unrotated width and height.


def _ellipse(rx: float, ry: float, n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _n_vertices(s: float) -> int:
    return int(np.clip(s * 1.5, 24, 96))


def _shape_polygons(name: str, s: float, rng: np.random.Generator) -> tuple[list[np.ndarray], bool]:
    """Polygons of one shape (unrotated) and whether it may be rotated."""
    aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
    if name == "disc":
        return [_ellipse(s / 2, s / 2, _n_vertices(s))], False
    if name == "rectangle":
        w, h = s * math.sqrt(aspect), s / math.sqrt(aspect)
        return [np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])], True
    aspect = math.exp(rng.uniform(math.log(0.65), math.log(1.55)))
    w, h = s * math.sqrt(aspect), s / math.sqrt(aspect)
    if name == "triangle":
        apex = rng.uniform(-0.5, 0.5) * w
        return [np.array([[-w / 2, h / 2], [w / 2, h / 2], [apex, -h / 2]])], True
    if name == "ring":
        inner = rng.uniform(0.45, 0.7)
        n = _n_vertices(s)
        return [_ellipse(w / 2, h / 2, n), _ellipse(inner * w / 2, inner * h / 2, n)], True
    if name == "cross":
        a, b = rng.uniform(0.13, 0.2) * w, rng.uniform(0.13, 0.2) * h  # half arm thicknesses
        x, y = w / 2, h / 2
        return [
            np.array(
                [[-a, -y], [a, -y], [a, -b], [x, -b], [x, b], [a, b],
                 [a, y], [-a, y], [-a, b], [-x, b], [-x, -b], [-a, -b]]
            )
        ], True
    if name == "star":
        points = int(rng.integers(5, 7))
        radius = np.tile([s / 2, s / 2 * rng.uniform(0.38, 0.52)], points)
        t = np.linspace(0.0, 2.0 * np.pi, 2 * points, endpoint=False)
        return [np.stack([radius * np.sin(t), -radius * np.cos(t)], axis=1)], True
    raise ValueError(f"unknown shape {name!r}")


def _rotate(polys: list[np.ndarray], angle: float) -> list[np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    return [p @ rot for p in polys]


def _fill_mask(polys: list[np.ndarray], origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage (uint8, 255 = inside) of ``polys`` (absolute pixels) in a window."""
    mask = np.zeros(shape, np.uint8)
    for k, p in enumerate(polys):
        # Pixel (i, j) covers [j, j+1) x [i, i+1); cv2 samples at the integer point, hence -0.5.
        pts = np.round((p - np.array(origin) - 0.5) * _SUB).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255 if k == 0 else 0, lineType=cv2.LINE_AA, shift=4)
    return mask


# --- background and distractors -------------------------------------------------------------------


def _ramp(h: int, w: int, a: float, b: float) -> np.ndarray:
    """H x W float32 with value ``a * x + b * y`` at column x, row y."""
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    return xs[None, :] * np.float32(a) + ys[:, None] * np.float32(b)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """H x W x 3 uint8: gradient + low-frequency colour noise (+ sometimes stripes)."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    phi = rng.uniform(0, 2 * np.pi)
    # Everything smooth is built on an 1/8-scale canvas and upsampled once (bilinear keeps a ramp exact).
    lh, lw = (h + 7) // 8, (w + 7) // 8
    t = _ramp(lh, lw, math.cos(phi), math.sin(phi))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    low = c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)
    grid = rng.standard_normal((int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
    low += cv2.resize(grid, (lw, lh), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(8, 30))
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        psi, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        k = 2 * np.pi / period
        wave = np.sin(_ramp(h, w, k * math.cos(psi), k * math.sin(psi)))
        img += (wave * np.float32(rng.uniform(6, 18)))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    c = rng.uniform(0, 255, 3)
    return float(c[0]), float(c[1]), float(c[2])


def _random_point(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.uniform([0, 0], [w, h])


def _draw_stroke(img: np.ndarray, rng: np.random.Generator, thin: bool = False) -> None:
    """A straight line, a random-walk curve or an arc, 1-3 px wide."""
    h, w = img.shape[:2]
    kind = rng.integers(0, 3)
    thickness = 1 if thin else int(rng.integers(1, 4))
    if kind == 0:
        a, b = _random_point(rng, h, w), _random_point(rng, h, w)
        pts = np.stack([a, b])
    elif kind == 1:
        steps = rng.normal(0, 1, (int(rng.integers(4, 12)), 2)) * rng.uniform(8, 30)
        pts = _random_point(rng, h, w) + np.cumsum(steps, axis=0)
    else:
        r = rng.uniform(8, 0.3 * min(h, w))
        t = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(0.7, 3.8), 24)
        pts = _random_point(rng, h, w) + np.stack([np.cos(t), np.sin(t)], axis=1) * r
    pts = np.round(pts * _SUB).astype(np.int32)
    cv2.polylines(img, [pts], False, _colour(rng), thickness, cv2.LINE_AA, shift=4)


def _draw_distractors(img: np.ndarray, rng: np.random.Generator) -> None:
    """Unannotated clutter drawn under the objects: strokes, specks, stains, hatched patches."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 7))):
        _draw_stroke(img, rng)
    for _ in range(int(rng.integers(0, 30))):  # specks: at most 6 px, below the smallest object
        c = np.round(_random_point(rng, h, w) * _SUB).astype(np.int32)
        radius = int(rng.uniform(0.5, 3) * _SUB)
        cv2.circle(img, (int(c[0]), int(c[1])), radius, _colour(rng), -1, cv2.LINE_AA, shift=4)
    for _ in range(int(rng.integers(0, 3))):  # soft translucent stains with irregular outlines
        r = rng.uniform(8, 35)
        n = 16
        wobble = np.convolve(np.tile(rng.uniform(-0.5, 0.5, n), 3), np.ones(3) / 3, "same")[n : 2 * n]
        radii = r * (1 + wobble)  # circularly smoothed random radii
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        centre = _random_point(rng, h, w)
        poly = centre + np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
        x0, y0 = max(int(centre[0] - 2 * r), 0), max(int(centre[1] - 2 * r), 0)
        x1, y1 = min(int(centre[0] + 2 * r) + 1, w), min(int(centre[1] + 2 * r) + 1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        alpha = _fill_mask([poly], (x0, y0), (y1 - y0, x1 - x0)).astype(np.float32)
        alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(2, 5)) * np.float32(rng.uniform(0.25, 0.55) / 255)
        roi = img[y0:y1, x0:x1].astype(np.float32)
        roi += alpha[..., None] * (np.array(_colour(rng), np.float32) - roi)
        img[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:  # a patch of parallel hatching
        centre, size = _random_point(rng, h, w), rng.uniform(20, 0.4 * min(h, w))
        psi, gap, colour = rng.uniform(0, np.pi), rng.uniform(4, 9), _colour(rng)
        d, n = np.array([math.cos(psi), math.sin(psi)]), np.array([-math.sin(psi), math.cos(psi)])
        for off in np.arange(-size / 2, size / 2, gap):
            a, b = centre + n * off - d * size / 2, centre + n * off + d * size / 2
            pts = np.round(np.stack([a, b]) * _SUB).astype(np.int32)
            cv2.polylines(img, [pts], False, colour, 1, cv2.LINE_AA, 4)


# --- objects --------------------------------------------------------------------------------------


def _place_objects(
    img: np.ndarray, rng: np.random.Generator, num: int, min_size: float, max_frac: float
) -> list[SynthObject]:
    """Draw up to ``num`` shapes onto ``img`` (in place); return their annotations."""
    h, w = img.shape[:2]
    max_side = max_frac * min(h, w)
    owner = np.full((h, w), -1, np.int16)  # index of the object that shows at each pixel
    full_area: list[int] = []
    visible: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    cats: list[int] = []
    for _ in range(num):
        cat = SYNTH_CATEGORIES[int(rng.integers(0, len(SYNTH_CATEGORIES)))]
        s = math.exp(rng.uniform(math.log(min_size), math.log(max_side)))
        polys, rotatable = _shape_polygons(cat["name"], s, rng)
        if rotatable and not (cat["name"] in ("rectangle", "cross") and rng.random() < 0.4):
            polys = _rotate(polys, rng.uniform(0, 2 * np.pi))
        lo, hi = polys[0].min(axis=0), polys[0].max(axis=0)
        scale = min(1.0, max_side / float((hi - lo).max()))
        polys, lo, hi = [p * scale for p in polys], lo * scale, hi * scale
        placed = False
        for _try in range(_PLACEMENT_TRIES):
            centre = rng.uniform(1 - lo, np.array([w, h]) - 1 - hi)  # keeps the shape inside the image
            abs_polys = [p + centre for p in polys]
            x0, y0 = (max(int(v), 0) for v in np.floor(centre + lo) - 1)
            x1, y1 = (int(v) for v in np.minimum(np.ceil(centre + hi) + 2, [w, h]))
            cover = _fill_mask(abs_polys, (x0, y0), (y1 - y0, x1 - x0))
            inside = cover >= 128
            n_pix = int(inside.sum())
            if n_pix < 4:
                break  # too thin to show (never at the default sizes): drop it
            sub = owner[y0:y1, x0:x1]
            hidden = np.bincount(sub[inside].astype(np.int64) + 1, minlength=len(cats) + 1)[1:]
            if all(v - c >= _MIN_VISIBLE * a for v, c, a in zip(visible, hidden, full_area)):
                placed = True
                break
        if not placed:
            continue  # no place that keeps the earlier objects visible enough: drop it
        visible = [v - int(c) for v, c in zip(visible, hidden)]
        sub[inside] = len(cats)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        bx, by = x0 + cols[0], y0 + rows[0]
        boxes.append((float(bx), float(by), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)))
        cats.append(int(cat["id"]))
        full_area.append(n_pix)
        visible.append(n_pix)
        _paint(img, cover, (x0, y0), centre, s * scale, rng)
    return [SynthObject(c, b, float(v)) for c, b, v in zip(cats, boxes, visible)]


def _paint(
    img: np.ndarray,
    cover: np.ndarray,
    origin: tuple[int, int],
    centre: np.ndarray,
    s: float,
    rng: np.random.Generator,
) -> None:
    """Composite one object (coverage ``cover`` at ``origin``) with a contrasting colour."""
    x0, y0 = origin
    roi = img[y0 : y0 + cover.shape[0], x0 : x0 + cover.shape[1]].astype(np.float32)
    under = roi[cover >= 128].mean(axis=0)
    best, best_d = None, -1.0
    for _ in range(8):  # colour is random, but must stand out from what lies under the object
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - under))
        if d > best_d:
            best, best_d = c, d
        if d >= _MIN_CONTRAST:
            break
    fill = np.broadcast_to(best.astype(np.float32), roi.shape).copy()
    if rng.random() < 0.6:  # linear shading across the object
        phi, amp = rng.uniform(0, 2 * np.pi), rng.uniform(10, 35)
        ys, xs = np.mgrid[0 : roi.shape[0], 0 : roi.shape[1]].astype(np.float32)
        ramp = (xs + x0 - centre[0]) * math.cos(phi) + (ys + y0 - centre[1]) * math.sin(phi)
        ramp /= max(s / 2, 1.0)
        fill += (np.clip(ramp, -1, 1) * np.float32(amp))[..., None]
    alpha = cover.astype(np.float32) / 255
    if s >= 20 and rng.random() < 0.35:  # an outline of 1-2 px, inside the object's mask
        eroded = cv2.erode(cover, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3)))
        edge = (cover.astype(np.float32) - eroded.astype(np.float32))[..., None] / 255
        k = rng.uniform(0.2, 0.6)
        outline = best * k if rng.random() < 0.5 else 255 - (255 - best) * k  # darker or lighter
        fill += edge * (outline.astype(np.float32) - fill)
    roi += alpha[..., None] * (fill - roi)
    img[y0 : y0 + cover.shape[0], x0 : x0 + cover.shape[1]] = np.clip(roi, 0, 255).astype(np.uint8)


def render_synthetic_image(
    seed: int,
    index: int,
    image_size: tuple[int, int] = (320, 416),
    size_jitter: float = 0.15,
    min_object_size: float = 12.0,
    max_object_frac: float = 0.6,
) -> tuple[np.ndarray, list[SynthObject]]:
    """Render image ``index`` (0-based) of the dataset with ``seed``; depends on nothing else.

    ``image_size`` is (height, width) in pixels; each side is scaled by its own random factor in
    ``[1 - size_jitter, 1 + size_jitter]``. Returns the image (H x W x 3 uint8, BGR order for cv2,
    before JPEG compression) and its objects (boxes in pixels of this image).
    """
    rng = np.random.default_rng([seed, _STREAM, index])
    h = int(round(image_size[0] * rng.uniform(1 - size_jitter, 1 + size_jitter)))
    w = int(round(image_size[1] * rng.uniform(1 - size_jitter, 1 + size_jitter)))
    img = _background(rng, h, w)
    _draw_distractors(img, rng)
    num = 0 if rng.random() < _EMPTY_IMAGE_PROB else int(rng.integers(1, _MAX_OBJECTS + 1))
    objects = _place_objects(img, rng, num, min_object_size, max_object_frac)
    for _ in range(int(rng.integers(0, 3))):  # a few thin strokes across the objects
        _draw_stroke(img, rng, thin=True)
    noise = (rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(2, 8))).astype(np.int16)
    img = np.clip(img.astype(np.int16) + noise[..., None], 0, 255).astype(np.uint8)  # grey sensor noise
    return img, objects


# --- dataset writing ------------------------------------------------------------------------------


def _check_args(
    num_images: Any,
    seed: Any,
    val_fraction: Any,
    image_size: Any,
    size_jitter: Any,
    min_object_size: Any,
    max_object_frac: Any,
    jpeg_quality: Any,
) -> None:
    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(num_images) or num_images < 1:
        raise UserError(f"the number of images (--images) must be an integer >= 1, got {num_images!r}")
    if not is_int(seed) or seed < 0:
        raise UserError(f"the seed (--seed) must be an integer >= 0, got {seed!r}")
    if not is_number(val_fraction) or not 0.0 < float(val_fraction) < 1.0:
        raise UserError(f"the val fraction (--val-fraction) must be strictly between 0 and 1, got {val_fraction!r}")
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(is_int(v) and _MIN_IMAGE_SIDE <= v <= 4096 for v in image_size)
    ):
        raise UserError(
            f"image_size must be (height, width), integers in [{_MIN_IMAGE_SIDE}, 4096], got {image_size!r}"
        )
    if not is_number(size_jitter) or not 0.0 <= float(size_jitter) <= 0.5:
        raise UserError(f"size_jitter must be in [0, 0.5], got {size_jitter!r}")
    smallest_side = min(image_size) * (1 - size_jitter)
    if smallest_side < _MIN_IMAGE_SIDE:
        raise UserError(
            f"image_size {tuple(image_size)} with size_jitter {size_jitter} goes below {_MIN_IMAGE_SIDE} px"
        )
    if not is_number(max_object_frac) or not 0.05 <= float(max_object_frac) <= 0.9:
        raise UserError(f"max_object_frac must be in [0.05, 0.9], got {max_object_frac!r}")
    largest = max_object_frac * smallest_side
    if not is_number(min_object_size) or not 4 <= float(min_object_size) <= largest:
        raise UserError(
            f"min_object_size must be between 4 px and max_object_frac x the smallest image side "
            f"({largest:.0f} px), got {min_object_size!r}"
        )
    if not is_int(jpeg_quality) or not 1 <= jpeg_quality <= 100:
        raise UserError(f"jpeg_quality must be an integer in [1, 100], got {jpeg_quality!r}")


def _check_destination(final: Path, overwrite: bool) -> None:
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise UserError(f"{final} exists and is not a folder: choose another output folder")
        if not overwrite and any(final.iterdir()):
            raise UserError(f"{final} is not empty: choose another folder or pass --overwrite to replace it")


def generate_synthetic_coco(
    out_dir: str | os.PathLike[str],
    num_images: int,
    seed: int,
    val_fraction: float = 0.2,
    image_size: tuple[int, int] = (320, 416),
    size_jitter: float = 0.15,
    min_object_size: float = 12.0,
    max_object_frac: float = 0.6,
    overwrite: bool = False,
    jpeg_quality: int = 90,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a synthetic COCO dataset (train + val) to ``out_dir``; return a summary.

    ``image_size`` is (height, width) in pixels, jittered per image and side by ``size_jitter``.
    Object sizes (geometric mean of the unrotated width and height, pixels) are log-uniform from
    ``min_object_size`` to ``max_object_frac`` of the image's short side (the cap also bounds the
    rotated box's long side).
    ``round(num_images * val_fraction)`` images (at least 1 and at most num_images - 1 when
    num_images >= 2; none when num_images == 1) go to val. The same arguments give byte-identical
    JSON and images. Raises ``UserError`` for invalid arguments or a non-empty ``out_dir`` without
    ``overwrite=True`` (then nothing is written). ``progress``: a bar on a terminal, lines in logs (stderr).

    Summary: ``{"out_dir", "seed", "num_images", "categories": {id: name}, "splits": {split:
    {"images", "annotations", "empty_images", "per_class": {name: count}}}}``.
    """
    _check_args(
        num_images, seed, val_fraction, image_size, size_jitter, min_object_size, max_object_frac, jpeg_quality
    )
    image_size = (int(image_size[0]), int(image_size[1]))
    final = Path(out_dir).absolute()
    _check_destination(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    n_val = min(max(round(num_images * val_fraction), 1), num_images - 1) if num_images >= 2 else 0
    split_of = ["train"] * (num_images - n_val) + ["val"] * n_val
    names = {c["id"]: c["name"] for c in SYNTH_CATEGORIES}
    categories = [dict(c) for c in SYNTH_CATEGORIES]
    info = {
        "description": "gflv2_deploy synthetic shapes",
        "version": str(SYNTH_VERSION),
        "seed": int(seed),
        "num_images": int(num_images),
        "image_size": [int(v) for v in image_size],
        "size_jitter": float(size_jitter),
        "min_object_size": float(min_object_size),
        "max_object_frac": float(max_object_frac),
    }
    datasets = {
        split: {"info": info, "licenses": [], "images": [], "annotations": [], "categories": categories}
        for split in ("train", "val")
    }
    summary_splits = {
        split: {"images": 0, "annotations": 0, "empty_images": 0, "per_class": dict.fromkeys(names.values(), 0)}
        for split in ("train", "val")
    }

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".synth-tmp", dir=final.parent))
    try:
        for split in ("train", "val"):
            (tmp / split).mkdir()
        (tmp / "annotations").mkdir()
        ann_id = 0
        for index in progress_iter(range(num_images), num_images, "synth", progress):
            image_id, split = index + 1, split_of[index]
            img, objects = render_synthetic_image(
                int(seed), index, image_size, float(size_jitter), float(min_object_size), float(max_object_frac)
            )
            file_name = f"{image_id:012d}.jpg"
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise RuntimeError("cv2.imencode failed to encode a JPEG")
            (tmp / split / file_name).write_bytes(buf.tobytes())
            ds, summ = datasets[split], summary_splits[split]
            height, width = img.shape[:2]
            ds["images"].append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            summ["images"] += 1
            summ["empty_images"] += int(not objects)
            for obj in objects:
                ann_id += 1
                ds["annotations"].append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": obj.category_id,
                        "bbox": list(obj.bbox),
                        "area": obj.area,
                        "iscrowd": 0,
                        "segmentation": [],
                    }
                )
                summ["annotations"] += 1
                summ["per_class"][names[obj.category_id]] += 1
        for split, ds in datasets.items():
            write_json_atomic(tmp / "annotations" / f"instances_{split}.json", ds, indent=None)
        _commit(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out_dir": str(final),
        "seed": int(seed),
        "num_images": int(num_images),
        "categories": names,
        "splits": summary_splits,
    }


def _commit(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` folder onto ``final``, replacing an old one only when allowed."""
    _check_destination(final, overwrite)  # it may have been filled while we were generating
    if not (final.exists() or final.is_symlink()):
        os.replace(tmp, final)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".synth-old", dir=final.parent))
    os.replace(final, trash / "old")
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(trash / "old", final)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
