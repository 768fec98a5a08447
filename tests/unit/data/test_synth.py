"""The synthetic COCO generator: determinism, valid COCO layout, variety, atomic writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from gflv2_deploy.data.synth import SYNTH_CATEGORIES, generate_synthetic_coco, render_synthetic_image
from gflv2_deploy.errors import UserError

N = 12


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_synthetic_coco(root, num_images=N, seed=3, val_fraction=0.25)
    return root, summary


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = dataset
    again = generate_synthetic_coco(tmp_path / "again", num_images=N, seed=3, val_fraction=0.25)
    first, second = _files(root), _files(Path(again["out_dir"]))
    assert len(first) == N + 2
    assert first == second
    generate_synthetic_coco(tmp_path / "other", num_images=N, seed=4, val_fraction=0.25)
    other = _files(tmp_path / "other")
    assert other.keys() == first.keys()  # same names, different content
    assert other["annotations/instances_train.json"] != first["annotations/instances_train.json"]
    assert sum(other[k] != first[k] for k in first if k.endswith(".jpg")) == N


def test_each_image_depends_only_on_seed_and_index(dataset: tuple[Path, dict]) -> None:
    """Image i rendered alone (out of order) equals the file and annotations of the full run."""
    root, _ = dataset
    anns_by_image: dict[int, list] = {}
    for split in ("train", "val"):
        for ann in _load(root, split)["annotations"]:
            anns_by_image.setdefault(ann["image_id"], []).append(ann)
    for index in (10, 0, 5):
        img, objects = render_synthetic_image(3, index)
        split = "val" if index >= N - 3 else "train"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok and buf.tobytes() == (root / split / f"{index + 1:012d}.jpg").read_bytes()
        got = [(a["category_id"], tuple(a["bbox"]), a["area"]) for a in anns_by_image.get(index + 1, [])]
        assert got == [(o.category_id, o.bbox, o.area) for o in objects]


def test_layout_and_json_are_valid_coco(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    cat_ids = {c["id"] for c in SYNTH_CATEGORIES}
    image_ids: dict[str, set[int]] = {}
    ann_ids: list[int] = []
    for split, n_expected in (("train", 9), ("val", 3)):
        data = _load(root, split)
        assert {"images", "annotations", "categories"} <= data.keys()
        assert [c["id"] for c in data["categories"]] == sorted(cat_ids) and min(cat_ids) == 1
        assert all({"id", "name", "supercategory"} <= c.keys() for c in data["categories"])
        images = {im["id"]: im for im in data["images"]}
        assert len(images) == len(data["images"]) == n_expected == summary["splits"][split]["images"]
        image_ids[split] = set(images)
        for im in data["images"]:
            pixels = cv2.imread(str(root / split / im["file_name"]))
            assert pixels is not None and pixels.shape == (im["height"], im["width"], 3)
        for ann in data["annotations"]:
            ann_ids.append(ann["id"])
            im = images[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert all(isinstance(v, float) for v in ann["bbox"])
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= im["width"] and y + h <= im["height"]
            assert 0 < ann["area"] <= w * h
            assert ann["category_id"] in cat_ids and ann["iscrowd"] == 0
        assert len(data["annotations"]) == summary["splits"][split]["annotations"]
    assert not image_ids["train"] & image_ids["val"]
    assert len(ann_ids) == len(set(ann_ids))
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "train", "val"]


def test_ground_truth_scores_perfect_ap_with_cocoeval(dataset: tuple[Path, dict]) -> None:
    """The JSON is usable by pycocotools: ground truth submitted as detections gives AP 1."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, _ = dataset
    gt = COCO(str(root / "annotations" / "instances_train.json"))
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt.dataset["annotations"]
    ]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0) and ev.stats[1] == pytest.approx(1.0)


