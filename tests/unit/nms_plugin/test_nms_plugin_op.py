"""The CPU twin of GFLV2NMS_TRT in onnxruntime against the reference post-processing and ONNX's own NMS tests.

Reference: ``model.deploy.PaddedNMS`` (``model.nms.multiclass_nms`` per image, padded). The op must give the
same keep-set in the same order with bit-identical boxes and scores (plugins/README.md: same float32 IoU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from gflv2_deploy import nms_plugin, spec
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.nms import plugin_nms_attributes
from gflv2_deploy.model.deploy import PaddedNMS
from gflv2_deploy.onnx_ir import stamp_lowest_ir_version

ort = pytest.importorskip("onnxruntime")


def nms_graph(num_classes: int, **attrs: Any) -> onnx.ModelProto:
    """A one-node graph: boxes [B, A, 4], scores [B, A, C] -> the four end-to-end outputs."""
    node = helper.make_node(nms_plugin.OP_TYPE, [spec.OUT_BOXES, spec.OUT_SCORES], list(spec.END_TO_END_OUTPUTS),
                            domain=nms_plugin.OP_DOMAIN, **plugin_nms_attributes(**attrs))
    types = (TensorProto.INT32, TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.INT32)
    graph = helper.make_graph(
        [node], "gflv2_nms_probe",
        [helper.make_tensor_value_info(spec.OUT_BOXES, TensorProto.FLOAT, ["B", "A", 4]),
         helper.make_tensor_value_info(spec.OUT_SCORES, TensorProto.FLOAT, ["B", "A", num_classes])],
        [helper.make_tensor_value_info(n, t, None) for n, t in zip(spec.END_TO_END_OUTPUTS, types)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(nms_plugin.OP_DOMAIN, nms_plugin.OP_DOMAIN_VERSION)]
    return stamp_lowest_ir_version(helper.make_model(graph, opset_imports=opsets))  # IR 8: onnxruntime 1.30 reads <= 13


def run_op(boxes: np.ndarray, scores: np.ndarray, **attrs: Any) -> list[np.ndarray]:
    options = ort.SessionOptions()
    nms_plugin.register_ort_library(options)
    session = ort.InferenceSession(nms_graph(scores.shape[2], **attrs).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {spec.OUT_BOXES: boxes, spec.OUT_SCORES: scores})


def reference(boxes: np.ndarray, scores: np.ndarray, score_thr: float, iou_thr: float, max_dets: int) -> list[np.ndarray]:
    out = PaddedNMS(score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets)(torch.from_numpy(boxes), torch.from_numpy(scores))
    return [t.numpy() for t in out]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for name, g, w in zip(spec.END_TO_END_OUTPUTS, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


def random_boxes(rng: np.random.Generator, b: int, a: int, extent: float = 400.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (b, a, 2))
    wh = rng.uniform(1, extent / 4, (b, a, 2))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


@pytest.mark.parametrize("seed,b,a,c,k,score_thr,iou_thr", [
    (0, 1, 500, 80, 100, 0.05, 0.6),
    (1, 3, 300, 6, 50, 0.05, 0.6),
    (2, 2, 1000, 20, 100, 0.3, 0.5),
    (3, 4, 200, 3, 300, 0.001, 0.7),
    (4, 1, 64, 1, 10, 0.0, 0.0),
])
def test_random_inputs_match_reference(nms_ort_lib: Path, seed: int, b: int, a: int, c: int, k: int,
                                       score_thr: float, iou_thr: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, b, a)
    scores = (rng.random((b, a, c)) ** 4).astype(np.float32)  # most below 0.05, as a detector's
    got = run_op(boxes, scores, score_thr=score_thr, iou_thr=iou_thr, max_dets=k)
    assert_same(got, reference(boxes, scores, score_thr, iou_thr, k))


def adversarial_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five images: grid boxes with duplicates and exact score ties; zero-area and flipped boxes; nothing above the
    threshold; more survivors than K; negative coordinates."""
    a, c = 120, 4
    grid = rng.integers(0, 6, (5, a, 4)).astype(np.float32) * 8.0
    boxes = np.concatenate([np.minimum(grid[..., :2], grid[..., 2:]), np.maximum(grid[..., :2], grid[..., 2:]) + 8], -1)
    scores = rng.integers(0, 6, (5, a, c)).astype(np.float32) / 10.0  # ties everywhere, some exactly at 0.1 / 0.5
    boxes[1, ::3, 2:] = boxes[1, ::3, :2]  # zero area
    boxes[1, 1::3] = boxes[1, 1::3][:, [2, 3, 0, 1]]  # flipped corners
    scores[2] = np.minimum(scores[2], 0.1)  # at most the threshold: nothing passes (strict >)
    boxes[3] = np.arange(a, dtype=np.float32)[:, None] * 20.0 + np.array([0, 0, 10, 10], np.float32)  # disjoint
    boxes[4] -= 30.0  # negative coordinates
    return boxes.astype(np.float32), scores.astype(np.float32)


