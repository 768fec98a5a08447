"""Why an FP16 graph misses its FP16 gate: the model off its training data, or a precision defect of the graph?

For one checkpoint, on its own validation pictures (the training distribution) and on real photos:
1. the gate itself: torch fp32 (reference) vs the FP16 end-to-end ONNX (``quantize --fp16 --nms onnx``) in
   onnxruntime, with the fp16 budgets (``compare --precision fp16``); and the same for the fp32 ONNX, so that
   what FP16 adds is separated from what any export does;
2. the reference detections the FP16 graph did not match: their scores (a detection at 0.051 that drops to
   0.049 is unmatched without any defect), and the matched fraction among confident ones (score >= 0.3);
3. the pre-NMS tensors of fp32 and FP16 ONNX exported with every point (nms_pre 0): the largest box error, and
   the fp32 score of the point that carries it;
4. per stage (every Conv output of the fp16 region, exposed in both graphs): the largest |activation| of
   the fp32 graph against the float16 limit (65504), non-finite values in the fp16 graph, and the relative
   error max|fp16 - fp32| / max|fp32| per stage.

    .venv/bin/python scripts/fp16_diagnosis.py --checkpoint W/latest.pth --data W/data --split val \
        --photos tests/data/coco_val2017_tiny50/val2017 --out out/fp16_diagnosis.json

Prints a summary and writes every figure as JSON. CPU only (onnxruntime's CPU float16 kernels: the same
file TensorRT would build into an FP16 engine).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gflv2_deploy.data.coco import CocoDataset, find_coco_files
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.eval.compare import box_iou, default_budgets, match_detections
from gflv2_deploy.export.fp16 import convert_fp16
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.load import load_torch_model
from gflv2_deploy.onnx_ir import onnx_bytes
from gflv2_deploy.runtime.detector import Detector
from gflv2_deploy.runtime.evaluate import align_postprocessing, compare_backends, infer_and_detect
from gflv2_deploy.runtime.factory import make_detector
from gflv2_deploy.runtime.torch_runner import TorchRunner

FP16_MAX = 65504.0
CONFIDENT = 0.3


def gate(ref: Detector, test: Detector, paths: list[Path]) -> dict[str, Any]:
    """compare_backends with the fp16 budgets: the gate's own figures."""
    report = compare_backends(ref, test, image_paths=[str(p) for p in paths], budgets=default_budgets("fp16"), progress=False)
    d = report["detections"]
    boxes = report["tensors"]["boxes"] if report["tensors"] else None
    return {"passed": report["passed"], "failures": report["failures"], "num_ref": d["num_ref"], "matched": d["matched"],
            "matched_fraction": d["matched_fraction"], "score_delta_max": d["score_delta_max"],
            "box_max_abs_error_px": boxes["max_abs"] if boxes else None}


def unmatched_analysis(ref: Detector, test: Detector, paths: list[Path], iou_thr: float) -> dict[str, Any]:
    """Scores of the reference detections FP16 left unmatched, and the matched fraction among confident ones."""
    ref, test, _ = align_postprocessing(ref, test)
    unmatched_scores: list[float] = []
    reasons: collections.Counter[str] = collections.Counter()
    total_ref = 0
    confident = [0, 0]  # matched, total among reference detections scoring >= CONFIDENT
    for path in paths:
        batch, metas = ref.preprocess([read_image(path)])
        _, ref_d = infer_and_detect(ref, batch, metas)
        _, test_d = infer_and_detect(test, batch, metas)
        m = match_detections(ref_d[0], test_d[0], iou_thr)
        missed = np.setdiff1d(np.arange(len(ref_d[0])), m.ref_index)
        total_ref += len(ref_d[0])
        unmatched_scores += ref_d[0].scores[missed].astype(float).tolist()
        full = len(ref_d[0]) >= ref.test_cfg.max_per_img or len(test_d[0]) >= ref.test_cfg.max_per_img
        cut = max(float(ref_d[0].scores.min(initial=1.0)), float(test_d[0].scores.min(initial=1.0)))
        for r in missed:  # why: at the max_per_img cut, a same-class box the test moved (IoU < iou_thr), or gone
            same = test_d[0].labels == ref_d[0].labels[r]
            iou = box_iou(ref_d[0].boxes[r : r + 1], test_d[0].boxes[same]).max(initial=0.0)
            if full and ref_d[0].scores[r] <= cut + 0.01:
                reasons["at the max_per_img cut (score within 0.01 of the lowest kept)"] += 1
            elif ref_d[0].scores[r] < 0.06:
                reasons["at the score threshold (score < 0.06)"] += 1
            elif iou >= 0.5:
                reasons[f"NMS kept an overlapping same-class box (0.5 <= IoU < {iou_thr})"] += 1
            else:
                reasons["no same-class test box overlaps it"] += 1
        sure = ref_d[0].scores >= CONFIDENT
        confident[1] += int(sure.sum())
        confident[0] += int(sure[m.ref_index].sum())
    scores = np.asarray(unmatched_scores)
    return {
        "unmatched_ref": len(scores),
        "unmatched_ref_score_quartiles": np.percentile(scores, [0, 25, 50, 75, 100]).round(4).tolist() if len(scores) else None,
        "unmatched_ref_below_0.1": int((scores < 0.1).sum()),
        "unmatched_ref_reasons": dict(reasons),
        "ref_detections_per_picture": total_ref / max(len(paths), 1),
        f"matched_fraction_score_ge_{CONFIDENT}": confident[0] / confident[1] if confident[1] else None,
        f"ref_detections_score_ge_{CONFIDENT}": confident[1],
    }


