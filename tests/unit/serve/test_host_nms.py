"""The numpy host NMS (Triton postprocessing) is the twin of model/nms.py: same detections, same order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gflv2_deploy.model.nms import multiclass_nms
from gflv2_deploy.serve.host_nms import multiclass_nms_np


@pytest.mark.parametrize("seed", range(6))
def test_twin_of_the_torch_nms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, c = 400, 5
    xy = rng.uniform(-20, 300, (k, 2)).astype(np.float32)
    wh = rng.uniform(0, 80, (k, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 0.3, (k, c)).astype(np.float32)
    scores[rng.integers(0, k, 40), rng.integers(0, c, 40)] = 0.25  # exact ties across boxes and classes
    boxes[10:20] = boxes[0]  # duplicates
    ref = multiclass_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.05, 0.6, 100)
    got = multiclass_nms_np(boxes, scores, 0.05, 0.6, 100)
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r.numpy(), g)


def test_no_candidates() -> None:
    boxes, scores, labels = multiclass_nms_np(np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32), 0.05, 0.6, 100)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.dtype == np.int64
