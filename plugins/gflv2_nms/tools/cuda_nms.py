"""ctypes wrapper of libgflv2_nms_cuda.so (plugins/gflv2_nms/include/gflv2_nms/nms_cuda.h), test data, and the benchmark.

    python plugins/gflv2_nms/tools/cuda_nms.py --bench [--json OUT]   # ours vs torchvision batched_nms, batch 1/8/32

Needs a CUDA GPU; torch with CUDA and torchvision only for --bench. The library is ``$GFLV2_NMS_CUDA_LIB``, else
``build/gflv2_nms/libgflv2_nms_cuda.so``. ``scripts/gpu_check.sh`` runs the benchmark as one of its steps.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]
DEFAULT_LIB = REPO / "build" / "gflv2_nms" / "libgflv2_nms_cuda.so"

_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")


def library_path() -> Path:
    """Where the CUDA library is loaded from: ``$GFLV2_NMS_CUDA_LIB``, else the default build folder."""
    return Path(os.environ.get("GFLV2_NMS_CUDA_LIB") or DEFAULT_LIB)


class CudaNms:
    """The CUDA kernels on host arrays: ``run(boxes [B,A,4], scores [B,A,C]) -> (num, boxes, scores, classes)``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.lib = ctypes.CDLL(str(path or library_path()))
        self.lib.gflv2_nms_last_error.restype = ctypes.c_char_p
        f = self.lib.gflv2_nms_cuda_run_host
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_float, ctypes.c_float, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _f32p, _f32p,
                      ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, _i32p, _f32p, _f32p, _i32p, ctypes.c_int32,
                      ctypes.POINTER(ctypes.c_float)]
        g = self.lib.gflv2_nms_cuda_run
        g.restype = ctypes.c_int
        g.argtypes = [ctypes.c_float, ctypes.c_float, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        w = self.lib.gflv2_nms_cuda_workspace_size
        w.restype = ctypes.c_int
        w.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_size_t)]

    def _check(self, rc: int) -> None:
        if rc != 0:
            raise RuntimeError(self.lib.gflv2_nms_last_error().decode())

    def run(self, boxes: np.ndarray, scores: np.ndarray, *, score_thr: float = 0.05, iou_thr: float = 0.6,
            max_dets: int = 100, nms_pre: int = 0, num_levels: int = 0, repeats: int = 1
            ) -> tuple[list[np.ndarray], float]:
        """The four end-to-end outputs and the mean GPU milliseconds of one run (copies excluded)."""
        boxes = np.ascontiguousarray(boxes, np.float32)
        scores = np.ascontiguousarray(scores, np.float32)
        b, a, c = scores.shape
        out = [np.zeros((b, 1), np.int32), np.zeros((b, max_dets, 4), np.float32), np.zeros((b, max_dets), np.float32),
               np.zeros((b, max_dets), np.int32)]
        ms = ctypes.c_float()
        self._check(self.lib.gflv2_nms_cuda_run_host(score_thr, iou_thr, max_dets, nms_pre, num_levels, boxes, scores, b, a,
                                                     c, *out, repeats, ctypes.byref(ms)))
        return out, ms.value

    def run_torch(self, boxes: Any, scores: Any, *, score_thr: float = 0.05, iou_thr: float = 0.6, max_dets: int = 100):
        """On CUDA torch tensors, on torch's current stream; returns the four output tensors."""
        import torch

        b, a, c = scores.shape
        size = ctypes.c_size_t()
        self._check(self.lib.gflv2_nms_cuda_workspace_size(b, a, c, ctypes.byref(size)))
        dev = scores.device
        ws = torch.empty(max(size.value, 1), dtype=torch.uint8, device=dev)
        num = torch.empty((b, 1), dtype=torch.int32, device=dev)
        det_b = torch.empty((b, max_dets, 4), dtype=torch.float32, device=dev)
        det_s = torch.empty((b, max_dets), dtype=torch.float32, device=dev)
        det_c = torch.empty((b, max_dets), dtype=torch.int32, device=dev)
        stream = torch.cuda.current_stream(dev).cuda_stream
        self._check(self.lib.gflv2_nms_cuda_run(score_thr, iou_thr, max_dets, 0, 0, boxes.data_ptr(), scores.data_ptr(),
                                                b, a, c, num.data_ptr(), det_b.data_ptr(), det_s.data_ptr(),
                                                det_c.data_ptr(), ws.data_ptr(), size.value, stream))
        return num, det_b, det_s, det_c


