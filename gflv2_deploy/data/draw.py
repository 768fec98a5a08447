"""Drawing detections on a picture for demos and reports (boxes, class names, scores)."""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.errors import UserError

__all__ = ["class_color", "class_name", "draw_boxes", "draw_detections"]

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


def _check_image(image_bgr: np.ndarray, who: str) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        shape = getattr(image_bgr, "shape", None)
        raise UserError(f"{who} needs an H x W x 3 BGR image, got shape {shape}")
    if image_bgr.dtype != np.uint8:
        raise UserError(f"{who} needs a uint8 image, got {image_bgr.dtype}")


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
    _check_image(image_bgr, "draw_detections")
    scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(dets.labels).reshape(-1)
    keep = np.flatnonzero(scores >= score_thr)
    order = keep[np.argsort(scores[keep], kind="stable")]
    texts = [f"{class_name(class_names, int(labels[i]))} {scores[i]:.2f}" for i in order]
    return draw_boxes(image_bgr, boxes[order], texts, [class_color(int(labels[i])) for i in order])


def class_name(class_names: Sequence[str], label: int) -> str:
    """``class_names[label]``, or the number itself for a label outside the list."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def draw_boxes(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    texts: Sequence[str | None],
    colors: Sequence[tuple[int, int, int]],
    dashed: Sequence[bool] | None = None,
    thick: Sequence[bool] | None = None,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with ``boxes`` drawn in order (later ones on top).

    boxes: K x 4 (x1, y1, x2, y2) pixels of this picture (non-finite ones are skipped); texts: K labels
    (None or "" for a bare box), drawn on a filled tag of the box's colour; colors: K BGR tuples;
    dashed / thick: K flags for boxes that must stand out (e.g. unmatched or missed ones). Line width
    and font size follow the picture size. Returns an H x W x 3 uint8 BGR array.
    """
    _check_image(image_bgr, "draw_boxes")
    canvas = np.ascontiguousarray(image_bgr).copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    font_scale = max(0.4, min(height, width) / 1000)
    font_thickness = max(1, thickness - 1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for index, box in enumerate(boxes):
        if not np.all(np.isfinite(box)):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in np.clip(box, -_COORD_LIMIT, _COORD_LIMIT))
        color = tuple(int(c) for c in colors[index])
        width_px = thickness * 2 if thick is not None and thick[index] else thickness
        if dashed is not None and dashed[index]:
            _dashed_rectangle(canvas, (x1, y1), (x2, y2), color, width_px, dash=max(4, 4 * width_px))
        else:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, width_px, cv2.LINE_AA)
        text = texts[index]
        if not text:
            continue
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, font_thickness)
        box_h = text_h + baseline + 2 * font_thickness
        # Above the box when there is room, otherwise just inside its top edge.
        top = y1 - box_h if y1 - box_h >= 0 else max(y1, 0)
        left = min(max(x1, 0), max(width - text_w - 2, 0))
        cv2.rectangle(canvas, (left, top), (left + text_w + 2, top + box_h), color, cv2.FILLED)
        cv2.putText(canvas, text, (left + 1, top + text_h + font_thickness), _FONT, font_scale, _text_color(color),
                    font_thickness, cv2.LINE_AA)
    return canvas


def _dashed_rectangle(canvas: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color: tuple[int, int, int],
                      thickness: int, dash: int) -> None:
    """A rectangle of dashes ``dash`` pixels long with equal gaps (OpenCV draws only solid lines)."""
    (x1, y1), (x2, y2) = p1, p2
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, max(length, 1), 2 * dash):
            end = min(start + dash, length)
            f0, f1 = start / max(length, 1), end / max(length, 1)
            cv2.line(canvas, (round(ax + (bx - ax) * f0), round(ay + (by - ay) * f0)),
                     (round(ax + (bx - ax) * f1), round(ay + (by - ay) * f1)), color, thickness, cv2.LINE_AA)


def _text_color(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background_bgr`` (Rec. 601 luma)."""
    blue, green, red = background_bgr
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return (0, 0, 0) if luma > 140 else (255, 255, 255)

