"""The report's pictures: the worst compared images and the most-missed evaluated ones, drawn by ``data/draw.py``.

Each picture is read from the path its result recorded, shrunk to at most ``PICTURE_MAX_SIDE`` pixels on
its long side BEFORE drawing (so lines and labels are sized for what is shown), drawn, and embedded as a
JPEG ``data:`` URI. Why these sizes: a report stays a file one can mail or attach to a CI run even with a
hundred pictures. A 560-pixel JPEG at quality 75 of a COCO photo is 50 KB as base64 (median of the 50 test
photos; 90 KB at most), more under many drawn boxes; ``encode_jpeg`` guarantees ``MAX_PICTURE_BYTES``
(120 KB) by lowering the quality, then the size, of the rare picture above it. docs/reports.md states
the bound of the whole page and a test checks it over 90 pictures. A picture that cannot be read
(moved, another machine) becomes a note in the page, never a broken image.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy.data.draw import class_name, draw_boxes
from gflv2_deploy.eval.confusion import CONFUSED, FALSE_POSITIVE, FOUND, MISSED

__all__ = ["PICTURE_MAX_SIDE", "JPEG_QUALITY", "MAX_PICTURE_BYTES", "Picture", "resolve_picture", "encode_jpeg",
           "compare_picture", "missed_picture"]

PICTURE_MAX_SIDE = 560  # px: three pictures side by side on a 1280-pixel laptop screen, sharp enough to read labels
JPEG_QUALITY = 75
MAX_PICTURE_BYTES = 120_000  # characters of one picture's data URI: the encoder lowers quality or size to stay under

_BGR = {"ref": (180, 111, 31), "test": (14, 127, 240), "found": (44, 160, 44), "missed": (40, 39, 214),
        "confused": (0, 165, 255), "false positive": (189, 64, 189)}  # ref / test as plots.REF_COLOR / TEST_COLOR


@dataclass(frozen=True)
class Picture:
    """An embedded picture (``uri``, size in pixels) or, when its file could not be read, ``missing`` (why)."""

    uri: str | None
    width: int
    height: int
    alt: str
    caption: str
    missing: str | None = None


def resolve_picture(path: str | None, source: str | os.PathLike[str] | None) -> Path | None:
    """The file a result's picture path points to: as written (absolute, or from the current folder), else
    relative to the result file's folder; None when neither exists."""
    if not path:
        return None
    candidates = [Path(path)]
    if source is not None and not Path(path).is_absolute():
        candidates.append(Path(source).parent / path)
    return next((c for c in candidates if c.is_file()), None)


def _load(path: str | None, source: Any, max_side: int) -> tuple[np.ndarray | None, float, str | None]:
    """(picture shrunk to ``max_side``, the scale applied, None) or (None, 0, why it could not be read)."""
    import cv2

    from gflv2_deploy.data.image_io import read_image
    from gflv2_deploy.errors import UserError

    found = resolve_picture(path, source)
    if found is None:
        return None, 0.0, f"picture not found: {path or '(no path recorded)'}"
    try:
        image = read_image(found)
    except UserError as exc:
        return None, 0.0, str(exc)
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale, None


