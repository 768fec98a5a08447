"""ONNX export of the pre-NMS graph: parity with torch, graph structure, metadata, bad input, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from gflv2_deploy import __version__, spec
from gflv2_deploy.config import load_config
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.checks import (
    batch_folding_nodes,
    control_flow_nodes,
    precision_problems,
    topk_problems,
    topk_values,
)
from gflv2_deploy.eval.compare import align_selected_rows
from gflv2_deploy.export.nms import efficient_nms_attributes
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.checkpoint import file_sha256
from gflv2_deploy.model.deploy import DeployModel


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _img_shape(n: int, hw: tuple[int, int]) -> np.ndarray:
    """Unpadded sizes smaller than the input for some images, so that the clamp matters."""
    h, w = hw
    return np.array([[h, w], [h - 40, w - 72], [h // 2, w - 8]][:n], np.float32)


def test_prenms_matches_torch_at_two_sizes_and_batch_3(exported, tiny_model, make_images, sizes) -> None:
    session = _session(exported["none"])
    nms_pre = tiny_model.config.test.nms_pre
    deploy = DeployModel(tiny_model, nms_pre=nms_pre, pad_levels=True).eval()
    for seed, hw in enumerate(sizes):
        x, img_shape = make_images(3, hw, seed), _img_shape(3, hw)
        with torch.no_grad():
            ref_boxes, ref_scores = deploy(x, torch.from_numpy(img_shape))
        boxes, scores = session.run(["boxes", "scores"], {"images": x.numpy(), "img_shape": img_shape})
        assert boxes.shape == (3, 5 * nms_pre, 4) and boxes.dtype == np.float32  # per-level top-nms_pre in the graph
        assert scores.shape == (3, 5 * nms_pre, 80) and scores.dtype == np.float32
        assert float((scores > 0.05).mean()) > 0.005  # the weights give real candidates
        # near-tied points may swap places within a level's top-k: pair rows first (eval.compare)
        ref, unpaired = align_selected_rows({"boxes": ref_boxes.numpy(), "scores": ref_scores.numpy()},
                                            {"boxes": boxes, "scores": scores}, nms_pre)
        assert unpaired <= 3 * 5 * 2  # at most a couple of boundary points per level and image
        assert np.abs(scores - ref["scores"]).max() <= 1e-4
        assert np.abs(boxes - ref["boxes"]).max() <= 1e-3
        # the clamp uses each image's own img_shape (height, width)
        assert np.all(boxes[:, :, 2] <= img_shape[:, None, 1]) and np.all(boxes[:, :, 3] <= img_shape[:, None, 0])
        assert float(boxes[0, :, 2].max()) > float(img_shape[1, 1])  # image 0 is not clamped to image 1's width


def test_batch_of_three_equals_three_batches_of_one(exported, make_images, sizes) -> None:
    session = _session(exported["none"])
    x, img_shape = make_images(3, sizes[1], 7).numpy(), _img_shape(3, sizes[1])
    boxes, scores = session.run(None, {"images": x, "img_shape": img_shape})
    for i in range(3):
        b1, s1 = session.run(None, {"images": x[i : i + 1], "img_shape": img_shape[i : i + 1]})
        assert np.abs(b1[0] - boxes[i]).max() <= 1e-4
        assert np.abs(s1[0] - scores[i]).max() <= 1e-6


def test_graph_structure(exported) -> None:
    path = exported["none"]
    assert not list(path.parent.glob("*.data")), "weights must live in the one .onnx file"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert topk_problems(model) == []
    assert sorted(topk_values(model)) == [4] * 5 + [1000] * 5  # DGQP top-4 and nms_pre per level, K initializers
    assert all(next((a.i for a in n.attribute if a.name == "sorted"), 1) == 1 for n in model.graph.node if n.op_type == "TopK")
    assert control_flow_nodes(model) == [] and not ops & {"Loop", "If", "Scan"}
    assert {"Softmax", "ReduceSum", "Sigmoid", "Range", "Shape", "Min"} <= ops  # DFL, DGQP, priors from shapes, clamp
    assert "Constant" not in ops and "NonMaxSuppression" not in ops
    assert precision_problems(onnx.shape_inference.infer_shapes(model)) == []
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims == {"images": ["batch", 3, "height", "width"], "img_shape": ["batch", 2]}
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    onnx.checker.check_model(model, full_check=True)


def test_batch_folding_check_finds_a_folding_reshape() -> None:
    """The §7.3 check itself: Reshape to (-1, 17) merges the batch, (0, -1, 17) keeps it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 68, 2])
    nodes = [
        helper.make_node("Reshape", ["x", "keep"], ["kept"], name="keeps_batch"),
        helper.make_node("Reshape", ["kept", "fold"], ["folded"], name="folds_batch"),
    ]
    inits = [numpy_helper.from_array(np.array([0, -1, 17], np.int64), "keep"),
             numpy_helper.from_array(np.array([-1, 17], np.int64), "fold")]
    y = helper.make_tensor_value_info("folded", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    feeds = [{"x": np.zeros((n, 68, 2), np.float32)} for n in (2, 3)]
    assert batch_folding_nodes(model, feeds) == ["Reshape folds_batch"]


def test_contract_is_complete_and_valid(exported, tiny_checkpoint, contract_schema) -> None:
    for form in ("none", "onnx", "trt"):
        contract_schema(read_onnx_contract(exported[form]))
    contract = read_onnx_contract(exported["none"])
    assert contract.model.config_name == "gflv2_tiny"
    assert contract.model.checkpoint == tiny_checkpoint.name
    assert contract.model.checkpoint_sha256 == file_sha256(tiny_checkpoint)
    assert contract.producer.tool_version == __version__
    assert contract.producer.exporter == "torchscript" and contract.producer.opset == 17
    assert contract.input_names == ("images", "img_shape") and contract.has_img_shape_input
    assert contract.tensor("images").shape == ("batch", 3, "height", "width") and contract.dynamic_batch
    assert contract.output_names == ("boxes", "scores") and not contract.end_to_end
    # named, fixed where fixed: points = 5 levels x nms_pre whatever the input size, 80 classes
    assert contract.tensor("scores").shape == ("batch", 5000, 80) and contract.tensor("boxes").shape == ("batch", 5000, 4)
    pre = contract.preprocessing
    assert pre.mean == spec.PIXEL_MEAN_RGB and pre.std == spec.PIXEL_STD_RGB and pre.color == "RGB"
    assert pre.pad_divisor == 32 and pre.test_scale == load_config("gflv2_tiny").test.scale and pre.input_hw is None
    assert contract.model.class_names == spec.COCO_CLASSES and contract.num_classes == 80
    assert contract.model.strides == (8, 16, 32, 64, 128) and contract.model.reg_max == 16
    post = contract.postprocessing
    assert post.nms == "none" and post.score_thr == 0.05 and post.iou_thr == 0.6 and post.max_per_img == 100
    assert post.nms_pre == 1000 and post.nms_pre_in_graph and post.clamped
    e2e = read_onnx_contract(exported["onnx"])
    assert e2e.end_to_end and (e2e.postprocessing.pad_box, e2e.postprocessing.pad_score, e2e.postprocessing.pad_class) == (0.0, 0.0, -1)
    assert e2e.tensor("det_boxes").shape == ("batch", 100, 4)


def test_export_without_graph_pre_selection_names_the_point_axis(tmp_path, tiny_model, make_images) -> None:
    out = tmp_path / "all_points.onnx"
    result = export_onnx(tiny_model, out, nms_pre=0, dynamic_hw=True, input_hw=(96, 128))
    assert result.contract.tensor("scores").shape == ("batch", "num_points", 80)
    assert not result.contract.postprocessing.nms_pre_in_graph
    x = make_images(2, (128, 160), 1)
    img_shape = np.array([[128, 160], [100, 120]], np.float32)
    boxes, scores = _session(out).run(None, {"images": x.numpy(), "img_shape": img_shape})
    with torch.no_grad():
        ref_boxes, ref_scores = DeployModel(tiny_model)(x, torch.from_numpy(img_shape))
    assert scores.shape == (2, spec.num_points(128, 160), 80)
    assert np.abs(scores - ref_scores.numpy()).max() <= 1e-4 and np.abs(boxes - ref_boxes.numpy()).max() <= 1e-3


def test_graph_pre_selection_equals_the_reference_selection(tmp_path, tiny_model, make_images) -> None:
    """Static graph with small levels (padded) and large ones: the kept points are the reference's."""
    out = tmp_path / "sel.onnx"
    export_onnx(tiny_model, out, nms_pre=300, dynamic_hw=False, input_hw=(160, 224))  # P3 has 560 points > 300
    x = make_images(1, (160, 224), 3)
    boxes, scores = _session(out).run(None, {"images": x.numpy(), "img_shape": np.array([[160, 224]], np.float32)})
    assert scores.shape == (1, 1500, 80)
    with torch.no_grad():
        all_boxes, all_scores = DeployModel(tiny_model)(x, torch.tensor([[160.0, 224.0]]))
    start, (h, w) = 0, (160 // 8, 224 // 8)
    for level in range(len(spec.STRIDES)):
        if level:
            h, w = (h + 1) // 2, (w + 1) // 2
        n = h * w
        level_scores = all_scores[0, start:start + n]
        top = level_scores.max(dim=1).values.topk(min(300, n)).values.numpy()
        got = scores[0, level * 300:(level + 1) * 300].max(axis=1)
        assert np.allclose(np.sort(got)[::-1][: len(top)], top, atol=1e-5)
        assert np.all(got[len(top):] == 0)  # padding rows of a small level
        start += n


def test_static_export_fixes_the_size(tmp_path, tiny_model) -> None:
    out = tmp_path / "static.onnx"
    result = export_onnx(tiny_model, out, dynamic_batch=False, batch_size=2, dynamic_hw=False, input_hw=(96, 128),
                         clamp=False, nms_pre=0)
    model = onnx.load(str(out))
    dims = [[d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim] for t in (*model.graph.input, *model.graph.output)]
    assert dims == [[2, 3, 96, 128], [2, spec.num_points(96, 128), 4], [2, spec.num_points(96, 128), 80]]
    assert result.input_names == ("images",) and not result.contract.has_img_shape_input
    assert result.contract.model.checkpoint is None and result.contract.model.checkpoint_sha256 is None
    assert result.contract.preprocessing.input_hw == (96, 128)


def test_efficient_nms_node(exported) -> None:
    model = onnx.load(str(exported["trt"]))
    plugin = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(plugin) == 1 and plugin[0].domain == ""
    attrs = {a.name: helper.get_attribute_value(a) for a in plugin[0].attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    assert attrs == pytest.approx(efficient_nms_attributes(score_thr=0.05, iou_thr=0.6, max_dets=100))
    assert attrs["background_class"] == -1 and attrs["score_activation"] == 0 and attrs["class_agnostic"] == 0
    assert attrs["box_coding"] == 0 and attrs["plugin_version"] == "1" and attrs["plugin_namespace"] == ""
    assert attrs["max_output_boxes"] == 100
    assert list(plugin[0].input) == ["boxes", "scores"] and list(plugin[0].output) == list(spec.END_TO_END_OUTPUTS)
    outs = {o.name: (o.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
            for o in model.graph.output}
    assert outs == {"num_dets": (TensorProto.INT32, ["batch", 1]), "det_boxes": (TensorProto.FLOAT, ["batch", 100, 4]),
                    "det_scores": (TensorProto.FLOAT, ["batch", 100]), "det_classes": (TensorProto.INT32, ["batch", 100])}
    assert read_onnx_contract(exported["trt"]).postprocessing.nms == "trt"


@pytest.mark.parametrize("mistake", ["config", "shape", "checkpoint"])
def test_bad_input_raises_user_error_and_writes_nothing(tmp_path, tiny_checkpoint, mistake) -> None:
    out = tmp_path / "out" / "model.onnx"
    kwargs: dict = {"config": "gflv2_r18_fpn"} if mistake == "config" else {"input_hw": (100, 224)} if mistake == "shape" else {}
    source = tmp_path / "missing.pth" if mistake == "checkpoint" else tiny_checkpoint
    with pytest.raises(UserError):
        export_onnx(source, out, **kwargs)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_read_onnx_contract_refuses_foreign_onnx(tmp_path) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "g", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])]))
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match="carries no gflv2-deploy graph contract"):
        read_onnx_contract(path)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx file at all")
    with pytest.raises(UserError):
        read_onnx_contract(tmp_path / "junk.onnx")