def conv_outputs(fp16_path: Path) -> list[str]:
    """Outputs of the Conv nodes converted to float16 (they exist under the same names in the fp32 graph)."""
    import onnx

    model = onnx.load(str(fp16_path))
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return [n.output[0] for n in model.graph.node if n.op_type == "Conv" and inits.get(n.input[1]) == onnx.TensorProto.FLOAT16]


def exposed_session(path: Path, names: list[str]) -> Any:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(onnx_bytes(model), options, providers=["CPUExecutionProvider"])


def stage_analysis(fp32_path: Path, fp16_path: Path, detector: Detector, paths: list[Path]) -> dict[str, Any]:
    names = conv_outputs(fp16_path)
    s32, s16 = exposed_session(fp32_path, names), exposed_session(fp16_path, names)
    worst = {"box_error_px": 0.0, "fp32_score": None}
    worst_scoring = 0.0  # among points whose best fp32 score clears the 0.05 threshold
    peak = dict.fromkeys(names, 0.0)
    rel = dict.fromkeys(names, 0.0)
    nonfinite = dict.fromkeys(names, 0)
    for path in paths:
        batch, metas = detector.preprocess([read_image(path)])
        feed = {"images": batch, "img_shape": np.array([m.img_shape for m in metas], np.float32)}
        a = dict(zip([o.name for o in s32.get_outputs()], s32.run(None, feed)))
        b = dict(zip([o.name for o in s16.get_outputs()], s16.run(None, feed)))
        err = np.abs(a["boxes"][0] - b["boxes"][0]).max(-1)  # per point (every point: nms_pre 0), px
        best = a["scores"][0].max(-1)
        i = int(err.argmax())
        if err[i] > worst["box_error_px"]:
            worst = {"box_error_px": float(err[i]), "fp32_score": float(best[i]), "picture": path.name}
        if (best >= 0.05).any():
            worst_scoring = max(worst_scoring, float(err[best >= 0.05].max()))
        for n in names:
            x, y = a[n].astype(np.float64), b[n].astype(np.float64)
            peak[n] = max(peak[n], float(np.abs(x).max()))
            nonfinite[n] += int((~np.isfinite(y)).sum())
            finite = np.isfinite(y)
            rel[n] = max(rel[n], float(np.abs(np.where(finite, y - x, 0)).max() / max(np.abs(x).max(), 1e-12)))
    order = sorted(names, key=lambda n: -rel[n])
    return {
        "convs_in_fp16": len(names),
        "max_abs_activation_fp32": max(peak.values()), "float16_max": FP16_MAX,
        "activation_peak_by_conv_top5": [(n, round(peak[n], 1)) for n in sorted(names, key=lambda n: -peak[n])[:5]],
        "nonfinite_values_in_fp16": sum(nonfinite.values()),
        "relative_error_by_conv_top5": [(n, round(rel[n], 5)) for n in order[:5]],
        "relative_error_median_over_convs": float(np.median(list(rel.values()))),
        "worst_box_error_point": worst,
        "worst_box_error_px_among_points_scoring_ge_0.05": worst_scoring,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="the COCO folder the model was trained on")
    ap.add_argument("--split", default="val")
    ap.add_argument("--photos", type=Path, required=True, help="a folder of real photos")
    ap.add_argument("--limit", type=int, default=50, help="pictures per set (the gate of the finding used 5 photos)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fp16_diag_") as tmp:
        work = Path(tmp)
        model = load_torch_model(args.checkpoint, None)
        fp32 = work / "model.prenms.onnx"
        export_onnx(model, fp32, dynamic_batch=True, dynamic_hw=True)
        fp16 = work / "model.fp16.e2e.onnx"
        convert_fp16(fp32, fp16, nms="onnx")
        fp32_all = work / "model.all.onnx"  # every point (nms_pre 0): tensors compare point by point
        export_onnx(model, fp32_all, dynamic_batch=True, dynamic_hw=True, nms_pre=0)
        fp16_all = work / "model.all.fp16.onnx"
        convert_fp16(fp32_all, fp16_all)
        reference = Detector(TorchRunner(model), model.config.test, model.config.class_names)
        test16 = make_detector("onnxruntime", fp16, expose_pre_nms=True)
        test32 = make_detector("onnxruntime", fp32)
        dataset = CocoDataset(*find_coco_files(args.data, args.split))
        sets = {
            f"{args.split} pictures of the training data": [dataset.image_path(i) for i in dataset.image_ids[: args.limit]],
            "real photos": sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))[: args.limit],
        }
        sets["real photos, first 5"] = sets["real photos"][:5]
        result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "sets": {}}
        for name, paths in sets.items():
            print(f"== {name} ({len(paths)} pictures)", flush=True)
            entry = {"pictures": len(paths), "fp16_gate": gate(reference, test16, paths),
                     "fp32_onnx_with_fp16_budgets": gate(reference, test32, paths),
                     "fp16_unmatched": unmatched_analysis(reference, test16, paths, default_budgets("fp16").iou_thr),
                     "fp16_stages": stage_analysis(fp32_all, fp16_all, test32, paths)}
            result["sets"][name] = entry
            print(json.dumps(entry, indent=1), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
