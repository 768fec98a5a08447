"""Training data: the COCO-backed Dataset, the seeded batch sampler (single process and DDP), the loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.data.transforms import TrainTransform
from gflv2_deploy.errors import UserError
from gflv2_deploy.train.dataset import EpochBatchSampler, batch_to_tensors, build_train_loader, load_train_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    generate_synthetic_coco(root, num_images=10, seed=5, val_fraction=0.2, image_size=(96, 128))
    return root


TRANSFORM = TrainTransform((96, 112), 200, flip_prob=0.5)


def _edit_train_json(src: Path, dst: Path, edit) -> Path:
    """Copy the dataset to ``dst`` with an edited train JSON."""
    import shutil

    shutil.copytree(src, dst)
    path = dst / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return dst


def test_samples_are_deterministic_per_epoch_and_index(synth: Path) -> None:
    ds = load_train_dataset(synth, "train", TRANSFORM, seed=3)
    assert len(ds) == 8
    a, b = ds[(0, 2)], ds[(0, 2)]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    other_epochs = [ds[(e, 2)] for e in range(1, 6)]
    assert any(s.img_shape != a.img_shape or s.flipped != a.flipped for s in other_epochs)
    assert ds[2].image_id == a.image_id == ds.coco.image_ids[2]  # a plain index is epoch 0


def test_crowd_boxes_are_ignored_and_images_without_boxes_are_kept(synth: Path, tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        first_image = data["images"][0]["id"]
        for ann in data["annotations"]:
            if ann["image_id"] == first_image:
                ann["iscrowd"] = 1
    root = _edit_train_json(synth, tmp_path / "crowd", edit)
    ds = load_train_dataset(root, "train", TRANSFORM, seed=0)
    assert len(ds) == 8
    assert len(ds.coco.annotations(ds.coco.image_ids[0]).crowd_boxes) > 0
    sample = ds[0]
    assert sample.boxes.shape == (0, 4) and sample.labels.shape == (0,)  # only crowd regions: a negative image


def test_a_dataset_without_annotations_is_refused_with_the_problem_count(synth: Path, tmp_path: Path) -> None:
    empty = _edit_train_json(synth, tmp_path / "empty", lambda d: d.__setitem__("annotations", []))
    with pytest.raises(UserError, match=r"no usable annotation in its 8 usable image\(s\) \(0 bad item"):
        load_train_dataset(empty, "train", TRANSFORM, seed=0)

    def unknown_categories(data: dict) -> None:
        for ann in data["annotations"]:
            ann["category_id"] = 99
    bad = _edit_train_json(synth, tmp_path / "bad", unknown_categories)
    n_anns = len(json.loads((synth / "annotations" / "instances_train.json").read_text())["annotations"])
    with pytest.warns(UserWarning), pytest.raises(UserError, match=rf"\({n_anns} bad item\(s\) skipped; first: unknown category id"):
        load_train_dataset(bad, "train", TRANSFORM, seed=0)


def test_sampler_order_wraps_around_and_is_seeded() -> None:
    s = EpochBatchSampler(10, 4, seed=1)
    batches = list(s)
    assert s.batches_per_epoch == 3 and len(batches) == 3
    flat = [k for batch in batches for _, k in batch]
    assert len(flat) == 12 and sorted(flat[:10]) == list(range(10)) and flat[10:] == flat[:2]
    assert all(e == 0 for batch in batches for e, _ in batch)
    assert list(EpochBatchSampler(10, 4, seed=1)) == batches
    s.set_epoch(1)
    assert [k for b in s for _, k in b] != flat and all(e == 1 for b in s for e, _ in b)


def test_sampler_skip_continues_the_same_epoch_order() -> None:
    full = EpochBatchSampler(10, 4, seed=1)
    full.set_epoch(1)
    part = EpochBatchSampler(10, 4, seed=1)
    part.set_epoch(1, start_batch=2)
    assert len(part) == 1 and list(part) == list(full)[2:]


def test_processes_split_each_single_process_batch() -> None:
    single = EpochBatchSampler(11, 4, seed=9)
    ranks = [EpochBatchSampler(11, 4, seed=9, rank=r, world_size=2) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(3)
    for whole, part0, part1 in zip(single, *ranks):
        assert len(part0) == len(part1) == 2 and part0 + part1 == whole
    with pytest.raises(UserError, match="multiple of the number of processes"):
        EpochBatchSampler(11, 3, world_size=2)


def test_loader_with_a_worker_gives_the_same_batches_as_in_process(synth: Path) -> None:
    ds = load_train_dataset(synth, "train", TRANSFORM, seed=2)
    results = []
    for workers in (0, 1):
        sampler = EpochBatchSampler(len(ds), 3, seed=2)
        loader = build_train_loader(ds, sampler, workers, seed=2)
        epochs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            epochs.append(list(loader))
        results.append(epochs)
    for batches_a, batches_b in zip(results[0], results[1]):
        assert len(batches_a) == len(batches_b) == 3
        for x, y in zip(batches_a, batches_b):
            np.testing.assert_array_equal(x.images, y.images)
            assert x.image_ids == y.image_ids and x.pad_shapes == y.pad_shapes
            for bx, by in zip(x.boxes, y.boxes):
                np.testing.assert_array_equal(bx, by)
    first = results[0][0][0]
    assert first.images.shape[0] == 3 and first.images.shape[2] % 32 == 0 and first.images.shape[3] % 32 == 0
    images, boxes, labels = batch_to_tensors(first, torch.device("cpu"))
    assert images.dtype == torch.float32 and images.shape == first.images.shape
    assert all(b.dtype == torch.float32 and b.shape[1] == 4 for b in boxes) and all(lab.dtype == torch.int64 for lab in labels)
