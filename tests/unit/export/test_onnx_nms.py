"""End-to-end ONNX graphs (``--nms onnx``): NonMaxSuppression + padded top-K against the torch reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from gflv2_deploy import spec
from gflv2_deploy.export.nms import attach_onnx_nms
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.deploy import DeployModel, PaddedNMS
from gflv2_deploy.model.nms import box_iou, multiclass_nms
from gflv2_deploy.onnx_ir import stamp_lowest_ir_version


def _session(model_or_path) -> ort.InferenceSession:
    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def assert_same_detections(ref: tuple[torch.Tensor, torch.Tensor, torch.Tensor], num: int, boxes: np.ndarray,
                           scores: np.ndarray, classes: np.ndarray, max_dets: int) -> None:
    """Greedy one-to-one IoU matching (same class, IoU >= 0.99, score within 1e-4), never by position.

    Boxes lying wholly outside a narrower ``img_shape`` are clamped to zero width (IoU 0 with anything),
    so two boxes also match when all their corners agree within 0.01 px.

    A detection may stay unmatched only when its score is within 1e-4 of the cut-off score of a list
    truncated at ``max_dets`` (a near-tie at the K-th place can fall either way).
    """
    ref_boxes, ref_scores, ref_labels = ref
    assert num == min(len(ref_scores), max_dets) or abs(num - len(ref_scores)) <= 1
    got_b, got_s, got_c = torch.from_numpy(boxes[:num]), torch.from_numpy(scores[:num]), torch.from_numpy(classes[:num])
    iou = box_iou(ref_boxes, got_b) if len(ref_scores) and num else torch.zeros(len(ref_scores), num)
    close = (ref_boxes[:, None, :] - got_b[None, :, :]).abs().amax(dim=-1) <= 1e-2 if len(ref_scores) and num else iou > 0
    ok = ((iou >= 0.99) | close) & (ref_labels[:, None] == got_c[None, :].long()) & ((ref_scores[:, None] - got_s[None, :]).abs() <= 1e-4)
    used = torch.zeros(num, dtype=torch.bool)
    unmatched_ref = []
    for i in range(len(ref_scores)):
        candidates = torch.nonzero(ok[i] & ~used).flatten()
        if len(candidates):
            used[candidates[0]] = True
        else:
            unmatched_ref.append(i)
    cut = float(min(ref_scores[-1], got_s[-1])) if num else 0.0
    truncated = len(ref_scores) >= max_dets
    for i in unmatched_ref:
        assert truncated and abs(float(ref_scores[i]) - cut) <= 1e-4, f"reference detection {i} has no match"
    for j in torch.nonzero(~used).flatten().tolist():
        assert truncated and abs(float(got_s[j]) - cut) <= 1e-4, f"onnx detection {j} has no match"


def test_onnx_nms_matches_torch_reference(exported, tiny_model, make_images, sizes) -> None:
    session = _session(exported["onnx"])
    deploy = DeployModel(tiny_model).eval()
    for seed, hw in enumerate(sizes):
        x = make_images(3, hw, 10 + seed)
        img_shape = np.array([[hw[0], hw[1]], [hw[0] - 32, hw[1] - 64], [hw[0], hw[1] // 2]], np.float32)
        with torch.no_grad():
            ref_boxes, ref_scores = deploy(x, torch.from_numpy(img_shape))
        num, boxes, scores, classes = session.run(list(spec.END_TO_END_OUTPUTS), {"images": x.numpy(), "img_shape": img_shape})
        assert num.dtype == np.int32 and num.shape == (3, 1) and classes.dtype == np.int32
        assert boxes.shape == (3, 100, 4) and scores.shape == (3, 100)
        for i in range(3):
            # the reference post-processing on torch's decoded outputs, without per-level top-k
            ref = multiclass_nms(ref_boxes[i], ref_scores[i], 0.05, 0.6, 100)
            assert len(ref[1]) > 20  # the weights give a real NMS workload
            assert_same_detections(ref, int(num[i, 0]), boxes[i], scores[i], classes[i], 100)


def test_padding_sorting_and_torch_padded_nms_agree(exported, tiny_model, make_images) -> None:
    """Tiny input with few candidates: num_dets < K, padding is boxes 0 / scores 0 / classes -1; PaddedNMS agrees."""
    session = _session(exported["onnx"])
    x = make_images(2, (64, 96), 3)
    img_shape = np.array([[64, 96], [40, 96]], np.float32)
    num, boxes, scores, classes = session.run(list(spec.END_TO_END_OUTPUTS), {"images": x.numpy(), "img_shape": img_shape})
    with torch.no_grad():
        ref_boxes, ref_scores = DeployModel(tiny_model)(x, torch.from_numpy(img_shape))
        t_num, t_boxes, t_scores, t_classes = PaddedNMS(score_thr=0.05, iou_thr=0.6, max_dets=100)(ref_boxes, ref_scores)
    assert np.array_equal(num, t_num.numpy())
    for i in range(2):
        k = int(num[i, 0])
        assert 0 < k < 100
        assert np.all(np.diff(scores[i, :k]) <= 0) and np.all(scores[i, :k] > 0.05)
        assert np.all(boxes[i, k:] == 0) and np.all(scores[i, k:] == 0) and np.all(classes[i, k:] == -1)
        assert np.all((classes[i, :k] >= 0) & (classes[i, :k] < 80))
        assert_same_detections((t_boxes[i, :k], t_scores[i, :k], t_classes[i, :k].long()), k, boxes[i], scores[i], classes[i], 100)


def test_k_larger_than_all_candidates(tmp_path, make_model, make_images) -> None:
    """C x A < K (2 classes, 32 x 32 input: 23 points x 2 classes = 46 pairs < K = 100): the padded top-K runs."""
    model = make_model(seed=1, num_classes=2)
    out = tmp_path / "two_class.onnx"
    export_onnx(model, out, nms="onnx", dynamic_hw=True, input_hw=(64, 64), score_thr=0.0, max_dets=100)
    x = make_images(2, (32, 32), 5)
    num, boxes, scores, classes = _session(out).run(None, {"images": x.numpy(), "img_shape": np.full((2, 2), 32, np.float32)})
    with torch.no_grad():
        ref_boxes, ref_scores = DeployModel(model)(x, torch.full((2, 2), 32.0))
    for i in range(2):
        k = int(num[i, 0])
        assert 0 < k <= 46 and np.all(classes[i, k:] == -1) and np.all(classes[i, :k] >= 0)
        ref = multiclass_nms(ref_boxes[i], ref_scores[i], 0.0, 0.6, 100)
        assert_same_detections(ref, k, boxes[i], scores[i], classes[i], 100)


def _toy_tail(score_thr: float, iou_thr: float, max_dets: int) -> onnx.ModelProto:
    """boxes/scores pass through Identity as the 'pre-NMS graph', then the NMS tail is attached."""
    b = helper.make_tensor_value_info("in_boxes", TensorProto.FLOAT, ["batch", "anchors", 4])
    s = helper.make_tensor_value_info("in_scores", TensorProto.FLOAT, ["batch", "anchors", 3])
    nodes = [helper.make_node("Identity", ["in_boxes"], ["boxes"]), helper.make_node("Identity", ["in_scores"], ["scores"])]
    outs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", "anchors", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "anchors", 3])]
    model = helper.make_model(helper.make_graph(nodes, "toy", [b, s], outs), opset_imports=[helper.make_opsetid("", 17)])
    attach_onnx_nms(model, score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets)
    stamp_lowest_ir_version(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def test_tail_semantics_on_handmade_boxes() -> None:
    """score > thr (equal dropped), IoU > thr suppresses (equal kept), per class, multi-label, K cut, padding."""
    boxes = np.array([[[0, 0, 10, 10],     # 0
                       [0, 0, 10, 5],      # 1: IoU with 0 is exactly 0.5
                       [1, 0, 11, 10],     # 2: IoU with 0 is 9/11 > 0.5
                       [50, 50, 60, 60],   # 3
                       [0, 0, 0, 10]]],    # 4: zero area
                     np.float32)
    scores = np.array([[[0.9, 0.0, 0.3],
                        [0.8, 0.0, 0.0],
                        [0.7, 0.6, 0.0],
                        [0.05, 0.0, 0.5],   # class 0 score equal to the threshold: dropped
                        [0.2, 0.0, 0.0]]], np.float32)
    session = _session(_toy_tail(score_thr=0.05, iou_thr=0.5, max_dets=6))
    num, det_boxes, det_scores, det_classes = session.run(None, {"in_boxes": boxes, "in_scores": scores})
    got = [(int(c), round(float(s), 5)) for c, s in zip(det_classes[0], det_scores[0])]
    # class 0: 0 (0.9) keeps 1 (IoU == 0.5) and suppresses 2; 4 has zero area; class 1: box 2; class 2: boxes 3, 0
    assert int(num[0, 0]) == 6
    assert got == [(0, 0.9), (0, 0.8), (1, 0.6), (2, 0.5), (2, 0.3), (0, 0.2)]
    assert np.array_equal(det_boxes[0, 2], boxes[0, 2]) and np.array_equal(det_boxes[0, 4], boxes[0, 0])
    # the same through the torch reference contract
    t_num, t_boxes, t_scores, t_classes = PaddedNMS(score_thr=0.05, iou_thr=0.5, max_dets=6)(torch.from_numpy(boxes), torch.from_numpy(scores))
    assert int(t_num) == 6 and t_classes[0].tolist() == [int(c) for c, _ in got]
    # K smaller than the survivors: the top K by score; K larger: padding
    num3, _, s3, c3 = _session(_toy_tail(0.05, 0.5, 3)).run(None, {"in_boxes": boxes, "in_scores": scores})
    assert int(num3[0, 0]) == 3 and s3[0].tolist() == pytest.approx([0.9, 0.8, 0.6])
    num9, b9, s9, c9 = _session(_toy_tail(0.05, 0.5, 9)).run(None, {"in_boxes": boxes, "in_scores": scores})
    assert int(num9[0, 0]) == 6 and c9[0, 6:].tolist() == [-1] * 3 and s9[0, 6:].tolist() == [0] * 3
    assert np.all(b9[0, 6:] == 0)
    # the graph holds 5 x 3 = 15 pairs and K = 20 > 15: the padded TopK still runs
    num20, _, _, c20 = _session(_toy_tail(0.0, 0.5, 20)).run(None, {"in_boxes": boxes, "in_scores": scores})
    assert int(num20[0, 0]) <= 15 and c20[0, int(num20[0, 0]):].tolist() == [-1] * (20 - int(num20[0, 0]))
