"""COCO-format dataset reading: find the files, index images and boxes, map category ids.

Layout convention used across the project::

    <root>/annotations/instances_<split>.json     (COCO "instances" JSON)
    <root>/<split>/<file_name>                    (the images it lists)

Boxes are returned as x1 y1 x2 y2 in original-image pixels, converted from COCO's x y w h as
``x2 = x + w``, ``y2 = y + h`` (no "+1": COCO boxes are continuous coordinates). Category ids
(non-contiguous, 1..90 for COCO) map to contiguous labels 0..C-1 in ascending id order, over every
category the JSON lists (present in the images or not), so real COCO gives 80 classes.

Bad input policy (what happens to each kind of bad input):

- The JSON is missing, unreadable, not JSON, or not COCO (no ``images`` / ``categories`` list,
  malformed or duplicate categories): ``UserError``. A JSON without an ``annotations`` list (a
  test-dev style image list) is accepted: every image is then a negative.
- An image entry without a usable ``id`` / ``file_name`` / positive ``width`` and ``height``, a
  repeated image id, or an image whose file is missing on disk: the image is skipped.
- An annotation whose box is malformed, degenerate (w <= 0 or h <= 0 after clipping to the image)
  or entirely outside the image, whose category id is not among the listed categories, or whose
  image id is not listed: the annotation is dropped. Kept boxes are clipped to the image.
  Annotations of a skipped image go with it (reported once, as the image).
- Each skipped or dropped item appends one line to ``CocoDataset.problems``; after loading, one
  ``UserWarning`` summarises them (count and the first few), so a large bad dataset does not flood
  the log.
- Images without any annotation are kept: they are valid negatives.
- If no usable image remains: ``UserError("... dataset has no usable images ...")``.

Crowd annotations (``iscrowd=1``) are kept apart in ``crowd_boxes``; they are neither positives
nor negatives for training and are excluded from the evaluation ground truth by COCOeval itself.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gflv2_deploy.errors import UserError

_MAX_PROBLEMS_IN_WARNING = 5


def find_coco_files(data_dir: str | os.PathLike[str], split: str | None = None) -> tuple[Path, Path]:
    """Locate ``(instances json, image folder)`` under a COCO-layout ``data_dir``.

    With ``split`` (e.g. ``"val2017"``): ``<data_dir>/annotations/instances_<split>.json`` and
    ``<data_dir>/<split>/``. Without it, the single ``instances_*.json`` in ``annotations/`` is used;
    several of them is ambiguous and raises ``UserError`` listing the splits to choose from.
    Raises ``UserError`` when the folder, the JSON or the image folder is missing.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    ann_dir = root / "annotations"
    available = sorted(p.name[len("instances_"): -len(".json")] for p in ann_dir.glob("instances_*.json"))
    if split is None:
        if not available:
            raise UserError(
                f"no annotations/instances_<split>.json under {root}: expected the COCO layout "
                "<root>/annotations/instances_<split>.json with images in <root>/<split>/"
            )
        if len(available) > 1:
            raise UserError(
                f"{root} holds several splits ({', '.join(available)}): choose one with --split"
            )
        split = available[0]
    ann_file = ann_dir / f"instances_{split}.json"
    if not ann_file.is_file():
        hint = f"available splits: {', '.join(available)}" if available else "no instances_*.json found"
        raise UserError(f"annotation file not found: {ann_file} ({hint})")
    img_dir = root / split
    if not img_dir.is_dir():
        raise UserError(f"image folder not found: {img_dir} (expected the images of {ann_file.name} there)")
    return ann_file, img_dir


@dataclass(frozen=True)
class ImageInfo:
    """One image entry: its COCO id, file name (relative to the image folder) and size in pixels."""

    image_id: int
    file_name: str
    width: int
    height: int