def _cli() -> typer.Typer:
    from gflv2_deploy.cli.export import register

    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command keeps `export` a named subcommand
    register(app)
    return app


def test_cli_export_default_path_and_errors(tmp_path, tiny_checkpoint) -> None:
    ckpt = tmp_path / "run" / "model.pth"
    ckpt.parent.mkdir()
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    runner = CliRunner()
    result = runner.invoke(_cli(), ["export", str(ckpt), "--nms", "onnx", "--shape", "96x128", "--max-dets", "20"])
    assert result.exit_code == 0, result.output
    out = ckpt.with_name("model.e2e.onnx")
    assert out.is_file() and "wrote" in result.output
    contract = read_onnx_contract(out)
    assert contract.postprocessing.max_per_img == 20 and contract.preprocessing.input_hw == (96, 128)
    assert contract.dynamic_batch and contract.postprocessing.nms_pre == 1000
    every = runner.invoke(_cli(), ["export", str(ckpt), "--shape", "96x128", "--nms-pre", "0", "--onnx", str(tmp_path / "all.onnx")])
    assert every.exit_code == 0, every.output
    assert not read_onnx_contract(tmp_path / "all.onnx").postprocessing.nms_pre_in_graph
    bad = runner.invoke(_cli(), ["export", str(ckpt), "--nms", "fast", "--onnx", str(tmp_path / "x.onnx")])
    assert isinstance(bad.exception, UserError) and not (tmp_path / "x.onnx").exists()
    bad = runner.invoke(_cli(), ["export", str(ckpt), "--shape", "100x100", "--onnx", str(tmp_path / "y.onnx")])
    assert isinstance(bad.exception, UserError) and not (tmp_path / "y.onnx").exists()