def encode_jpeg(image_bgr: np.ndarray, quality: int = JPEG_QUALITY, max_bytes: int = MAX_PICTURE_BYTES) -> str:
    """``data:image/jpeg;base64,...`` of an H x W x 3 uint8 BGR picture, at most ``max_bytes`` characters.

    A picture over the limit at ``quality`` (a busy photo under many boxes) is encoded again at lower
    qualities, down to 45, then shrunk by 0.8 at a time until it fits: the page size bound holds for any picture.
    """
    import cv2

    image = image_bgr
    qualities = [q for q in (quality, 65, 55, 45) if q <= quality] or [quality]
    while True:
        for q in qualities:
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
            if not ok:
                raise ValueError("JPEG encoding failed")
            uri = "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")
            if len(uri) <= max_bytes or min(image.shape[:2]) < 16:
                return uri
        size = (max(1, int(image.shape[1] * 0.8)), max(1, int(image.shape[0] * 0.8)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        qualities = [qualities[-1]]


def _boxes(side: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(side.get("boxes") or np.zeros((0, 4)), np.float64).reshape(-1, 4)


def compare_picture(detail: Mapping[str, Any], class_names: Sequence[str], score_thr: float = 0.3,
                    source: Any = None, max_side: int = PICTURE_MAX_SIDE) -> Picture:
    """One worst image of a comparison, reference and test overlaid (``detections.worst_details`` record).

    Matched detections: thin boxes, reference blue under test orange (identical boxes show orange only).
    Unmatched ones: thick dashed boxes in their side's colour, labelled with class and score. Only
    detections scoring >= ``score_thr`` are drawn; the caption counts the unmatched ones below it.
    """
    title = f"image {detail.get('image')}"
    unmatched = (detail["ref"] - detail["matched"]) + (detail["test"] - detail["matched"])
    facts = (f"{unmatched} unmatched (reference {detail['ref'] - detail['matched']}, test {detail['test'] - detail['matched']}); "
             f"max |Δ score| {detail['max_score_delta']:.2g}; max |Δ box| {detail.get('max_box_delta', 0.0):.2g} px")
    image, scale, why = _load(detail.get("path"), source, max_side)
    if image is None:
        return Picture(None, 0, 0, title, f"{title}: {facts}", why)
    boxes, texts, colors, dashed, hidden = [], [], [], [], 0
    for matched_pass in (True, False):  # matched first, unmatched on top
        for side in ("ref", "test"):
            dets = detail[f"{side}_detections"]
            for box, score, label, matched in zip(_boxes(dets), dets["scores"], dets["labels"], dets["matched"]):
                if matched != matched_pass:
                    continue
                if score < score_thr:
                    hidden += 0 if matched else 1
                    continue
                boxes.append(box * scale)
                colors.append(_BGR[side])
                dashed.append(not matched)
                texts.append(None if matched else f"{class_name(class_names, int(label))} {score:.2f}")
    drawn = draw_boxes(image, np.asarray(boxes).reshape(-1, 4), texts, colors, dashed=dashed, thick=dashed)
    below = f"; {hidden} unmatched below score {score_thr:g} not drawn" if hidden else ""
    return Picture(encode_jpeg(drawn), drawn.shape[1], drawn.shape[0], title, f"{title}: {facts}{below}")


def missed_picture(record: Mapping[str, Any], class_names: Sequence[str], source: Any = None,
                   max_side: int = PICTURE_MAX_SIDE) -> Picture:
    """One image of an evaluation's ``missed_images``: its objects coloured by outcome, and its false positives.

    Found objects: thin green. Missed: thick dashed red "missed <class>". Confused: thick dashed amber
    "<true> as <predicted>". False positives (kept detections matching no object): thin dashed purple, without
    a label, so that the misses stay readable in a busy picture.
    """
    title = f"image {record.get('image')}"
    facts = f"{record['missed']} missed, {record['confused']} confused"
    image, scale, why = _load(record.get("path"), source, max_side)
    if image is None:
        return Picture(None, 0, 0, title, f"{title}: {facts}", why)
    gt, dets = record["gt"], record["detections"]
    predicted = gt.get("predicted") or [-1] * len(gt["labels"])
    boxes, texts, colors, dashed = [], [], [], []
    for box, label, status in zip(_boxes(dets), dets["labels"], dets["status"]):
        if status == FALSE_POSITIVE:
            boxes.append(box * scale)
            texts.append(None)
            colors.append(_BGR["false positive"])
            dashed.append(True)
    for box, label, status, pred in zip(_boxes(gt), gt["labels"], gt["status"], predicted):
        name = class_name(class_names, int(label))
        boxes.append(box * scale)
        dashed.append(status != FOUND)
        if status == MISSED:
            texts.append(f"missed {name}")
            colors.append(_BGR["missed"])
        elif status == CONFUSED:
            texts.append(f"{name} as {class_name(class_names, int(pred))}")
            colors.append(_BGR["confused"])
        else:
            texts.append(None)
            colors.append(_BGR["found"])
    thick = [d and t is not None for d, t in zip(dashed, texts)]
    drawn = draw_boxes(image, np.asarray(boxes).reshape(-1, 4), texts, colors, dashed=dashed, thick=thick)
    return Picture(encode_jpeg(drawn), drawn.shape[1], drawn.shape[0], title, f"{title}: {facts}")