@dataclass
class Annotations:
    """Ground truth of one image in original-image pixels.

    boxes: K x 4 float32 (x1, y1, x2, y2), non-crowd, clipped to the image;
    labels: K int64 contiguous class indices 0..C-1;
    crowd_boxes: M x 4 float32 (x1, y1, x2, y2) of ``iscrowd=1`` regions (no labels: ignored regions).
    """

    boxes: np.ndarray
    labels: np.ndarray
    crowd_boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class CocoDataset:
    """Index of a COCO "instances" JSON and its image folder (see the module docstring for bad input).

    Attributes:
        ann_file, img_dir: the paths it was built from.
        image_ids: sorted list of usable image ids.
        num_classes: C, the number of listed categories.
        class_names: C names in contiguous label order (ascending category id).
        label_to_cat_id: {label 0..C-1: COCO category id}; cat_id_to_label is its inverse.
        problems: one line per skipped image or dropped annotation.
    """

    def __init__(self, ann_file: str | os.PathLike[str], img_dir: str | os.PathLike[str]) -> None:
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        self.problems: list[str] = []
        self._problem_kinds: Counter[str] = Counter()
        self._skipped_image_ids: set[int] = set()

        data = _read_coco_json(self.ann_file)
        categories = _parse_categories(data["categories"], self.ann_file)
        self.class_names: tuple[str, ...] = tuple(name for _, name in categories)
        self.label_to_cat_id: dict[int, int] = {label: cat_id for label, (cat_id, _) in enumerate(categories)}
        self.cat_id_to_label: dict[int, int] = {cat_id: label for label, cat_id in self.label_to_cat_id.items()}
        self.num_classes: int = len(categories)

        self._infos: dict[int, ImageInfo] = self._parse_images(data["images"])
        self._annotations: dict[int, Annotations] = self._parse_annotations(data.get("annotations", []))
        self.image_ids: list[int] = sorted(self._infos)

        if self.problems:
            shown = "; ".join(self.problems[:_MAX_PROBLEMS_IN_WARNING])
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self._problem_kinds.items()))
            more = "" if len(self.problems) <= _MAX_PROBLEMS_IN_WARNING else "; ..."
            warnings.warn(
                f"{self.ann_file.name}: skipped {len(self.problems)} bad item(s) ({kinds}): {shown}{more} "
                "(all listed in dataset.problems)",
                UserWarning,
                stacklevel=2,
            )
        if not self.image_ids:
            raise UserError(
                f"dataset has no usable images: {self.ann_file} lists {len(data['images'])} image(s), none usable "
                f"with image folder {self.img_dir} (first problem: {self.problems[0] if self.problems else 'none'})"
            )

    # --- public accessors ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, image_id: int) -> ImageInfo:
        """Id, file name and original size (pixels) of a usable image; KeyError for other ids."""
        return self._infos[image_id]

    def image_path(self, image_id: int) -> Path:
        """Path of the image file of ``image_id``."""
        return self.img_dir / self._infos[image_id].file_name

    def annotations(self, image_id: int) -> Annotations:
        """Ground truth of ``image_id`` (fresh copies: callers may modify them)."""
        ann = self._annotations.get(image_id)
        if ann is None:
            if image_id not in self._infos:
                raise KeyError(image_id)
            return Annotations(_empty_boxes(), np.zeros((0,), np.int64), _empty_boxes())
        return Annotations(ann.boxes.copy(), ann.labels.copy(), ann.crowd_boxes.copy())

    # --- parsing ---------------------------------------------------------------------------------
    def _problem(self, kind: str, message: str) -> None:
        self._problem_kinds[kind] += 1
        self.problems.append(f"{kind}: {message}")

    def _parse_images(self, images: list[Any]) -> dict[int, ImageInfo]:
        on_disk = _list_files(self.img_dir)
        infos: dict[int, ImageInfo] = {}
        for entry in images:
            info = _image_info_or_none(entry)
            if info is None:
                self._problem("malformed image entry", _short(entry))
                if isinstance(entry, dict) and _is_int(entry.get("id")):
                    self._skipped_image_ids.add(entry["id"])
                continue
            if info.image_id in infos:
                self._problem("duplicate image id", f"image id {info.image_id} ({info.file_name}) listed twice")
                continue
            # One directory listing instead of a stat per image; names with sub-folders are stat'ed.
            if "/" in info.file_name:
                found = (self.img_dir / info.file_name).is_file()
            else:
                found = info.file_name in on_disk
            if not found:
                self._problem("missing image file", f"image id {info.image_id}: {self.img_dir / info.file_name}")
                self._skipped_image_ids.add(info.image_id)
                continue
            infos[info.image_id] = info
        return infos

    def _parse_annotations(self, annotations: Any) -> dict[int, Annotations]:
        if not isinstance(annotations, list):
            raise UserError(f"{self.ann_file} is not a COCO instances file: 'annotations' is not a list")
        boxes: dict[int, list[tuple[float, float, float, float]]] = {}
        labels: dict[int, list[int]] = {}
        crowd: dict[int, list[tuple[float, float, float, float]]] = {}
        for ann in annotations:
            if not isinstance(ann, dict):
                self._problem("malformed annotation", _short(ann))
                continue
            ann_id, image_id, cat_id = ann.get("id", "?"), ann.get("image_id"), ann.get("category_id")
            info = self._infos.get(image_id) if _is_int(image_id) else None
            if info is None:
                if image_id not in self._skipped_image_ids:  # a skipped image was reported already
                    self._problem("annotation of unknown image", f"annotation {ann_id}, image id {image_id!r}")
                continue
            label = self.cat_id_to_label.get(cat_id) if _is_int(cat_id) else None
            if label is None:
                self._problem("unknown category id", f"annotation {ann_id}, category id {cat_id!r}")
                continue
            box = _clipped_xyxy(ann.get("bbox"), info.width, info.height)
            if box is None:
                self._problem(
                    "degenerate box",
                    f"annotation {ann_id} of image {info.image_id}: bbox {ann.get('bbox')} "
                    f"in a {info.width}x{info.height} image",
                )
                continue
            if ann.get("iscrowd", 0):
                crowd.setdefault(info.image_id, []).append(box)
            else:
                boxes.setdefault(info.image_id, []).append(box)
                labels.setdefault(info.image_id, []).append(label)
        result: dict[int, Annotations] = {}
        for image_id in set(boxes) | set(crowd):
            result[image_id] = Annotations(
                boxes=_as_boxes(boxes.get(image_id, [])),
                labels=np.asarray(labels.get(image_id, []), dtype=np.int64),
                crowd_boxes=_as_boxes(crowd.get(image_id, [])),
            )
        return result