def detector_like(rng: np.random.Generator, b: int, a: int, c: int, extent: float = 1344.0) -> tuple[np.ndarray, np.ndarray]:
    """Stress data for the kernel tests: boxes around 64 clustered centres and dense scores (u ** 12: about 22 % of the
    (point, class) pairs score above 0.05, far more candidates than a detector gives; ``detections_like`` is that)."""
    centres = rng.uniform(0, extent, (b, 64, 2))
    pick = rng.integers(0, 64, (b, a))
    xy = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 12, (b, a, 2))
    wh = rng.uniform(16, 256, (b, a, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1).astype(np.float32)
    scores = (rng.random((b, a, c)) ** 12).astype(np.float32)
    return boxes, scores


def _iou_to(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return inter / union


def detections_like(rng: np.random.Generator, b: int, a: int = 3350, c: int = 80, hw: tuple[int, int] = (800, 1344)
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pre-NMS outputs drawn like a detector's after its per-level pre-selection (A = 3350 points at 800 x 1344 with
    nms_pre 1000): per image 8 to 25 objects of random classes and sizes (24-400 px); 55 % of the points sit on an
    object with a jittered box (centre +-15 % of its size, size x exp(N(0, 0.15))) whose object-class score is its
    IoU with the object squared times U(0.5, 1), plus two confusable classes at a fraction of it; the other points are
    background boxes whose class scores exceed 0.05 with probability 0.75 %. About 4,000 candidates per image at
    score > 0.05 (``candidate_density`` measures it). Returns boxes [b, a, 4], scores [b, a, c], float32."""
    h, w = hw
    boxes = np.empty((b, a, 4), np.float32)
    scores = np.empty((b, a, c), np.float32)
    for i in range(b):
        n = int(rng.integers(8, 26))
        size = np.exp(rng.uniform(np.log(24), np.log(400), (n, 2)))
        centre = rng.uniform(0, 1, (n, 2)) * (w, h)
        objects = np.concatenate([centre - size / 2, centre + size / 2], 1)
        cls = rng.integers(0, c, n)
        owner = np.where(rng.random(a) < 0.55, rng.integers(0, n, a), -1)
        # background: random boxes, class scores mostly below the threshold
        bg_size = np.exp(rng.uniform(np.log(16), np.log(300), (a, 2)))
        bg_centre = rng.uniform(0, 1, (a, 2)) * (w, h)
        img_boxes = np.concatenate([bg_centre - bg_size / 2, bg_centre + bg_size / 2], 1)
        img_scores = np.where(rng.random((a, c)) < 0.0075, rng.uniform(0.05, 0.2, (a, c)), rng.uniform(0, 0.05, (a, c)))
        on = np.nonzero(owner >= 0)[0]
        obj = owner[on]
        jitter_c = (objects[obj, :2] + objects[obj, 2:]) / 2 + rng.normal(0, 0.15, (on.size, 2)) * size[obj]
        jitter_s = size[obj] * np.exp(rng.normal(0, 0.15, (on.size, 2)))
        img_boxes[on] = np.concatenate([jitter_c - jitter_s / 2, jitter_c + jitter_s / 2], 1)
        mine, theirs = img_boxes[on], objects[obj]  # IoU of each point's box with its own object, elementwise
        inter = np.prod(np.clip(np.minimum(mine[:, 2:], theirs[:, 2:]) - np.maximum(mine[:, :2], theirs[:, :2]), 0, None), 1)
        quality = inter / (np.prod(mine[:, 2:] - mine[:, :2], 1) + np.prod(theirs[:, 2:] - theirs[:, :2], 1) - inter)
        own = quality ** 2 * rng.uniform(0.5, 1.0, on.size)
        img_scores[on] = rng.uniform(0, 0.02, (on.size, c))
        img_scores[on, cls[obj]] = own
        for _ in range(2):  # confusable classes
            img_scores[on, rng.integers(0, c, on.size)] = own * rng.uniform(0.0, 0.35, on.size)
            img_scores[on, cls[obj]] = own
        boxes[i] = np.clip(img_boxes, 0, (w, h, w, h))
        scores[i] = img_scores
    return boxes, scores


def candidate_density(boxes: np.ndarray, scores: np.ndarray, score_thr: float = 0.05, iou_thr: float = 0.6
                      ) -> dict[str, float]:
    """What the data asks of an NMS, measured: candidates per image (pairs with score > score_thr), their fraction of
    all (point, class) pairs, and the fraction of same-class candidate pairs whose IoU is > iou_thr (pairs that can
    suppress each other)."""
    counts, pairs, overlapping = [], 0, 0
    for i in range(scores.shape[0]):
        point, cls = np.nonzero(scores[i] > score_thr)
        counts.append(point.size)
        for k in np.unique(cls):
            members = boxes[i, point[cls == k]].astype(np.float64)
            for j in range(len(members) - 1):
                iou = _iou_to(members[j], members[j + 1:])
                pairs += iou.size
                overlapping += int(np.count_nonzero(iou > iou_thr))
    return {"candidates_per_image": float(np.mean(counts)),
            "candidate_fraction_of_pairs": float(np.mean(counts)) / (scores.shape[1] * scores.shape[2]),
            "same_class_pairs": pairs, "same_class_pairs_above_iou_fraction": overlapping / pairs if pairs else 0.0}


def torchvision_nms(boxes: Any, scores: Any, score_thr: float, iou_thr: float, k: int) -> list:
    """The torchvision path: per image nonzero(score > thr), batched_nms, first K."""
    import torchvision

    out = []
    for i in range(scores.shape[0]):
        idx, cls = (scores[i] > score_thr).nonzero(as_tuple=True)
        s = scores[i, idx, cls]
        keep = torchvision.ops.batched_nms(boxes[i, idx], s, cls, iou_thr)[:k]
        out.append((idx[keep], cls[keep], s[keep]))
    return out


def _cuda_ms(fn: Any, repeats: int) -> float:
    """Mean milliseconds of ``fn`` over ``repeats`` back-to-back calls, timed with CUDA events (after 3 warm-up calls)."""
    import torch

    for _ in range(3):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / repeats


def bench(batches: tuple[int, ...] = (1, 8, 32), repeats: int = 20, seed: int = 0) -> dict[str, Any]:
    """Ours vs torchvision's per-image batched_nms on ``detections_like`` data: kept sets compared image by image,
    then CUDA-event timings; returns a JSON-ready dict (figures per batch and the data's measured density)."""
    import torch

    nms = CudaNms()
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"data": "detections_like: A=3350 points (800x1344, nms_pre 1000), C=80", "score_thr": 0.05,
                              "iou_thr": 0.6, "max_dets": 100, "repeats": repeats, "timing": "CUDA events", "batches": {}}
    identical_all = True
    for b in batches:
        boxes, scores = detections_like(rng, b)
        density = candidate_density(boxes[: min(b, 4)], scores[: min(b, 4)])
        tb, ts = torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda()
        num, det_b, det_s, det_c = (t.cpu().numpy() for t in nms.run_torch(tb, ts))
        ref = torchvision_nms(tb, ts, 0.05, 0.6, 100)
        identical = 0
        for i, (idx, cls, s) in enumerate(ref):
            n = int(num[i, 0])
            identical += int(n == len(idx) and np.array_equal(det_c[i, :n], cls.cpu().numpy())
                             and np.array_equal(det_s[i, :n], s.cpu().numpy())
                             and np.array_equal(det_b[i, :n], boxes[i, idx.cpu().numpy()]))
        identical_all &= identical == b
        ours = _cuda_ms(lambda: nms.run_torch(tb, ts), repeats)
        theirs = _cuda_ms(lambda: torchvision_nms(tb, ts, 0.05, 0.6, 100), max(3, repeats // 4))
        result["batches"][str(b)] = {"gflv2_nms_ms": round(ours, 4), "torchvision_batched_nms_ms": round(theirs, 4),
                                     "speedup": round(theirs / ours, 2) if ours > 0 else None,
                                     "identical_kept_sets": f"{identical}/{b}", **density}
        print(f"B={b}: gflv2_nms {ours:.3f} ms, torchvision {theirs:.3f} ms, identical {identical}/{b}, "
              f"{density['candidates_per_image']:.0f} candidates/image, "
              f"{100 * density['same_class_pairs_above_iou_fraction']:.2f} % of same-class pairs above IoU 0.6", flush=True)
    result["identical_kept_sets"] = identical_all
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", action="store_true", help="time ours vs torchvision at batch 1, 8, 32")
    parser.add_argument("--json", help="write the benchmark's figures to this file")
    args = parser.parse_args()
    if not args.bench:
        parser.print_help()
        sys.exit(0)
    figures = bench()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    sys.exit(0 if figures["identical_kept_sets"] else 1)
