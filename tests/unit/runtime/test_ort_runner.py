"""The onnxruntime runner: contract from metadata, input validation, parity with torch, detector."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from gflv2_deploy import spec
from gflv2_deploy.config import load_config
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.nms import box_iou
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.ort_runner import OrtRunner, load_onnx_detector
from gflv2_deploy.eval.compare import align_selected_rows
from gflv2_deploy.runtime.detector import contract_test_config
from gflv2_deploy.runtime.torch_runner import TorchRunner
from gflv2_deploy.onnx_ir import stamp_lowest_ir_version


def _batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def test_runner_reads_its_contract(onnx_files) -> None:
    with OrtRunner(onnx_files["prenms"], threads=1) as runner:
        assert isinstance(runner, Runner) and runner.name == "onnxruntime"
        assert runner.output_names == spec.PRE_NMS_OUTPUTS and runner.has_img_shape_input
        contract = runner.contract
        assert contract.model.class_names == tuple(f"class_{i}" for i in range(6))
        assert contract.model.config_name == "gflv2_tiny" and contract.postprocessing.nms == "none"
        cfg = contract_test_config(contract)
        assert (cfg.score_thr, cfg.iou_thr, cfg.max_per_img, cfg.scale) == (0.05, 0.6, 100, load_config("gflv2_tiny").test.scale)
        assert runner.static_hw is None
    e2e = OrtRunner(onnx_files["e2e"])
    assert e2e.output_names == spec.END_TO_END_OUTPUTS
    assert OrtRunner(onnx_files["static"]).static_hw == (96, 128)


def test_outputs_match_torch_runner(onnx_files, runtime_model) -> None:
    x = _batch(2, 128, 160, 1)
    img_shape = np.array([[128, 160], [100, 130]], np.float32)
    got = OrtRunner(onnx_files["prenms"], threads=2).infer(x, img_shape)
    ref = TorchRunner(runtime_model, nms_pre=1000, pad_levels=True).infer(x, img_shape)  # the graph's selection
    ref, unpaired = align_selected_rows(ref, got, 1000)
    assert unpaired <= 10
    assert np.abs(got["scores"] - ref["scores"]).max() <= 1e-4
    assert np.abs(got["boxes"] - ref["boxes"]).max() <= 1e-3


def test_missing_img_shape_means_the_whole_input(onnx_files) -> None:
    runner = OrtRunner(onnx_files["prenms"])
    x = _batch(2, 64, 96, 2)
    default = runner.infer(x)
    full = runner.infer(x, np.array([[64, 96], [64, 96]], np.float32))
    assert np.array_equal(default["boxes"], full["boxes"])
    assert default["boxes"][..., 2].max() <= 96 and default["boxes"][..., 3].max() <= 64
    # a graph without img_shape never gets it, even when the caller passes it
    static = OrtRunner(onnx_files["static"])
    out = static.infer(_batch(2, 96, 128), np.array([[50, 50], [50, 50]], np.float32))
    assert out["boxes"].shape == (2, 5 * 1000, 4) and out["boxes"][..., 2].max() > 50  # 5 levels x nms_pre rows


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((3, 64, 64), np.float32), "rank 4"),
        (np.zeros((1, 1, 64, 64), np.float32), "3 channels"),
        (np.zeros((1, 3, 64, 64), np.float64), "float32"),
        (np.zeros((1, 3, 64, 64), np.uint8), "float32"),
        (np.zeros((1, 3, 70, 64), np.float32), "multiples of 32"),
        ([[0.0]], "numpy array"),
    ],
)
def test_bad_inputs_raise_user_error(onnx_files, images, message) -> None:
    runner = OrtRunner(onnx_files["prenms"])
    with pytest.raises(UserError, match=message):
        runner.infer(images)


def test_static_graph_refuses_other_sizes(onnx_files) -> None:
    runner = OrtRunner(onnx_files["static"])
    with pytest.raises(UserError, match="fixed input of 96x128"):
        runner.infer(_batch(2, 64, 128))
    with pytest.raises(UserError, match="fixed batch of 2"):
        runner.infer(_batch(3, 96, 128))
    with pytest.raises(UserError, match="img_shape"):
        OrtRunner(onnx_files["prenms"]).infer(_batch(2, 64, 64), np.zeros((3, 2), np.float32))


def test_foreign_and_plugin_onnx_are_refused(tmp_path, onnx_files) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 32, 32])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    stamp_lowest_ir_version(model)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(UserError, match="carries no gflv2-deploy graph contract"):
        OrtRunner(foreign)
    with pytest.raises(UserError, match="EfficientNMS_TRT"):
        OrtRunner(onnx_files["trt"])
    with pytest.raises(UserError, match="not found"):
        OrtRunner(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="not available"):
        OrtRunner(onnx_files["prenms"], providers=["NoSuchExecutionProvider"])


def _assert_match(a: spec.Detections, b: spec.Detections) -> None:
    """One-to-one matching by IoU >= 0.99 (or corners within 0.01 px, for boxes clamped to zero width),
    same label and score within 1e-4 (never by position)."""
    assert len(a) == len(b)
    iou = box_iou(torch.from_numpy(a.boxes), torch.from_numpy(b.boxes)).numpy()
    close = np.abs(a.boxes[:, None, :] - b.boxes[None, :, :]).max(axis=-1) <= 1e-2
    ok = ((iou >= 0.99) | close) & (a.labels[:, None] == b.labels[None, :]) & (np.abs(a.scores[:, None] - b.scores[None, :]) <= 1e-4)
    used = np.zeros(len(b), bool)
    for i in range(len(a)):
        j = np.flatnonzero(ok[i] & ~used)
        assert len(j), f"detection {i} ({a.labels[i]}, {a.scores[i]:.4f}) has no match"
        used[j[0]] = True


def test_onnx_detectors_agree_with_the_torch_detector(onnx_files, runtime_model) -> None:
    """BGR pictures -> detections in original pixels: pre-NMS graph + host NMS, NMS in the graph, torch."""
    import dataclasses

    from gflv2_deploy.runtime.detector import Detector

    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    pictures = [np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1), rng.integers(0, 255, (150, 100, 3), dtype=np.uint8)]
    with load_onnx_detector(onnx_files["prenms"]) as pre, load_onnx_detector(onnx_files["e2e"]) as e2e:
        assert pre.class_names == e2e.class_names == tuple(f"class_{i}" for i in range(6))
        assert pre.pad_to is None and pre.test_cfg == e2e.test_cfg and pre.test_cfg.nms_pre == 1000
        dets_pre, dets_e2e = pre.detect(pictures), e2e.detect(pictures)
    # the graphs select the top nms_pre points per level as the reference post-processing does
    reference = Detector(TorchRunner(runtime_model), pre.test_cfg, pre.class_names)
    for d_pre, d_e2e, d_ref in zip(dets_pre, dets_e2e, reference.detect(pictures)):
        assert len(d_ref) > 5
        _assert_match(d_ref, d_pre)
        _assert_match(d_ref, d_e2e)
    static = load_onnx_detector(onnx_files["static"])
    assert static.pad_to == (96, 128)


def test_a_failing_run_is_one_line_without_onnxruntime_log_text(onnx_files, tmp_path, capfd) -> None:
    """onnxruntime printed its own "[E:onnxruntime:...]" log line before raising; the runner reports one UserError."""
    from onnx import numpy_helper

    model = onnx.load(str(onnx_files["prenms"]))
    inits = {i.name: i for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "Reshape" and n.input[1] in inits)
    shape = numpy_helper.to_array(inits[node.input[1]])
    inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.array([7, 11, 13][: len(shape)], shape.dtype), node.input[1]))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    runner = OrtRunner(broken)
    capfd.readouterr()
    with pytest.raises(UserError, match="onnxruntime failed running broken.onnx"):
        runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert "onnxruntime:" not in capfd.readouterr().err
