"""ctypes wrapper of libgflv2_nms_cuda.so (plugins/gflv2_nms/include/gflv2_nms/nms_cuda.h) for GPU tests and timing.

    python plugins/gflv2_nms/tools/cuda_nms.py --bench     # ours vs torchvision batched_nms + top-K, 800x1344

Needs a CUDA GPU; torch with CUDA and torchvision only for --bench.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
DEFAULT_LIB = REPO / "build" / "gflv2_nms" / "libgflv2_nms_cuda.so"

_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")


class CudaNms:
    """The CUDA kernels on host arrays: ``run(boxes [B,A,4], scores [B,A,C]) -> (num, boxes, scores, classes)``."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.lib = ctypes.CDLL(str(path or os.environ.get("GFLV2_NMS_CUDA_LIB", DEFAULT_LIB)))
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

    def run_torch(self, boxes, scores, *, score_thr: float = 0.05, iou_thr: float = 0.6, max_dets: int = 100):
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
    """Boxes around clustered centres and sparse scores (~1 % of pairs above 0.05), like GFLV2's outputs."""
    centres = rng.uniform(0, extent, (b, 64, 2))
    pick = rng.integers(0, 64, (b, a))
    xy = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 12, (b, a, 2))
    wh = rng.uniform(16, 256, (b, a, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1).astype(np.float32)
    scores = (rng.random((b, a, c)) ** 12).astype(np.float32)
    return boxes, scores


def torchvision_nms(boxes, scores, score_thr: float, iou_thr: float, k: int):
    """The torchvision path: per image nonzero(score > thr), batched_nms, first K."""
    import torchvision

    out = []
    for i in range(scores.shape[0]):
        idx, cls = (scores[i] > score_thr).nonzero(as_tuple=True)
        s = scores[i, idx, cls]
        keep = torchvision.ops.batched_nms(boxes[i, idx], s, cls, iou_thr)[:k]
        out.append((idx[keep], cls[keep], s[keep]))
    return out


def bench() -> None:
    import torch

    nms = CudaNms()
    rng = np.random.default_rng(0)
    a = 22400  # 800 x 1344: 16800 + 4200 + 1050 + 273 + 77 points
    for b in (1, 8):
        boxes, scores = detector_like(rng, b, a, 80)
        tb, ts = torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda()
        for name, fn in (("gflv2_nms", lambda: nms.run_torch(tb, ts)), ("torchvision", lambda: torchvision_nms(tb, ts, 0.05, 0.6, 100))):
            for _ in range(5):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(50):
                fn()
            torch.cuda.synchronize()
            print(f"B={b} A={a} C=80 {name}: {(time.perf_counter() - t0) / 50 * 1e3:.3f} ms", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", action="store_true")
    if parser.parse_args().bench:
        bench()
    else:
        parser.print_help()
        sys.exit(0)
