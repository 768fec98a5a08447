"""Drawing detections on a picture for demos and reports (boxes, class names, scores)."""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.errors import UserError

__all__ = ["class_color", "draw_detections"]

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_COORD_LIMIT = 1 << 20  # keep coordinates well inside OpenCV's int range for absurd boxes


def class_color(label: int) -> tuple[int, int, int]:
    """Deterministic BGR colour (0-255 ints) of class ``label``.

    Hues step by the golden ratio, so neighbouring class indices get clearly different colours.
    """
    hue = (int(label) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(round(blue * 255)), int(round(green * 255)), int(round(red * 255))


def draw_detections(
    image_bgr: np.ndarray,
    dets: spec.Detections,
    class_names: Sequence[str],
    score_thr: float = 0.3,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with the detections scoring at least ``score_thr`` drawn.

    image_bgr: H x W x 3 uint8 BGR; it is not modified. dets: boxes K x 4 (x1, y1, x2, y2) in pixels
    of this picture (map network outputs back with ``detections_to_original`` first), scores K,
    labels K (indices into ``class_names``; an index outside it is shown as the number). Each box gets
    its class colour and a label "name 0.87"; higher-scoring boxes are drawn last, on top.
    Returns an H x W x 3 uint8 BGR array.
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        shape = getattr(image_bgr, "shape", None)
        raise UserError(f"draw_detections needs an H x W x 3 BGR image, got shape {shape}")
    if image_bgr.dtype != np.uint8:
        raise UserError(f"draw_detections needs a uint8 image, got {image_bgr.dtype}")
    canvas = np.ascontiguousarray(image_bgr).copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.4, min(height, width) / 1000)
    font_thickness = max(1, thickness - 1)

    scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(dets.labels).reshape(-1)
    keep = np.flatnonzero(scores >= score_thr)
    for index in keep[np.argsort(scores[keep], kind="stable")]:
        box = boxes[index]
        if not np.all(np.isfinite(box)):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in np.clip(box, -_COORD_LIMIT, _COORD_LIMIT))
        label = int(labels[index])
        color = class_color(label)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)

        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        text = f"{name} {scores[index]:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, font_thickness)
        box_h = text_h + baseline + 2 * font_thickness
        # Above the box when there is room, otherwise just inside its top edge.
        top = y1 - box_h if y1 - box_h >= 0 else max(y1, 0)
        left = min(max(x1, 0), max(width - text_w - 2, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w + 2, top + box_h), color, cv2.FILLED)
        cv2.putText(
            canvas,
            text,
            (left + 1, top + text_h + font_thickness),
            _FONT,
            font_scale,
            _text_color(color),
            font_thickness,
            cv2.LINE_AA,
        )
    return canvas


def _text_color(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background_bgr`` (Rec. 601 luma)."""
    blue, green, red = background_bgr
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return (0, 0, 0) if luma > 140 else (255, 255, 255)

