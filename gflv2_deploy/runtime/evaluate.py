"""Run a detector over a COCO-format folder and evaluate it; predict on loose images; compare two backends."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.atomic import write_json_atomic
from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.data.draw import draw_detections
from gflv2_deploy.data.image_io import read_image, write_image
from gflv2_deploy.data.preprocess import ImageMeta, preprocess_for, stack_img_shapes
from gflv2_deploy.eval.coco_eval import detections_to_coco_results, evaluate_coco
from gflv2_deploy.eval.compare import Budgets, align_selected_rows
from gflv2_deploy.errors import UserError
from gflv2_deploy.progress import progress_iter
from gflv2_deploy.runtime.detector import Detector
from gflv2_deploy.spec import Detections


def detect_dataset(detector: Detector, dataset: CocoDataset, batch_size: int = 1, progress: bool = True,
                   limit: int | None = None, unreadable: list[str] | None = None) -> dict[int, Detections]:
    """Detections (original-image pixels) for every readable image of ``dataset``, keyed by image id.

    An image that cannot be read (corrupt, truncated, not a picture) is skipped and counted, as ``CocoDataset``
    skips a missing one: one line per such image is appended to ``unreadable`` (when given) and one UserWarning
    sums them up; the evaluation then covers the other images only. UserError when no image can be read.
    """
    ids = dataset.image_ids[:limit] if limit else dataset.image_ids
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    results: dict[int, Detections] = {}
    problems: list[str] = []
    for batch_ids in progress_iter(batches, len(batches), "detect", progress):
        images, readable = [], []
        for image_id in batch_ids:
            try:
                images.append(read_image(dataset.image_path(image_id)))
                readable.append(image_id)
            except UserError as exc:
                problems.append(f"image id {image_id}: {exc}")
        if images:
            for image_id, dets in zip(readable, detector.detect(images)):
                results[image_id] = dets
    if unreadable is not None:
        unreadable.extend(problems)
    if problems and not results:
        raise UserError(f"none of the {len(ids)} image(s) could be read (first: {problems[0]})")
    if problems:
        more = "; ..." if len(problems) > 3 else ""
        warnings.warn(f"skipped {len(problems)} unreadable image(s) of {len(ids)}, left out of the evaluation like missing "
                      f"ones: {'; '.join(problems[:3])}{more}", UserWarning, stacklevel=2)
    return results


def evaluate_detections(dataset: CocoDataset, detections: dict[int, Detections], details: bool = False) -> dict:
    """COCO bbox metrics of ``detections`` against the dataset's ground truth (only the images detected).

    details: also per-class AP and precision-recall curves (``evaluate_coco(details=True)``), the confusion
    matrix at IoU 0.5 and the images with the most missed objects (``eval/confusion.py``), and the images'
    folder, for ``gflv2-deploy report``.
    """
    coco_results = [r for image_id, d in detections.items() for r in detections_to_coco_results(image_id, d, dataset.label_to_cat_id)]
    metrics = evaluate_coco(dataset.ann_file, coco_results, image_ids=sorted(detections), details=details)
    metrics["num_images"] = len(detections)
    if details:
        from gflv2_deploy.eval.confusion import ConfusionAccumulator

        confusion = ConfusionAccumulator(dataset.class_names)
        for image_id, d in detections.items():
            gt = dataset.annotations(image_id)
            confusion.update(image_id, gt.boxes, gt.labels, d.boxes, d.labels, d.scores, gt.crowd_boxes,
                             path=str(dataset.image_path(image_id).resolve()))
        metrics.update(confusion.result())
        metrics["class_names"] = list(dataset.class_names)
        metrics["data"] = {"ann_file": str(dataset.ann_file.resolve()), "img_dir": str(dataset.img_dir.resolve())}
    return metrics


def evaluate_on_coco(detector: Detector, data_dir: str | os.PathLike[str], split: str | None = None,
                     batch_size: int = 1, progress: bool = True, limit: int | None = None,
                     details: bool = False) -> tuple[dict, dict[int, Detections]]:
    """Detect on a COCO-format folder and evaluate; returns (metrics, detections by image id).

    metrics: ``evaluate_coco``'s, plus ``unreadable_images`` (the images skipped because they could not be read,
    see ``detect_dataset``). details: see ``evaluate_detections`` (what ``gflv2-deploy report`` draws).
    """
    ann_file, img_dir = find_coco_files(data_dir, split)
    dataset = CocoDataset(ann_file, img_dir)
    if dataset.num_classes != len(detector.class_names):
        raise UserError(
            f"the dataset has {dataset.num_classes} categories but the model predicts {len(detector.class_names)} classes"
        )
    unreadable: list[str] = []
    detections = detect_dataset(detector, dataset, batch_size, progress, limit, unreadable)
    metrics = evaluate_detections(dataset, detections, details)
    metrics["unreadable_images"] = unreadable
    return metrics, detections


def coco_evaluator(data_dir: str | os.PathLike[str], split: str = "val", batch_size: int = 8) -> Callable[[Any, Any], dict]:
    """Evaluation for ``train(evaluate=...)``: the inference path itself on ``split`` of ``data_dir``.

    The returned callable takes the (eval-mode) model and its configuration and runs ``Detector`` over a
    ``TorchRunner`` with the configuration's test settings, so the AP seen during training is what
    ``gflv2-deploy eval`` reports. The split is checked now, before any training starts.
    """
    try:
        find_coco_files(data_dir, split)
    except UserError as exc:
        raise UserError(f"{exc}; evaluation during training needs the '{split}' split (or pass --eval-interval 0)") from None

    def evaluate(model: Any, cfg: Any) -> dict:
        from gflv2_deploy.runtime.torch_runner import TorchRunner  # training has torch; deployment installs need not

        device = str(next(model.parameters()).device)
        detector = Detector(TorchRunner(model, device), cfg.test, cfg.class_names)
        metrics, _ = evaluate_on_coco(detector, data_dir, split, batch_size=batch_size, progress=False)
        return {**metrics, "split": split}

    return evaluate

def prediction_outputs(image_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """``(<stem>.json, <stem>.jpg)`` in ``out_dir`` for each input picture, checked before any work.

    UserError when there are no pictures, when two share a file name (their outputs would collide), or when an
    output would replace one of the input pictures (``--out`` is the pictures' own folder and one is ``<stem>.jpg``):
    predict never writes over its input.
    """
    if not image_paths:
        raise UserError("no input images given")
    stems = [Path(p).stem for p in image_paths]
    if len(set(stems)) != len(stems):
        raise UserError("input images must have distinct file names (outputs are named after them)")
    out = Path(out_dir)
    outputs = [(out / f"{stem}.json", out / f"{stem}.jpg") for stem in stems]
    inputs = {_entry(p): Path(p) for p in image_paths}
    for pair in outputs:
        for target in pair:
            clash = inputs.get(_entry(target))
            if clash is None and target.exists():
                clash = next((Path(p) for p in image_paths if Path(p).exists() and os.path.samefile(p, target)), None)
            if clash is not None:
                raise UserError(f"the output {target} would replace the input picture {clash}: give --out another folder")
    return outputs


def _entry(path: str | os.PathLike[str]) -> str:
    """The folder entry ``path`` names: its folder resolved (links, ``..``), its own name kept (a link is replaced,
    not followed, by an atomic write)."""
    p = Path(path)
    return os.path.join(os.path.realpath(p.parent), p.name)


def predict_images(detector: Detector, image_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   score_thr: float = 0.3, progress: bool = True) -> list[Path]:
    """Detect on each image; write ``<stem>.json`` and ``<stem>.jpg`` (boxes drawn) into ``out_dir``.

    Every image is read (and so validated) and every output name checked (``prediction_outputs``: never over an
    input) before anything is written: bad input leaves no output.
    """
    outputs = prediction_outputs(image_paths, out_dir)
    images = [read_image(p) for p in image_paths]  # raises UserError on the first bad file
    written: list[Path] = []
    for path, (json_path, jpg_path), image in progress_iter(list(zip(image_paths, outputs, images)), len(images), "predict", progress):
        dets = detector.detect([image])[0]
        record = {"image": str(path), "height": image.shape[0], "width": image.shape[1],
                  "class_names": [detector.class_names[int(i)] for i in dets.labels], **dets.to_dict()}
        if hasattr(detector.runner, "math"):  # the torch reference: fp32, or tf32 when asked for
            record["math"] = detector.runner.math
        write_json_atomic(json_path, record)
        write_image(jpg_path, draw_detections(image, dets, detector.class_names, score_thr))
        written += [json_path, jpg_path]
    return written


# --- cross-backend comparison ------------------------------------------------------------------------
# The numbers (tensor statistics, matching, budgets) live in eval/compare.py; this part runs both
# detectors on the SAME preprocessed batches, one inference each per batch, and feeds them there.

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_images(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files from files and folders (a folder contributes its images, sorted by name)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"image file or folder not found: {p}")
    if not out:
        raise UserError("no images to compare on (the folder(s) hold no .jpg/.png/... files)")
    return out


def align_postprocessing(ref: Detector, test: Detector) -> tuple[Detector, Detector, list[str]]:
    """Both detectors with the same post-processing algorithm, and notes saying what changed.

    - NMS thresholds and max detections: the reference takes the test's (an end-to-end graph has them
      baked in).
    - ``nms_pre``: a torch side facing an exported graph takes the graph's pre-selection: the graph's
      ``nms_pre`` when it selects in the graph (its pre-NMS tensors then carry the same selection), else
      0 (every point), so parity measures the export, not a difference between two algorithms.
    """
    import dataclasses

    notes: list[str] = []
    ref_changes: dict = {}
    for field in ("score_thr", "iou_thr", "max_per_img"):
        if getattr(ref.test_cfg, field) != getattr(test.test_cfg, field):
            ref_changes[field] = getattr(test.test_cfg, field)
            notes.append(f"reference {field} {getattr(ref.test_cfg, field)} -> {ref_changes[field]} (the test model's)")
    out = []
    for name, det, other, changes in (("reference", ref, test, ref_changes), ("test", test, ref, {})):
        runner = det.runner
        contract = getattr(other.runner, "contract", None)
        if hasattr(runner, "with_graph_selection") and contract is not None:
            post = contract.postprocessing
            graph_pre = post.nms_pre if post.nms_pre_in_graph else 0
            if det.test_cfg.nms_pre != graph_pre:
                changes["nms_pre"] = graph_pre
                why = "the graph selects that many points per level" if graph_pre else "the graph has no per-level pre-selection"
                notes.append(f"{name} nms_pre {det.test_cfg.nms_pre} -> {graph_pre}: {why}")
            runner = runner.with_graph_selection(graph_pre, pad_levels=contract.preprocessing.input_hw is None)
        if changes or runner is not det.runner:
            det = Detector(runner, dataclasses.replace(det.test_cfg, **changes), det.class_names, det.pad_to,
                           det.preprocessing)
        out.append(det)
    return out[0], out[1], notes


def infer_and_detect(detector: Detector, batch: np.ndarray, metas: list[ImageMeta]) -> tuple[dict[str, np.ndarray] | None, list[Detections]]:
    """One inference of ``detector`` on a preprocessed batch -> (pre-NMS tensors or None, detections in original pixels).

    The detections are exactly ``detector.detect_preprocessed(batch, metas)``; the tensors are the
    ``boxes`` / ``scores`` outputs (torch: the decode of the same head outputs) when the runner has them.
    """
    runner = detector.runner
    both = getattr(runner, "tensors_and_detections", None)
    if both is not None:  # the torch reference: one forward pass for tensors and reference detections
        return both(batch, metas, detector.test_cfg)
    outputs = runner.infer(batch, stack_img_shapes(metas))
    dets = detector.postprocess_outputs(outputs, metas)
    tensors = {k: outputs[k] for k in spec.PRE_NMS_OUTPUTS} if all(k in outputs for k in spec.PRE_NMS_OUTPUTS) else None
    return tensors, dets


def describe_detector(detector: Detector, label: str) -> dict:
    """What ran, for reports: label, backend, model file, post-processing settings, precision, graph contract."""
    import dataclasses

    runner = detector.runner
    info = {"label": label, "backend": runner.name, "test_cfg": dataclasses.asdict(detector.test_cfg),
            "pad_to": list(detector.pad_to) if detector.pad_to else None, "outputs": list(runner.output_names)}
    if hasattr(runner, "path"):
        info["model"] = str(runner.path)
    contract = getattr(runner, "contract", None)
    # the precision a report shows: the graph's (its contract), else the torch reference's float32
    info["precision"] = contract.precision.compute if contract is not None else "fp32"
    info["contract"] = contract.to_dict() if contract is not None else None
    if hasattr(runner, "math"):  # the torch reference: fp32, or tf32 when asked for
        info["math"] = runner.math
    return info


def compare_backends(ref: Detector, test: Detector, *, data_dir: str | os.PathLike[str] | None = None,
                     split: str | None = None, image_paths: Sequence[str | os.PathLike[str]] | None = None,
                     budgets: Budgets | None = None, batch_size: int = 1, limit: int | None = None,
                     scale: tuple[int, int] | None = None, labels: tuple[str, str] = ("ref", "test"),
                     align: bool = True, progress: bool = True) -> dict:
    """Run ``ref`` and ``test`` on the same images and compare them (see ``eval/compare.py``); returns the report.

    Images: a COCO-format folder (``data_dir`` [+ ``split``]; adds AP of both and the AP drop) or
    ``image_paths`` (files or folders; no AP). Both detectors get the same preprocessed batch of
    ``batch_size`` images (the test's fixed input size, if it has one; a uint8-input graph gets the same
    resized pictures before its own normalisation). ``scale`` overrides the test
    scale (long, short) of both. ``align``: both run the same post-processing algorithm
    (``align_postprocessing``: the test's thresholds, no nms_pre against an exported model).
    The report's ``passed`` / ``failures`` say whether ``budgets`` hold.
    """
    import dataclasses
    import time

    from gflv2_deploy.eval.compare import DetectionAgreement, TensorErrorAccumulator, ap_comparison, build_report

    budgets = budgets or Budgets()
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if (data_dir is None) == (image_paths is None):
        raise UserError("compare on either a COCO folder (--data) or images (--images), not both or neither")
    if ref.class_names != test.class_names:
        raise UserError(f"the two models predict different classes ({len(ref.class_names)} vs {len(test.class_names)}): "
                        "compare exports of the same checkpoint")
    notes: list[str] = []
    if align:
        ref, test, notes = align_postprocessing(ref, test)
    if scale is not None:
        ref, test = ref.with_test_config(scale=tuple(scale)), test.with_test_config(scale=tuple(scale))
    if tuple(ref.test_cfg.scale) != tuple(test.test_cfg.scale):
        raise UserError(f"the models resize images differently (test scale {ref.test_cfg.scale} vs {test.test_cfg.scale}): "
                        "give both the same scale (--scale)")
    if ref.pad_to and test.pad_to and ref.pad_to != test.pad_to:
        raise UserError(f"the models have different fixed input sizes ({ref.pad_to} vs {test.pad_to})")
    pad_to = test.pad_to or ref.pad_to
    if scale is not None:
        problem = spec.scale_problem(*scale)
        if problem:
            raise UserError(f"scale {scale[0]}x{scale[1]}: {problem}")
        if pad_to and not spec.fixed_input_honours_scale(pad_to, scale):
            raise UserError(f"scale {scale[0]}x{scale[1]} does not fit the fixed input {pad_to[0]}x{pad_to[1]} of the "
                            "model under comparison (its pictures are letterboxed into it): give a --scale within "
                            "that size, or export the model with --dynamic-hw")

    dataset = None
    if data_dir is not None:
        ann_file, img_dir = find_coco_files(data_dir, split)
        dataset = CocoDataset(ann_file, img_dir)
        if dataset.num_classes != len(ref.class_names):
            raise UserError(f"the dataset has {dataset.num_classes} categories but the models predict {len(ref.class_names)} classes")
        keys: list = dataset.image_ids[:limit] if limit else list(dataset.image_ids)
        path_of = dataset.image_path
    else:
        files = list_images(image_paths or [])
        files = files[:limit] if limit else files
        keys = [str(f) for f in files]
        path_of = Path

    tensors: dict[str, TensorErrorAccumulator] | None = {k: TensorErrorAccumulator(k, budgets.tolerances[k]) for k in spec.PRE_NMS_OUTPUTS}
    tensor_note: str | None = None
    agreement = DetectionAgreement(budgets.iou_thr, budgets.max_score_delta, ref.class_names)
    ref_dets: dict = {}
    test_dets: dict = {}
    seconds = {"ref": 0.0, "test": 0.0}
    batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    seen = 0
    selection = next((c.postprocessing.nms_pre for c in (getattr(d.runner, "contract", None) for d in (test, ref))
                      if c is not None and c.postprocessing.nms_pre_in_graph), 0)
    unpaired = 0
    ref_pre = dataclasses.replace(ref.preprocessing, input_hw=pad_to)
    # the same geometry for both; a uint8-input graph gets the same resized pixels before its own normalisation
    test_pre = dataclasses.replace(ref_pre, input_format=test.preprocessing.input_format)
    for batch_keys in progress_iter(batches, len(batches), "compare", progress):
        images = [read_image(path_of(k)) for k in batch_keys]
        batch, metas = preprocess_for(images, ref_pre)
        test_batch = batch if test_pre == ref_pre else preprocess_for(images, test_pre)[0]
        t0 = time.perf_counter()
        ref_t, ref_d = infer_and_detect(ref, batch, metas)
        t1 = time.perf_counter()
        test_t, test_d = infer_and_detect(test, test_batch, metas)
        seconds["ref"] += t1 - t0
        seconds["test"] += time.perf_counter() - t1
        if tensors is not None:
            if ref_t is None or test_t is None:
                side = "reference" if ref_t is None else "test"
                tensors, tensor_note = None, f"no pre-NMS tensors: the {side} model returns end-to-end outputs only"
            else:
                if selection:  # per-level top-k in the graph: near-tied points may swap places
                    tol = budgets.tolerances  # pairs within the precision's own tolerances are the same point
                    ref_t, lost = align_selected_rows(ref_t, test_t, selection,
                                                      score_tol=max(1e-3, tol[spec.OUT_SCORES].atol),
                                                      box_tol=max(1.0, tol[spec.OUT_BOXES].atol))
                    unpaired += lost
                for name, acc in tensors.items():
                    acc.update(ref_t[name], test_t[name], batch_offset=seen)
        for k, r, t in zip(batch_keys, ref_d, test_d):
            agreement.update(k, r, t, path=str(Path(path_of(k)).resolve()))  # absolute: a report may run elsewhere
            ref_dets[k], test_dets[k] = r, t
        seen += len(batch_keys)

    if selection and tensors is not None:
        notes.append(f"pre-NMS rows compared after pairing within each level's top-{selection} (near-tied points may "
                     f"swap places); {unpaired} row(s) kept by one side only were left out")
    ap = None
    if dataset is not None:
        ap = ap_comparison(evaluate_detections(dataset, ref_dets), evaluate_detections(dataset, test_dets))
    settings = {"images": len(keys), "batch_size": batch_size, "scale": list(ref.test_cfg.scale),
                "pad_to": list(pad_to) if pad_to else None, "data": str(data_dir) if data_dir is not None else None,
                "split": split, "seconds": seconds}
    return build_report(ref=describe_detector(ref, labels[0]), test=describe_detector(test, labels[1]), budgets=budgets,
                        tensors=tensors, tensors_note=tensor_note, detections=agreement, ap=ap, settings=settings, notes=notes)