def read_coco_ids(ann_file: str | os.PathLike[str]) -> tuple[dict[str, int], tuple[int, ...]]:
    """({picture base name: image id}, category ids in label order) of a COCO instances JSON, without its images.

    What a results file needs to name pictures and classes as the ground truth does (labels map to categories
    in ascending id order, as ``CocoDataset.label_to_cat_id``). Image entries without a usable ``id`` and
    ``file_name`` are left out. UserError for a file that is not COCO, or two images with one base name.
    """
    path = Path(ann_file)
    data = _read_coco_json(path)
    cat_ids = tuple(cat_id for cat_id, _ in _parse_categories(data["categories"], path))
    by_name: dict[str, int] = {}
    for entry in data["images"]:
        if isinstance(entry, dict) and _is_int(entry.get("id")) and isinstance(entry.get("file_name"), str):
            name = entry["file_name"].replace("\\", "/").rsplit("/", 1)[-1]
            if by_name.setdefault(name, entry["id"]) != entry["id"]:
                raise UserError(f"{path}: two images are named {name}: pictures cannot be matched to image ids")
    return by_name, cat_ids


# --- helpers -------------------------------------------------------------------------------------
def _read_coco_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"annotation file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read COCO annotation file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
        data.get("categories"), list
    ):
        raise UserError(
            f"{path} is not a COCO instances file: expected a JSON object with 'images' and 'categories' lists"
        )
    return data


def _parse_categories(categories: list[Any], path: Path) -> list[tuple[int, str]]:
    """[(category id, name)] sorted by id; UserError when empty, malformed or duplicated."""
    parsed: dict[int, str] = {}
    for cat in categories:
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise UserError(f"{path}: malformed category entry {_short(cat)} (needs an integer 'id' and a 'name')")
        if cat["id"] in parsed:
            raise UserError(f"{path}: category id {cat['id']} is listed twice")
        parsed[cat["id"]] = cat["name"]
    if not parsed:
        raise UserError(f"{path} lists no categories: cannot define the classes")
    return sorted(parsed.items())


def _image_info_or_none(entry: Any) -> ImageInfo | None:
    if not isinstance(entry, dict):
        return None
    image_id, file_name = entry.get("id"), entry.get("file_name")
    width, height = entry.get("width"), entry.get("height")
    if not _is_int(image_id) or not isinstance(file_name, str) or not file_name:
        return None
    if not _is_int(width) or not _is_int(height) or width <= 0 or height <= 0:
        return None
    return ImageInfo(image_id=image_id, file_name=file_name, width=width, height=height)


def _clipped_xyxy(bbox: Any, width: int, height: int) -> tuple[float, float, float, float] | None:
    """COCO [x, y, w, h] -> (x1, y1, x2, y2) clipped to [0, width] x [0, height]; None if unusable.

    Unusable: not 4 finite numbers, or no positive area left after clipping (which covers w <= 0,
    h <= 0 and boxes entirely outside the image).
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _list_files(folder: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(folder) if entry.is_file()}
    except OSError:
        return set()


def _as_boxes(rows: list[tuple[float, float, float, float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(obj: Any, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
