"""Training data: a torch Dataset over a COCO folder, a seeded batch sampler (single process or DDP), the loader.

Reproducibility is by construction, not by worker seeding alone:

- the order of an epoch is ``torch.randperm(n, generator=manual_seed(seed + epoch))``, the same in
  every process and every run; the last batch is completed by wrapping around to the start of the
  permutation, so every epoch has ``ceil(n / total_batch)`` full batches;
- batch ``i`` of the epoch is ``perm[i*B : (i+1)*B]`` (B = total batch over all processes); process
  ``r`` of ``W`` takes the slice ``[r*B/W, (r+1)*B/W)`` of it, so W processes together see exactly the
  images (and augmentations) of the single-process batch;
- the augmentation of image index ``k`` in epoch ``e`` draws from ``numpy.random.default_rng([seed, e, k])``
  alone, so it does not depend on which worker or process loads it; the sampler hands the dataset
  ``(epoch, k)`` pairs, so persistent workers need no per-epoch state;
- resuming in the middle of an epoch skips the batches already consumed (``start_batch``).

Workers are persistent (forked once per run). They must not call ``cv2.setNumThreads``: in a child
forked after OpenCV's pthreads pool has run (the evaluation's resize, the synthetic-data generator),
reconfiguring the pool blocks forever in ``pthread_cond_destroy`` (reproduced with OpenCV 5.0);
plain OpenCV calls in the child are fine.

Crowd boxes are ignored (spec §1.9 ``ignore_iof_thr=-1``); images without annotations are kept as negatives.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.transforms import TrainBatch, TrainSample, TrainTransform, collate_samples
from gflv2_deploy.errors import UserError

__all__ = ["CocoTrainDataset", "EpochBatchSampler", "load_train_dataset", "build_train_loader", "batch_to_tensors"]


class CocoTrainDataset(Dataset):
    """``dataset[(epoch, k)]`` -> the ``TrainSample`` of the k-th usable image of ``coco``, augmented as in ``epoch``.

    A plain index ``k`` means epoch 0.
    """

    def __init__(self, coco: CocoDataset, transform: TrainTransform, seed: int = 0) -> None:
        self.coco = coco
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, key: int | tuple[int, int]) -> TrainSample:
        epoch, index = (0, key) if isinstance(key, int) else key
        image_id = self.coco.image_ids[index]
        image = read_image(self.coco.image_path(image_id))
        ann = self.coco.annotations(image_id)  # crowd boxes (ann.crowd_boxes) are not used in training
        rng = np.random.default_rng([self.seed, epoch, index])
        return self.transform(image, ann.boxes, ann.labels, rng, image_id=image_id)

    def num_annotations(self) -> int:
        """Number of non-crowd boxes over all usable images."""
        return sum(len(self.coco.annotations(i)) for i in self.coco.image_ids)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, dataset index)`` keys for one process (see the module docstring for the order).

    total_batch: images per iteration over all processes; must be a multiple of ``world_size``.
    shuffle: a seeded permutation per epoch (``False``: the index order, for evaluation-like runs).
    """

    def __init__(self, num_samples: int, total_batch: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        if num_samples < 1:
            raise UserError("the training set is empty")
        if total_batch < 1 or total_batch % world_size:
            raise UserError(f"the batch size ({total_batch}) must be a positive multiple of the number of processes ({world_size})")
        self.num_samples = num_samples
        self.total_batch = total_batch
        self.per_process = total_batch // world_size
        self.seed, self.rank, self.world_size, self.shuffle = int(seed), rank, world_size, shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches (exact resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.total_batch)

    def epoch_order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order()
        needed = self.batches_per_epoch * self.total_batch
        order = (order * math.ceil(needed / len(order)))[:needed]  # wrap around to complete the last batch
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * self.total_batch + self.rank * self.per_process
            yield [(self.epoch, k) for k in order[first : first + self.per_process]]


def load_train_dataset(data_dir: str | os.PathLike[str], split: str, transform: TrainTransform, seed: int) -> CocoTrainDataset:
    """The training split of a COCO-layout folder; refuses a dataset without a single annotation.

    CocoDataset has already skipped bad items with a warning (missing images, degenerate boxes,
    unknown category ids); training never silently trains on nothing.
    """
    ann_file, img_dir = find_coco_files(data_dir, split)
    coco = CocoDataset(ann_file, img_dir)
    dataset = CocoTrainDataset(coco, transform, seed)
    if dataset.num_annotations() == 0:
        first = f"; first: {coco.problems[0]}" if coco.problems else ""
        raise UserError(
            f"refusing to train: {ann_file} has no usable annotation in its {len(coco)} usable image(s) "
            f"({len(coco.problems)} bad item(s) skipped{first}); training never silently trains on nothing"
        )
    return dataset


def _worker_init(worker_id: int) -> None:
    # Augmentation draws from its own per-sample generator; seed the global generators anyway so any
    # library randomness inside a worker is reproducible too. (No cv2.setNumThreads here: see above.)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(dataset: CocoTrainDataset, sampler: EpochBatchSampler, num_workers: int, seed: int) -> DataLoader:
    """DataLoader yielding ``TrainBatch`` objects (numpy, padded to 32) for this process's batches.

    ``num_workers`` 0 loads in the calling process; otherwise persistent worker processes.
    """
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )


def batch_to_tensors(batch: TrainBatch, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(images N x 3 x H x W float32, boxes per image K_i x 4 float32 pixels, labels per image K_i int64) on ``device``."""
    images = torch.from_numpy(batch.images).to(device, non_blocking=True)
    boxes = [torch.from_numpy(b).to(device) for b in batch.boxes]
    labels = [torch.from_numpy(lab).to(device) for lab in batch.labels]
    return images, boxes, labels