def test_images_vary_in_classes_counts_sizes_and_shape() -> None:
    """Over 60 images: all six classes, empty and crowded images, small and large objects."""
    counts, sizes, shapes = [], [], set()
    classes: set[int] = set()
    for index in range(60):
        img, objects = render_synthetic_image(11, index)
        shapes.add(img.shape)
        counts.append(len(objects))
        classes |= {o.category_id for o in objects}
        sizes += [math.sqrt(o.bbox[2] * o.bbox[3]) for o in objects]
    assert classes == {c["id"] for c in SYNTH_CATEGORIES}
    assert 0 in counts and max(counts) >= 7 and max(counts) <= 8
    assert min(sizes) < 20 and max(sizes) > 120
    assert len(shapes) > 20  # size jitter
    fixed = {render_synthetic_image(11, i, size_jitter=0.0)[0].shape for i in range(3)}
    assert fixed == {(320, 416, 3)}


def test_colour_does_not_give_class_away() -> None:
    """Every class appears in widely different hues (sampled at the box centre of large objects)."""
    hues: dict[int, list[float]] = {}
    for index in range(40):
        img, objects = render_synthetic_image(5, index, size_jitter=0.0)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        for o in objects:
            if o.category_id != 4 and o.bbox[2] >= 24 and o.bbox[3] >= 24:  # not rings: hole at the centre
                cx, cy = int(o.bbox[0] + o.bbox[2] / 2), int(o.bbox[1] + o.bbox[3] / 2)
                centre_hue = float(hsv[cy - 1 : cy + 2, cx - 1 : cx + 2, 0].mean())
                hues.setdefault(o.category_id, []).append(centre_hue)
    for cat, values in hues.items():
        assert np.ptp(values) > 90, f"class {cat} shows only hues {values}"  # OpenCV hue spans 0-179


def test_refuses_non_empty_out_dir_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()  # an existing empty folder is fine
    generate_synthetic_coco(out, num_images=2, seed=0)
    before = _files(out)
    with pytest.raises(UserError, match="not empty"):
        generate_synthetic_coco(out, num_images=2, seed=1)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left behind
    summary = generate_synthetic_coco(out, num_images=3, seed=1, overwrite=True)
    after = _files(out)
    assert after != before and summary["splits"]["train"]["images"] + summary["splits"]["val"]["images"] == 3
    assert len([k for k in after if k.endswith(".jpg")]) == 3  # old files are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        generate_synthetic_coco(tmp_path / "file", num_images=2, seed=0, overwrite=True)


def test_single_image_goes_to_train(tmp_path: Path) -> None:
    summary = generate_synthetic_coco(tmp_path / "one", num_images=1, seed=0)
    assert summary["splits"]["train"]["images"] == 1 and summary["splits"]["val"]["images"] == 0
    assert _load(tmp_path / "one", "val")["images"] == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 0},
        {"num_images": -3},
        {"num_images": 2.0},
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"val_fraction": -0.1},
        {"val_fraction": float("nan")},
        {"seed": -1},
        {"image_size": (32, 416)},
        {"size_jitter": 0.9},
        {"min_object_size": 400.0},
        {"jpeg_quality": 0},
    ],
)
def test_invalid_arguments_raise_user_error_and_write_nothing(tmp_path: Path, kwargs: dict) -> None:
    args = {"num_images": 4, "seed": 0} | kwargs
    with pytest.raises(UserError):
        generate_synthetic_coco(tmp_path / "ds", **args)
    assert list(tmp_path.iterdir()) == []


def test_boxes_are_tight_around_the_drawn_shape() -> None:
    """One shape on a black canvas: its box equals the painted pixels' extent, up to the 1 px AA fringe."""
    from gflv2_deploy.data.synth import _place_objects

    for trial in range(40):
        canvas = np.zeros((200, 260, 3), np.uint8)
        (obj,) = _place_objects(canvas, np.random.default_rng(trial), 1, min_size=12.0, max_frac=0.6)
        ys, xs = np.nonzero(canvas.any(axis=2))
        painted = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        x, y, w, h = obj.bbox
        box = (x, y, x + w, y + h)
        assert all(0 <= box[i] - painted[i] <= 1 for i in (0, 1)), (trial, obj, painted)
        assert all(0 <= painted[i] - box[i] <= 1 for i in (2, 3)), (trial, obj, painted)
        assert obj.area == pytest.approx(float(np.count_nonzero(canvas.max(axis=2) > 0)), rel=0.35)
