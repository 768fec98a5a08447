"""FP16 ONNX: fp16 backbone/FPN/towers, fp32 I/O and head tail, runs in onnxruntime CPU, recipe in metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from gflv2_deploy import spec
from gflv2_deploy.engine.onnx_info import inspect_onnx
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.fp16 import convert_fp16
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.precision import find_head_tail, prepare_graph
from gflv2_deploy.runtime.ort_runner import OrtRunner

HW = (128, 160)


@pytest.fixture(scope="module")
def fp16(tmp_path_factory: pytest.TempPathFactory, prenms: Path) -> Path:
    out = tmp_path_factory.mktemp("fp16_out") / "tiny.fp16.onnx"
    convert_fp16(prenms, out)
    return out


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.input, *inferred.output, *inferred.value_info]}
    types.update({t.name: t.data_type for t in inferred.initializer})
    return types


def test_runs_in_onnxruntime_close_to_fp32(prenms: Path, fp16: Path, make_images) -> None:
    x = make_images(3, HW, seed=5).numpy()
    feeds = {"images": x, "img_shape": np.array([[128, 160], [100, 150], [64, 160]], np.float32)}
    ref_boxes, ref_scores = _run(prenms, feeds)
    boxes, scores = _run(fp16, feeds)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert float(np.abs(scores - ref_scores).max()) < 5e-3
    confident = ref_scores.max(axis=2) > 0.05
    assert confident.sum() > 10
    assert float(np.abs(boxes - ref_boxes)[confident].max()) < 1.0  # pixels
    # the clamp still uses each image's own size
    assert np.all(boxes[:, :, 2] <= feeds["img_shape"][:, None, 1] + 1e-6)
    with OrtRunner(fp16, providers=["CPUExecutionProvider"]) as runner:
        assert set(runner.infer(x, feeds["img_shape"])) == set(spec.PRE_NMS_OUTPUTS)


def test_head_tail_and_io_stay_fp32(prenms: Path, fp16: Path) -> None:
    tail = find_head_tail(prepare_graph(onnx.load(str(prenms))))
    model = onnx.load(str(fp16))
    types = _types(model)
    assert all(types[i.name] == TensorProto.FLOAT for i in [*model.graph.input, *model.graph.output])
    tail_nodes = [n for n in model.graph.node if n.name in tail.nodes]
    assert tail_nodes
    for node in tail_nodes:
        for name in [*node.input, *node.output]:
            assert types.get(name) != TensorProto.FLOAT16, (node.name, name)
    by_name = {n.name: n for n in model.graph.node}
    # backbone, FPN, towers and prediction convs run in fp16; the DGQP convs keep fp32 weights
    for name in ("/detector/backbone/conv1/Conv", "/detector/neck/fpn_convs.0/conv/Conv",
                 "/detector/bbox_head/cls_convs.0/conv/Conv", "/detector/bbox_head/gfl_reg/Conv"):
        assert types[by_name[name].input[1]] == TensorProto.FLOAT16, name
    dgqp = [n for n in model.graph.node if n.op_type == "Conv" and "reg_conf" in n.name]
    assert dgqp and all(types[n.input[1]] == TensorProto.FLOAT for n in dgqp)
    # one Cast in after `images`, one Cast out per prediction conv (gfl_cls, gfl_reg at 5 levels)
    casts = [n for n in model.graph.node if n.name.startswith("fp16_cast/")]
    assert len(casts) == 1 + 2 * len(spec.STRIDES)
    assert inspect_onnx(fp16).detected_precision == "fp16"


def test_recipe_in_metadata(prenms: Path, fp16: Path) -> None:
    contract, source = read_onnx_contract(fp16), read_onnx_contract(prenms)
    p = contract.precision.recipe
    assert contract.precision.compute == "fp16"
    assert p["mode"] == "fp16" and p["io_dtype"] == "float32" and p["head_tail_fp32"] is True
    assert p["casts_inserted"] == 11 and p["fp16_nodes"] > 50
    model = onnx.load(str(prenms))
    assert {n.name for n in model.graph.node if n.op_type in ("Softmax", "TopK", "Clip")} <= set(p["fp32_nodes"])
    for key in ("inputs", "outputs", "preprocessing", "postprocessing", "model"):
        assert getattr(contract, key) == getattr(source, key), key


def test_exclusions_and_nms(tmp_path: Path, prenms: Path) -> None:
    out = tmp_path / "stem32.e2e.onnx"
    result = convert_fp16(prenms, out, exclude=["stage:stem"], nms="onnx")
    model = onnx.load(str(out))
    types = _types(model)
    stem = next(n for n in model.graph.node if n.name == "/detector/backbone/conv1/Conv")
    assert types[stem.input[1]] == TensorProto.FLOAT
    assert "/detector/backbone/conv1/Conv" in result.precision["fp32_nodes"]
    assert result.contract.postprocessing.nms == "onnx" and [o.name for o in model.graph.output] == list(spec.END_TO_END_OUTPUTS)
    x = np.zeros((1, 3, *HW), np.float32)
    num = _run(out, {"images": x, "img_shape": np.array([HW], np.float32)})[0]
    assert num.dtype == np.int32 and num.shape == (1, 1)


def test_refuses_converted_or_nms_graphs(tmp_path: Path, fp16: Path, prenms: Path) -> None:
    with pytest.raises(UserError, match="already converted"):
        convert_fp16(fp16, tmp_path / "again.onnx")
    e2e = tmp_path / "e2e.onnx"
    convert_fp16(prenms, e2e, nms="trt")
    with pytest.raises(UserError, match="pre-NMS"):
        convert_fp16(e2e, tmp_path / "x.onnx")
    with pytest.raises(UserError, match="unknown NMS"):
        convert_fp16(prenms, tmp_path / "y.onnx", nms="cuda")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
