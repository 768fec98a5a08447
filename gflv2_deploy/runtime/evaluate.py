"""Run a detector over a COCO-format folder and evaluate it; predict on loose images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.data.draw import draw_detections
from gflv2_deploy.data.image_io import read_image, write_image
from gflv2_deploy.eval.coco_eval import detections_to_coco_results, evaluate_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.progress import progress_iter
from gflv2_deploy.runtime.detector import Detector
from gflv2_deploy.spec import Detections


def detect_dataset(detector: Detector, dataset: CocoDataset, batch_size: int = 1, progress: bool = True,
                   limit: int | None = None) -> dict[int, Detections]:
    """Detections (original-image pixels) for every image of ``dataset``, keyed by image id."""
    ids = dataset.image_ids[:limit] if limit else dataset.image_ids
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    results: dict[int, Detections] = {}
    for batch_ids in progress_iter(batches, len(batches), "detect", progress):
        images = [read_image(dataset.image_path(i)) for i in batch_ids]
        for image_id, dets in zip(batch_ids, detector.detect(images)):
            results[image_id] = dets
    return results


def evaluate_detections(dataset: CocoDataset, detections: dict[int, Detections]) -> dict:
    """COCO bbox metrics of ``detections`` against the dataset's ground truth (only the images detected)."""
    coco_results = [r for image_id, d in detections.items() for r in detections_to_coco_results(image_id, d, dataset.label_to_cat_id)]
    metrics = evaluate_coco(dataset.ann_file, coco_results, image_ids=sorted(detections))
    metrics["num_images"] = len(detections)
    return metrics


def evaluate_on_coco(detector: Detector, data_dir: str | os.PathLike[str], split: str | None = None,
                     batch_size: int = 1, progress: bool = True, limit: int | None = None) -> tuple[dict, dict[int, Detections]]:
    """Detect on a COCO-format folder and evaluate; returns (metrics, detections by image id)."""
    ann_file, img_dir = find_coco_files(data_dir, split)
    dataset = CocoDataset(ann_file, img_dir)
    if dataset.num_classes != len(detector.class_names):
        raise UserError(
            f"the dataset has {dataset.num_classes} categories but the model predicts {len(detector.class_names)} classes"
        )
    detections = detect_dataset(detector, dataset, batch_size, progress, limit)
    return evaluate_detections(dataset, detections), detections


def predict_images(detector: Detector, image_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   score_thr: float = 0.3, progress: bool = True) -> list[Path]:
    """Detect on each image; write ``<stem>.json`` and ``<stem>.jpg`` (boxes drawn) into ``out_dir``.

    Every image is read (and so validated) before anything is written: bad input leaves no output.
    """
    if not image_paths:
        raise UserError("no input images given")
    images = [read_image(p) for p in image_paths]  # raises UserError on the first bad file
    stems = [Path(p).stem for p in image_paths]
    if len(set(stems)) != len(stems):
        raise UserError("input images must have distinct file names (outputs are named after them)")
    out = Path(out_dir)
    written: list[Path] = []
    for path, stem, image in progress_iter(list(zip(image_paths, stems, images)), len(images), "predict", progress):
        dets = detector.detect([image])[0]
        record = {"image": str(path), "height": image.shape[0], "width": image.shape[1],
                  "class_names": [detector.class_names[int(i)] for i in dets.labels], **dets.to_dict()}
        write_json_atomic(out / f"{stem}.json", record)
        write_image(out / f"{stem}.jpg", draw_detections(image, dets, detector.class_names, score_thr))
        written += [out / f"{stem}.json", out / f"{stem}.jpg"]
    return written
