"""COCO reading: the real tiny50 subset, the category mapping, and the bad-input policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.errors import UserError


@pytest.fixture(scope="module")
def tiny50_dataset(tiny50: Path) -> CocoDataset:
    return CocoDataset(*find_coco_files(tiny50))


def test_find_coco_files(tiny50: Path) -> None:
    ann_file, img_dir = find_coco_files(tiny50)
    assert ann_file == tiny50 / "annotations" / "instances_val2017.json"
    assert img_dir == tiny50 / "val2017"
    assert find_coco_files(tiny50, "val2017") == (ann_file, img_dir)
    with pytest.raises(UserError, match="available splits: val2017"):
        find_coco_files(tiny50, "train2017")


def test_find_coco_files_needs_a_split_when_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    for split in ("train", "val"):
        (tmp_path / "annotations" / f"instances_{split}.json").write_text("{}")
        (tmp_path / split).mkdir()
    with pytest.raises(UserError, match="several splits \\(train, val\\)"):
        find_coco_files(tmp_path)
    assert find_coco_files(tmp_path, "val")[1] == tmp_path / "val"
    with pytest.raises(UserError, match="no annotations/instances_"):
        find_coco_files(tmp_path / "val")
    with pytest.raises(UserError, match="not found"):
        find_coco_files(tmp_path / "nowhere")


def test_tiny50_loads_completely(tiny50_dataset: CocoDataset, tiny50: Path) -> None:
    ds = tiny50_dataset
    raw = json.loads((tiny50 / "annotations" / "instances_val2017.json").read_text())
    assert ds.problems == []
    assert len(ds) == 50 and ds.image_ids == sorted(img["id"] for img in raw["images"])
    assert ds.num_classes == 80 and ds.class_names == spec.COCO_CLASSES

    anns = [ds.annotations(i) for i in ds.image_ids]
    assert sum(len(a.crowd_boxes) for a in anns) == 5
    assert sum(len(a) for a in anns) == sum(1 for a in raw["annotations"] if not a["iscrowd"])
    negatives = [i for i, a in zip(ds.image_ids, anns) if len(a) == 0 and len(a.crowd_boxes) == 0]
    assert len(negatives) == 2
    for a in anns:
        assert a.boxes.dtype == np.float32 and a.boxes.shape == (len(a), 4)
        assert a.labels.dtype == np.int64 and a.crowd_boxes.shape[1] == 4
        assert np.all(a.boxes[:, 2:] > a.boxes[:, :2])

    # xywh -> xyxy with x2 = x + w, and the category mapped to its contiguous label.
    first = next(a for a in raw["annotations"] if not a["iscrowd"])
    x, y, w, h = first["bbox"]
    info = ds.image_info(first["image_id"])
    got = ds.annotations(first["image_id"])
    row = np.flatnonzero(np.all(np.isclose(got.boxes, [x, y, x + w, y + h], atol=1e-3), axis=1))
    assert len(row) >= 1
    assert ds.label_to_cat_id[int(got.labels[row[0]])] == first["category_id"]
    assert ds.image_path(info.image_id) == tiny50 / "val2017" / info.file_name
    assert ds.image_path(info.image_id).is_file()
    img = next(i for i in raw["images"] if i["id"] == info.image_id)
    assert (info.width, info.height) == (img["width"], img["height"])


def test_label_category_round_trip(tiny50_dataset: CocoDataset) -> None:
    ds = tiny50_dataset
    assert list(ds.label_to_cat_id) == list(range(80))
    assert tuple(ds.label_to_cat_id.values()) == spec.COCO_CATEGORY_IDS  # 0..79 -> 1..90
    assert min(ds.cat_id_to_label) == 1 and max(ds.cat_id_to_label) == 90
    for label, cat_id in ds.label_to_cat_id.items():
        assert ds.cat_id_to_label[cat_id] == label


def test_annotations_are_copies(tiny50_dataset: CocoDataset) -> None:
    image_id = next(i for i in tiny50_dataset.image_ids if len(tiny50_dataset.annotations(i)))
    tiny50_dataset.annotations(image_id).boxes[:] = -1
    assert np.all(tiny50_dataset.annotations(image_id).boxes >= 0)


def _write_dataset(root: Path, images: list[dict], annotations: list[dict], files: list[str]) -> tuple[Path, Path]:
    (root / "annotations").mkdir(parents=True)
    (root / "bad").mkdir()
    for name in files:
        (root / "bad" / name).write_bytes(b"not decoded by the reader")
    categories = [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}]
    ann_file = root / "annotations" / "instances_bad.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file, root / "bad"


def test_bad_parts_are_dropped_and_reported(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "missing.jpg", "width": 100, "height": 50},
        {"id": 3, "file_name": "negative.jpg", "width": 100, "height": 50},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0},  # good
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [90, 40, 30, 30], "iscrowd": 0},  # clipped
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 10], "iscrowd": 0},  # zero width
        {"id": 13, "image_id": 1, "category_id": 1, "bbox": [150, 10, 20, 10], "iscrowd": 0},  # outside
        {"id": 14, "image_id": 1, "category_id": 99, "bbox": [10, 10, 20, 10], "iscrowd": 0},  # unknown cat
        {"id": 15, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 30], "iscrowd": 1},  # crowd
        {"id": 16, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 10], "iscrowd": 0},  # goes with image 2
    ]
    ann_file, img_dir = _write_dataset(tmp_path, images, annotations, ["a.jpg", "negative.jpg"])
    with pytest.warns(UserWarning, match="skipped 4 bad item"):
        ds = CocoDataset(ann_file, img_dir)

    assert ds.image_ids == [1, 3]  # missing file skipped, the negative kept
    assert ds.class_names == ("cat", "dog") and ds.cat_id_to_label == {1: 0, 7: 1}
    a = ds.annotations(1)
    np.testing.assert_array_equal(a.boxes, np.array([[10, 5, 30, 15], [90, 40, 100, 50]], np.float32))
    np.testing.assert_array_equal(a.labels, [1, 0])
    np.testing.assert_array_equal(a.crowd_boxes, [[0, 0, 30, 30]])
    assert len(ds.annotations(3)) == 0 and ds.annotations(3).boxes.shape == (0, 4)
    with pytest.raises(KeyError):
        ds.annotations(2)

    kinds = sorted(p.split(":")[0] for p in ds.problems)
    assert kinds == ["degenerate box", "degenerate box", "missing image file", "unknown category id"]
    assert any("missing.jpg" in p for p in ds.problems)
    assert any("annotation 12 " in p for p in ds.problems) and any("annotation 13 " in p for p in ds.problems)


def test_no_usable_image_is_an_error(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in (1, 2)]
    ann_file, img_dir = _write_dataset(tmp_path, images, [], files=[])
    with pytest.warns(UserWarning, match="missing image file"):
        with pytest.raises(UserError, match="dataset has no usable images"):
            CocoDataset(ann_file, img_dir)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"images": []}'])
def test_unreadable_or_non_coco_json_is_an_error(tmp_path: Path, content: str) -> None:
    ann_file = tmp_path / "instances_x.json"
    ann_file.write_text(content)
    with pytest.raises(UserError, match=str(ann_file)):
        CocoDataset(ann_file, tmp_path)