def test_tensorrt_rtx_parser_accepts_the_graphs(exported) -> None:
    """Opset 17 from the TorchScript exporter, with NMS tail: the TensorRT(-RTX) ONNX parser takes both
    graphs that need no plugin (EfficientNMS_TRT needs TensorRT's plugin library, absent from RTX)."""
    import tensorrt_rtx as trt

    logger = trt.Logger(trt.Logger.ERROR)
    for form, outputs in (("none", spec.PRE_NMS_OUTPUTS), ("onnx", spec.END_TO_END_OUTPUTS)):
        network = trt.Builder(logger).create_network(0)
        parser = trt.OnnxParser(network, logger)
        assert parser.parse_from_file(str(exported[form])), [str(parser.get_error(i)) for i in range(parser.num_errors)]
        assert tuple(network.get_output(i).name for i in range(network.num_outputs)) == outputs
        if form == "onnx":
            dtypes = [network.get_output(i).dtype for i in range(network.num_outputs)]
            assert dtypes == [trt.DataType.INT32, trt.DataType.FLOAT, trt.DataType.FLOAT, trt.DataType.INT32]


def test_simplify_keeps_the_numbers(tmp_path, tiny_model, make_images) -> None:
    """--simplify uses onnxslim when installed (then results are unchanged), else says it skipped."""
    import importlib.util

    out = tmp_path / "slim.onnx"
    result = export_onnx(tiny_model, out, dynamic_hw=True, input_hw=(96, 128), simplify=True, nms_pre=0)
    if importlib.util.find_spec("onnxslim") is None:
        assert not result.simplified and any("onnxslim" in note for note in result.notes)
        return
    assert result.simplified and result.notes == ()
    model = onnx.load(str(out))
    assert topk_values(model) == [4] * 5 and "Identity" not in {n.op_type for n in model.graph.node}
    x = make_images(2, (128, 160), 4)
    img_shape = np.array([[128, 160], [100, 120]], np.float32)
    boxes, scores = _session(out).run(None, {"images": x.numpy(), "img_shape": img_shape})
    with torch.no_grad():
        ref_boxes, ref_scores = DeployModel(tiny_model)(x, torch.from_numpy(img_shape))
    assert np.abs(scores - ref_scores.numpy()).max() <= 1e-4 and np.abs(boxes - ref_boxes.numpy()).max() <= 1e-3
