"""The CUDA kernels (libgflv2_nms_cuda.so through ctypes) against the CPU twin and torchvision. GPU only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins" / "gflv2_nms" / "tools"))

from cuda_nms import CudaNms, detector_like, library_path, torchvision_nms  # noqa: E402
from test_nms_plugin_op import adversarial_batch, assert_same, run_op  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def cuda_nms() -> CudaNms:
    if not library_path().is_file():
        pytest.fail(f"{library_path()} missing: bash scripts/build_cpp.sh (or point GFLV2_NMS_CUDA_LIB at it)")
    return CudaNms()


@pytest.mark.parametrize("b,a,c,k,nms_pre,levels", [(1, 22400, 80, 100, 0, 0), (8, 5000, 80, 100, 1000, 5),
                                                     (3, 300, 6, 50, 0, 0), (2, 4000, 1, 300, 0, 0)])
def test_kernels_equal_the_cpu_twin(cuda_nms: CudaNms, nms_ort_lib: Path, b: int, a: int, c: int, k: int, nms_pre: int,
                                    levels: int) -> None:
    boxes, scores = detector_like(np.random.default_rng(a + c), b, a, c)
    got, _ = cuda_nms.run(boxes, scores, max_dets=k, nms_pre=nms_pre, num_levels=levels)
    assert_same(got, run_op(boxes, scores, score_thr=0.05, iou_thr=0.6, max_dets=k, nms_pre=nms_pre, num_levels=levels))


@pytest.mark.parametrize("iou_thr", [0.0, 0.5, 1.0])
def test_kernels_equal_the_cpu_twin_on_adversarial_inputs(cuda_nms: CudaNms, nms_ort_lib: Path, iou_thr: float) -> None:
    boxes, scores = adversarial_batch(np.random.default_rng(7))
    got, _ = cuda_nms.run(boxes, scores, score_thr=0.1, iou_thr=iou_thr, max_dets=25)
    assert_same(got, run_op(boxes, scores, score_thr=0.1, iou_thr=iou_thr, max_dets=25))


def test_kernels_follow_the_tie_break_rules(cuda_nms: CudaNms, nms_ort_lib: Path) -> None:
    """plugins/README.md: a NaN candidate coordinate makes the class-offset unit NaN (nothing suppressed), and -0.0
    ties +0.0 (lower index first). The kernels must agree with the CPU twin bit for bit on both."""
    rng = np.random.default_rng(5)
    boxes, scores = detector_like(rng, 3, 300, 4)
    boxes[0, 17, 2] = np.nan  # image 0: one NaN coordinate, in a candidate
    scores[0, 17, 1] = 0.9
    boxes[1, :, :] = boxes[1, :1, :]  # image 1: one box, all scores +-0: only the tie-break orders them
    scores[1] = np.where(rng.random(scores[1].shape) < 0.5, np.float32(-0.0), np.float32(0.0))
    got, _ = cuda_nms.run(boxes, scores, score_thr=-0.5, iou_thr=0.6, max_dets=50)
    want = run_op(boxes, scores, score_thr=-0.5, iou_thr=0.6, max_dets=50)
    assert_same(got, want)
    assert int(got[0][0, 0]) == 50  # NaN: nothing suppressed, K reached


def test_kernels_keep_the_same_set_as_torchvision(cuda_nms: CudaNms) -> None:
    torchvision = pytest.importorskip("torchvision")
    assert torchvision
    boxes, scores = detector_like(np.random.default_rng(1), 4, 22400, 80)
    got, _ = cuda_nms.run(boxes, scores)
    ref = torchvision_nms(torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda(), 0.05, 0.6, 100)
    for i, (idx, cls, s) in enumerate(ref):
        n = int(got[0][i, 0])
        assert n == len(idx)
        np.testing.assert_array_equal(got[3][i, :n], cls.cpu().numpy())
        np.testing.assert_array_equal(got[2][i, :n], s.cpu().numpy())
        np.testing.assert_array_equal(got[1][i, :n], boxes[i, idx.cpu().numpy()])
