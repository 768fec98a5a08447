"""INT8 Q/DQ quantisation of the pre-NMS graph (onnxruntime static quantiser) and the shared precision helpers.

gflv2_tiny (non-trivial random head, from conftest) exported at 128 x 160 with a test scale of
(160, 128), calibrated on a few synthetic images of 96 x 128, so that every quantisation takes ~1 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from gflv2_deploy import spec
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.preprocess import preprocess
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.precision import STAGES, find_head_tail, find_stages, prepare_graph, select_nodes
from gflv2_deploy.export.quantize import (
    calibration_batches,
    collect_calibration_images,
    float_region_violations,
    quantize_int8,
)
from gflv2_deploy.runtime.ort_runner import OrtRunner

HW = (128, 160)
CALIB = 6


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib") / "synth"
    generate_synthetic_coco(root, 8, seed=3, image_size=(96, 128), val_fraction=0.25)
    return root / "train"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, prenms: Path, calib_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("quant_out")
    out = {}
    for target in ("tensorrt", "onnxruntime"):
        out[target] = folder / f"tiny.int8.{target}.onnx"
        quantize_int8(prenms, out[target], calib_data=calib_dir, calib_images=CALIB, target=target, method="max")
    return out


def _feeds(calib_dir: Path) -> dict[str, np.ndarray]:
    images = [read_image(p) for p in sorted(calib_dir.glob("*.jpg"))[:4]]
    batch, metas = preprocess(images, scale=(160, 128), pad_to=HW)
    return {"images": batch, "img_shape": np.array([m.img_shape for m in metas], np.float32)}


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_head_tail_found_by_structure(prenms: Path) -> None:
    model = prepare_graph(onnx.load(str(prenms)))
    tail = find_head_tail(model)
    by_name = {n.name: n for n in model.graph.node}
    # ten prediction convs (gfl_cls and gfl_reg at five levels) feed the tail and are not part of it
    assert len(tail.prediction_convs) == 10
    assert all(by_name[n].op_type == "Conv" and "/gfl_" in n for n in tail.prediction_convs)
    for op in ("Softmax", "TopK", "ReduceSum", "Sigmoid", "Clip"):
        nodes = [n.name for n in model.graph.node if n.op_type == op]
        assert nodes and set(nodes) <= tail.nodes, op
    dgqp_convs = [n.name for n in model.graph.node if n.op_type == "Conv" and "reg_conf" in n.name]
    assert len(dgqp_convs) == 10 and set(dgqp_convs) <= tail.nodes
    assert not any("/backbone/" in n or "/neck/" in n or "_convs." in n for n in tail.nodes)
    stages = find_stages(model, tail)
    assert set(stages) == set(STAGES)
    assert not set().union(*map(set, stages.values())) & tail.nodes
    assert any(n.endswith("layer1.0/conv1/Conv") for n in stages["layer1"])


def test_s8s8_for_tensorrt(quantized: dict[str, Path], prenms: Path, calib_dir: Path) -> None:
    model = onnx.load(str(quantized["tensorrt"]))
    inits = _inits(model)
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for node in qs:  # activations: int8, zero point 0 (TensorRT accepts nothing else)
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any()
    weight_dqs = [n for n in dqs if n.input[0] in inits]
    assert weight_dqs and all(inits[n.input[0]].dtype == np.int8 for n in weight_dqs)  # no int32 bias DQ
    assert all(inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1 for n in weight_dqs)  # per channel
    # Q/DQ only in front of Conv and two-activation Add: never before GroupNorm, the tail or an affine Add
    dq_of = {d.input[0]: d.output[0] for d in dqs}
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    # (a quantised tensor is shared by its other readers: the FPN's nearest Resize and Shape)
    assert set().union(*(readers.get(d.output[0], set()) for d in dqs)) <= {"Conv", "Add", "Resize", "Shape"}
    adds = [n for n in model.graph.node if n.op_type == "Add" and any(i in dq_of.values() for i in n.input)]
    assert adds and all(not any(i in inits for i in n.input) for n in adds)  # never GroupNorm's affine Add


def test_u8s8_for_onnxruntime(quantized: dict[str, Path], tmp_path: Path, prenms: Path, calib_dir: Path) -> None:
    model = onnx.load(str(quantized["onnxruntime"]))
    inits = _inits(model)
    acts = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert acts and all(inits[n.input[2]].dtype == np.uint8 for n in acts)
    # per-tensor weights on request (faster CPU kernels): one scale per weight
    result = quantize_int8(prenms, tmp_path / "pt.onnx", calib_data=calib_dir, calib_images=2, target="onnxruntime",
                           per_channel=False)
    model = onnx.load(str(result.path))
    inits = _inits(model)
    weight_dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                  and inits[n.input[0]].ndim == 4]
    assert weight_dqs and all(inits[n.input[1]].size == 1 for n in weight_dqs)
    assert result.precision["weights"] == "int8 symmetric per-tensor"


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_head_tail_stays_float(quantized: dict[str, Path], prenms: Path, target: str) -> None:
    source = prepare_graph(onnx.load(str(prenms)))
    tail = find_head_tail(source)
    model = onnx.load(str(quantized[target]))
    assert float_region_violations(model, set(tail.nodes)) == []
    producers = {o: n for n in model.graph.node for o in n.output}
    quantised_from_tail = [n.name for n in model.graph.node
                           if n.op_type == "QuantizeLinear" and producers.get(n.input[0]) is not None
                           and producers[n.input[0]].name in tail.nodes]
    assert quantised_from_tail == []
    # the tail's float32 type is untouched
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    softmax_in = [n.input[0] for n in model.graph.node if n.op_type == "Softmax"]
    assert softmax_in and all(types[name] == TensorProto.FLOAT for name in softmax_in)


def test_recipe_in_metadata(quantized: dict[str, Path], prenms: Path, calib_dir: Path) -> None:
    contract = read_onnx_contract(quantized["tensorrt"])
    source = read_onnx_contract(prenms)
    p = contract.precision.recipe
    assert contract.precision.compute == "int8"
    assert p["mode"] == "int8" and p["format"] == "QDQ" and p["target"] == "tensorrt" and p["method"] == "max"
    assert p["activations"].startswith("int8 symmetric") and p["weights"] == "int8 symmetric per-channel"
    assert p["quantize_bias"] is False and p["head_tail_float"] is True
    assert p["calib_images"] == CALIB
    assert p["calib_sha256"] == collect_calibration_images(calib_dir, CALIB).sha256
    graph = onnx.load(str(prenms))
    softmax = [n.name for n in graph.graph.node if n.op_type in ("Softmax", "TopK")]
    assert set(softmax) <= set(p["excluded_nodes"])
    assert p["source_onnx_sha256"] and p["num_qdq_nodes"] > 0
    # the I/O contract is the source's: fp32 boxes and scores, same names and preprocessing
    for key in ("inputs", "outputs", "preprocessing", "postprocessing", "model"):
        assert getattr(contract, key) == getattr(source, key), key
    assert read_onnx_contract(quantized["onnxruntime"]).precision.recipe["activations"].startswith("uint8")


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_int8_runs_in_onnxruntime_close_to_fp32(quantized: dict[str, Path], prenms: Path, calib_dir: Path, target: str) -> None:
    feeds = _feeds(calib_dir)
    ref_boxes, ref_scores = _run(prenms, feeds)
    boxes, scores = _run(quantized[target], feeds)
    assert boxes.dtype == np.float32 and scores.shape == ref_scores.shape
    # loose bounds: random weights, six calibration images
    assert float(np.abs(scores - ref_scores).mean()) < 0.01
    confident = ref_scores.max(axis=2) > 0.05
    assert confident.sum() > 10
    assert float(np.median(np.abs(boxes - ref_boxes)[confident])) < 4.0
    with OrtRunner(quantized[target], providers=["CPUExecutionProvider"]) as runner:  # our metadata is readable
        out = runner.infer(feeds["images"], feeds["img_shape"])
    assert set(out) == set(spec.PRE_NMS_OUTPUTS)


def test_calibration_feeds_are_the_shared_preprocessing(prenms: Path, calib_dir: Path) -> None:
    calib = collect_calibration_images(calib_dir, 3)
    contract = read_onnx_contract(prenms)
    feeds = list(calibration_batches(calib, contract))
    assert len(feeds) == 3
    for path, feed in zip(calib.files, feeds):
        batch, metas = preprocess([read_image(path)], scale=(160, 128), pad_to=HW)
        np.testing.assert_array_equal(feed["images"], batch)
        np.testing.assert_array_equal(feed["img_shape"], np.array([metas[0].img_shape], np.float32))
    # a seeded choice: the same images and hash each time, another seed picks others
    assert collect_calibration_images(calib_dir, 3) == calib
    assert collect_calibration_images(calib_dir, 3, seed=1).sha256 != calib.sha256


def test_exclude_stage_and_only(tmp_path: Path, prenms: Path, calib_dir: Path) -> None:
    cache = tmp_path / "ranges.json"
    out = tmp_path / "no_layer1.onnx"
    result = quantize_int8(prenms, out, calib_data=calib_dir, calib_images=4, target="tensorrt",
                           exclude=["stage:layer1", "/detector/neck/fpn_convs.0/*"], calibration_cache=cache)
    assert cache.is_file()
    model = onnx.load(str(out))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    layer1 = [n for n in model.graph.node if "/backbone/layer1/" in n.name and n.op_type == "Conv"]
    assert layer1 and not any(i in dq_out for n in layer1 for i in n.input)
    fpn0 = next(n for n in model.graph.node if n.name == "/detector/neck/fpn_convs.0/conv/Conv")
    assert not any(i in dq_out for i in fpn0.input)
    assert any(i in dq_out for n in model.graph.node if "/backbone/layer2/" in n.name and n.op_type == "Conv" for i in n.input)
    assert {n.name for n in layer1} <= set(result.precision["excluded_nodes"])
    assert result.precision["excluded_patterns"] == ["stage:layer1", "/detector/neck/fpn_convs.0/*"]
    # only one stage quantised, calibration read from the cache
    only = quantize_int8(prenms, tmp_path / "only_cls.onnx", calib_data=calib_dir, calib_images=4, target="tensorrt",
                         only=["stage:head_cls_tower"], calibration_cache=cache)
    model = onnx.load(str(only.path))
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantised = {n.name for n in model.graph.node if any(i in dq_out for i in n.input)}
    assert quantised and all("/bbox_head/cls_convs" in name for name in quantised)


def test_excluding_a_stage_keeps_every_relu(tmp_path: Path, prenms: Path, calib_dir: Path) -> None:
    """uint8 activations let onnxruntime drop a quantised Relu (the Q's zero point clamps); a float reader
    rewired past that Q would then lose the Relu. Every Relu must survive, and excluding a stage must not
    move the outputs further from fp32 than quantising everything does."""
    source_relus = sum(n.op_type == "Relu" for n in onnx.load(str(prenms)).graph.node)
    cache = tmp_path / "ranges.json"
    feeds = _feeds(calib_dir)
    _, ref = _run(prenms, feeds)
    errors = {}
    for name, kwargs in {"full": {}, "no_layer3": {"exclude": ["stage:layer3"]}, "only_layer2": {"only": ["stage:layer2"]}}.items():
        out = quantize_int8(prenms, tmp_path / f"{name}.onnx", calib_data=calib_dir, calib_images=4, target="onnxruntime",
                            calibration_cache=cache, **kwargs).path
        assert sum(n.op_type == "Relu" for n in onnx.load(str(out)).graph.node) == source_relus, name
        errors[name] = float(np.abs(_run(out, feeds)[1] - ref).mean())
    assert errors["no_layer3"] <= 1.5 * errors["full"] + 1e-4 and errors["only_layer2"] <= 1.5 * errors["full"] + 1e-4, errors


def test_nms_attached_after_quantising(tmp_path: Path, prenms: Path, calib_dir: Path) -> None:
    out = tmp_path / "tiny.int8.e2e.onnx"
    result = quantize_int8(prenms, out, calib_data=calib_dir, calib_images=4, target="onnxruntime", nms="onnx")
    assert result.contract.postprocessing.nms == "onnx" and result.contract.output_names == spec.END_TO_END_OUTPUTS
    feeds = _feeds(calib_dir)
    with OrtRunner(out, providers=["CPUExecutionProvider"]) as runner:
        outputs = runner.infer(feeds["images"], feeds["img_shape"])
    assert set(outputs) == set(spec.END_TO_END_OUTPUTS)
    trt = quantize_int8(prenms, tmp_path / "tiny.int8.e2e-trt.onnx", calib_data=calib_dir, calib_images=4, nms="trt")
    assert trt.contract.postprocessing.nms == "trt" and trt.contract.precision.compute == "int8"
    assert onnx.load(str(trt.path)).graph.node[-1].op_type == "EfficientNMS_TRT"


def test_user_errors_leave_no_output(tmp_path: Path, prenms: Path, calib_dir: Path, quantized: dict[str, Path]) -> None:
    out = tmp_path / "out.onnx"
    e2e = tmp_path / "e2e.onnx"
    onnx_model = onnx.load(str(prenms))
    cases = [
        (dict(onnx_path=tmp_path / "missing.onnx"), "not found"),
        (dict(onnx_path=quantized["tensorrt"]), "already converted"),
        (dict(calib_data=tmp_path / "nowhere"), "calibration folder not found"),
        (dict(calib_data=tmp_path), "no images"),
        (dict(method="kl"), "calibration method"),
        (dict(target="gpu"), "target"),
        (dict(exclude=["/no/such/node"]), "matches no node"),
        (dict(exclude=["stage:layer9"]), "unknown stage"),
        (dict(calib_images=0), "at least 1"),
    ]
    for overrides, message in cases:
        kwargs = dict(onnx_path=prenms, out_path=out, calib_data=calib_dir, calib_images=2)
        kwargs.update(overrides)
        with pytest.raises(UserError, match=message):
            quantize_int8(**kwargs)
    assert not out.exists()
    # a graph with NMS already attached is refused with the way out
    from gflv2_deploy.export.nms import attach_onnx_nms

    attach_onnx_nms(onnx_model, score_thr=0.05, iou_thr=0.6, max_dets=10)
    onnx.save(onnx_model, str(e2e))
    with pytest.raises(UserError, match="pre-NMS"):
        quantize_int8(e2e, out, calib_data=calib_dir, calib_images=2)
    with pytest.raises(UserError):
        select_nodes(prepare_graph(onnx.load(str(prenms))), ["*nothing*"], None)