@pytest.mark.parametrize("iou_thr", [0.0, 0.5, 0.6, 1.0])
def test_adversarial_inputs_match_reference(nms_ort_lib: Path, iou_thr: float) -> None:
    boxes, scores = adversarial_batch(np.random.default_rng(7))
    got = run_op(boxes, scores, score_thr=0.1, iou_thr=iou_thr, max_dets=25)
    assert_same(got, reference(boxes, scores, 0.1, iou_thr, 25))
    assert got[0][2, 0] == 0 and got[0][3, 0] == 25  # nothing above the threshold; more survivors than K
    assert (got[3][2] == -1).all() and (got[2][2] == 0).all() and (got[1][2] == 0).all()  # padding


def test_levels_smaller_than_nms_pre(nms_ort_lib: Path) -> None:
    """Pre-selected levels padded to nms_pre rows (score 0) give the reference result on the real rows."""
    rng = np.random.default_rng(3)
    nms_pre, real = 50, (50, 31, 7)  # level sizes below nms_pre are padded
    c = 5
    boxes = np.zeros((2, nms_pre * len(real), 4), np.float32)
    scores = np.zeros((2, nms_pre * len(real), c), np.float32)
    rows = np.concatenate([np.arange(n) + i * nms_pre for i, n in enumerate(real)])
    boxes[:, rows] = random_boxes(rng, 2, len(rows), 100.0)
    scores[:, rows] = rng.random((2, len(rows), c)).astype(np.float32)
    got = run_op(boxes, scores, score_thr=0.05, iou_thr=0.6, max_dets=100, nms_pre=nms_pre, num_levels=len(real))
    assert_same(got, reference(boxes[:, rows], scores[:, rows], 0.05, 0.6, 100))


def test_candidate_count_must_match_nms_pre(nms_ort_lib: Path) -> None:
    boxes = np.zeros((1, 9, 4), np.float32)
    scores = np.zeros((1, 9, 2), np.float32)
    with pytest.raises(Exception, match="nms_pre \\* num_levels"):
        run_op(boxes, scores, score_thr=0.05, iou_thr=0.6, max_dets=5, nms_pre=2, num_levels=5)


def test_bad_attribute_is_refused(nms_ort_lib: Path) -> None:
    with pytest.raises(Exception, match="iou_threshold"):
        run_op(np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 1), np.float32), score_thr=0.05, iou_thr=1.5, max_dets=5)


def test_missing_library_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(nms_plugin.ENV_ORT_LIB, str(tmp_path / "nope.so"))
    with pytest.raises(UserError, match="build_cpp.sh"):
        nms_plugin.ort_library_path()


# --- ONNX's NonMaxSuppression test cases as an external oracle ------------------------------------------
# Same semantics where: corner boxes (center_point_box = 0; ONNX's [y1, x1, y2, x2] gives the same IoU as our
# [x1, y1, x2, y2]), score > score_threshold, suppression at IoU > iou_threshold. Not comparable: the centre format,
# and flipped corners (ONNX reorders them, the reference treats them as empty boxes). ONNX's limit is per class,
# ours global: run with K = every candidate and cut each class to max_output_boxes_per_class.
_NOT_COMPARABLE = {"test_nonmaxsuppression_center_point_box_format", "test_nonmaxsuppression_flipped_coordinates"}


def _onnx_cases(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, onnx.NodeProto, list[np.ndarray], np.ndarray]]:
    from onnx.backend.test.case.node import nonmaxsuppression as cases

    found: list[tuple[str, onnx.NodeProto, list[np.ndarray], np.ndarray]] = []
    monkeypatch.setattr(cases, "expect", lambda node, inputs, outputs, name, **_: found.append((name, node, inputs, outputs[0])))
    for attr in dir(cases.NonMaxSuppression):
        if attr.startswith("export"):
            getattr(cases.NonMaxSuppression, attr)()
    return found


def test_onnx_backend_nonmaxsuppression_cases(nms_ort_lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compared = []
    for name, node, inputs, expected in _onnx_cases(monkeypatch):
        if name in _NOT_COMPARABLE:
            continue
        assert all(a.name != "center_point_box" or a.i == 0 for a in node.attribute), name
        boxes, scores_bca = inputs[0], inputs[1]
        per_class = int(inputs[2][0]) if len(inputs) > 2 else 0
        iou_thr = float(inputs[3][0]) if len(inputs) > 3 else 0.0
        score_thr = float(inputs[4][0]) if len(inputs) > 4 else float(scores_bca.min()) - 1.0
        scores = np.ascontiguousarray(scores_bca.transpose(0, 2, 1))  # [B, C, A] -> [B, A, C]
        b, a, c = scores.shape
        num, det_boxes, det_scores, det_classes = run_op(boxes, scores, score_thr=score_thr, iou_thr=iou_thr, max_dets=a * c)
        got = []
        for i in range(b):
            taken = {cls: 0 for cls in range(c)}
            for j in range(int(num[i, 0])):
                cls = int(det_classes[i, j])
                if taken[cls] == per_class:
                    continue
                taken[cls] += 1
                # the kept box is the lowest-index anchor with these coordinates and this score
                match = np.flatnonzero((boxes[i] == det_boxes[i, j]).all(1) & (scores[i, :, cls] == det_scores[i, j]))
                got.append((i, cls, int(match[0])))
        want = sorted(map(tuple, expected.tolist()), key=lambda t: (t[0], t[1]))
        got = sorted(got, key=lambda t: (t[0], t[1]))  # stable: keeps score order within (image, class)
        assert got == [tuple(int(v) for v in t) for t in want], name
        compared.append(name)
    assert len(compared) >= 7, compared
