"""NMS stages appended to an exported pre-NMS graph (``boxes`` N x A x 4, ``scores`` N x A x C).

Why graph editing and not tracing: NMS has data-dependent output sizes, so a traced torch NMS either
unrolls a per-image loop (fixed batch) or needs exporter-specific custom ops. The pre-NMS graph is
exported once from torch (the part whose numbers must match the reference) and the NMS stage is
a short, fully explicit list of ONNX nodes written here with ``onnx.helper`` (no extra dependency
such as onnx-graphsurgeon). The pre-NMS graph itself is left untouched: its outputs ``boxes`` and
``scores`` become the tail's inputs, so the same graph serves parity tests and quantisation, and the
tail can be attached after quantising (deploy_landscape §4).

Two forms, both producing the end-to-end contract ``spec.END_TO_END_OUTPUTS``
(num_dets N x 1 int32, det_boxes N x K x 4 float32, det_scores N x K float32, det_classes N x K int32):

- ``attach_onnx_nms``: standard ONNX ``NonMaxSuppression`` (runs in onnxruntime; TensorRT imports it as
  ``INMSLayer``) followed by a fixed-size per-image top-K. NonMaxSuppression runs per (image, class)
  with the boxes shared by all classes and scores transposed to N x C x A, which is exactly the
  official multi-label class-aware NMS (spec §3.2 step 5). Measured in onnxruntime 1.32: a box is a
  candidate when score > score_threshold (equal is dropped) and is suppressed when IoU > iou_threshold
  (equal is kept); zero-area boxes never suppress. The reference (``model.nms``) uses the same
  comparisons. With ``center_point_box=0`` the op reads boxes as [y1, x1, y2, x2]; IoU is symmetric
  in x and y, so our x1 y1 x2 y2 boxes give the same result without a transpose.
  Top-K without loops: the selected (image, class, box) triples scatter their scores into an
  N x C x A tensor pre-filled with -1, which is flattened to N x (C*A), padded with K more -1
  columns (so TopK's K never exceeds the axis, spec §7.5 / mmdetection #5452), and cut with one TopK.
  Class = index // A, box = index % A; slots whose value is the -1 filler are padded.
- ``attach_efficient_nms``: one ``EfficientNMS_TRT`` plugin node (TensorRT only; onnxruntime cannot
  run it). Empty domain with an explicit ``plugin_namespace=""`` and ``plugin_version="1"``, the
  safest emission for the TensorRT parser's plugin fallback (deploy_landscape §4).
- ``attach_plugin_nms``: one node of our own op ``gflv2::GFLV2NMS_TRT`` (plugins/gflv2_nms): exactly the
  reference post-processing (``model.nms.multiclass_nms``) with fixed-size padded outputs. It runs in
  onnxruntime through the CPU twin (custom-op library, ``gflv2_deploy.nms_plugin``) and in TensorRT
  through our IPluginV3 plugin: the parser finds it by op_type with ``plugin_version``/``plugin_namespace``.

Padding beyond num_dets: boxes 0, scores 0, classes -1 in the ONNX form (``model.deploy.PAD_*``).
EfficientNMS_TRT pads as the plugin does; consumers must read only the first num_dets slots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gflv2_deploy import spec
from gflv2_deploy.model.deploy import PAD_BOX, PAD_CLASS, PAD_SCORE

_PREFIX = "nms_tail/"
_FILLER = -1.0  # scores are in [0, 1]: -1 marks "not selected" in the dense score tensor


def _dims(model: onnx.ModelProto, name: str) -> list[Any]:
    """Dims (int or symbolic name) of graph output ``name``."""
    out = next(o for o in model.graph.output if o.name == name)
    return [d.dim_param if d.dim_param else d.dim_value for d in out.type.tensor_type.shape.dim]


def _end_to_end_outputs(batch: Any, max_dets: int) -> list[onnx.ValueInfoProto]:
    return [
        helper.make_tensor_value_info(spec.OUT_NUM_DETS, TensorProto.INT32, [batch, 1]),
        helper.make_tensor_value_info(spec.OUT_DET_BOXES, TensorProto.FLOAT, [batch, max_dets, 4]),
        helper.make_tensor_value_info(spec.OUT_DET_SCORES, TensorProto.FLOAT, [batch, max_dets]),
        helper.make_tensor_value_info(spec.OUT_DET_CLASSES, TensorProto.INT32, [batch, max_dets]),
    ]


def _check_pre_nms(model: onnx.ModelProto, max_dets: int) -> list[Any]:
    names = [o.name for o in model.graph.output]
    if names != list(spec.PRE_NMS_OUTPUTS):
        raise ValueError(f"NMS attaches to a pre-NMS graph with outputs {spec.PRE_NMS_OUTPUTS}, got {names}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be at least 1, got {max_dets}")
    return _dims(model, spec.OUT_BOXES)


def attach_onnx_nms(model: onnx.ModelProto, *, score_thr: float, iou_thr: float, max_dets: int) -> onnx.ModelProto:
    """Append ONNX NonMaxSuppression + padded top-K to a pre-NMS graph (in place; also returned).

    See the module docstring for the semantics. ``max_output_boxes_per_class`` is ``max_dets``: the
    final top-K never takes more than K boxes of one class, so this loses nothing.
    """
    dims = _check_pre_nms(model, max_dets)
    g = model.graph
    p = _PREFIX
    k = int(max_dets)

    def const(name: str, array: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(array, p + name))
        return p + name

    max_per_class = const("max_output_boxes_per_class", np.array([k], np.int64))
    iou = const("iou_threshold", np.array([iou_thr], np.float32))
    score = const("score_threshold", np.array([score_thr], np.float32))
    k_t = const("k", np.array([k], np.int64))
    k_cols = const("k_cols", np.array([k], np.int64))
    zero_i64 = const("zero_i64", np.array([0], np.int64))
    one_i64 = const("one_i64", np.array([1], np.int64))
    index_1 = const("index_1", np.array(1, np.int64))  # scalar: Gather -> scalar A
    flat_shape = const("flat_shape", np.array([0, -1], np.int64))
    axis_2 = const("axis_2", np.array([2], np.int64))
    filler_thr = const("valid_above", np.array(_FILLER / 2, np.float32))
    pad_score = const("pad_score", np.array(PAD_SCORE, np.float32))
    pad_box = const("pad_box", np.array(PAD_BOX, np.float32))
    pad_class = const("pad_class", np.array(PAD_CLASS, np.int32))
    filler = helper.make_tensor(p + "filler_value", TensorProto.FLOAT, [1], [_FILLER])

    def t(name: str) -> str:
        return p + name

    nodes = [
        # candidates: scores N x C x A (one NMS per image and class, boxes shared)
        helper.make_node("Transpose", [spec.OUT_SCORES], [t("scores_nca")], name=t("transpose_scores"), perm=[0, 2, 1]),
        helper.make_node("NonMaxSuppression", [spec.OUT_BOXES, t("scores_nca"), max_per_class, iou, score], [t("selected")],
                         name=t("non_max_suppression"), center_point_box=0),  # selected: M x 3 (image, class, box) int64
        helper.make_node("GatherND", [t("scores_nca"), t("selected")], [t("selected_scores")], name=t("gather_selected_scores")),
        # dense N x C x A: selected scores, -1 elsewhere
        helper.make_node("Shape", [t("scores_nca")], [t("nca_shape")], name=t("shape_nca")),
        helper.make_node("ConstantOfShape", [t("nca_shape")], [t("dense_filler")], name=t("filler_nca"), value=filler),
        helper.make_node("ScatterND", [t("dense_filler"), t("selected"), t("selected_scores")], [t("dense")], name=t("scatter_selected")),
        helper.make_node("Reshape", [t("dense"), flat_shape], [t("dense_flat")], name=t("flatten_classes")),  # N x (C*A), batch kept
        # K more filler columns, so that TopK's K is never larger than the axis
        helper.make_node("Shape", [t("dense_flat")], [t("flat_shape_rt")], name=t("shape_flat")),
        helper.make_node("Slice", [t("flat_shape_rt"), zero_i64, one_i64], [t("batch_dim")], name=t("batch_dim")),
        helper.make_node("Concat", [t("batch_dim"), k_cols], [t("pad_cols_shape")], name=t("pad_cols_shape"), axis=0),
        helper.make_node("ConstantOfShape", [t("pad_cols_shape")], [t("pad_cols")], name=t("pad_cols"), value=filler),
        helper.make_node("Concat", [t("dense_flat"), t("pad_cols")], [t("dense_padded")], name=t("pad_flat"), axis=1),
        helper.make_node("TopK", [t("dense_padded"), k_t], [t("top_scores"), t("top_index")], name=t("topk"),
                         axis=1, largest=1, sorted=1),
        # decode the flat index: class = i // A, box = i % A (padding columns give class >= C: masked below)
        helper.make_node("Shape", [spec.OUT_BOXES], [t("boxes_shape")], name=t("shape_boxes")),
        helper.make_node("Gather", [t("boxes_shape"), index_1], [t("num_points")], name=t("num_points"), axis=0),
        helper.make_node("Div", [t("top_index"), t("num_points")], [t("top_class")], name=t("class_of_index")),
        helper.make_node("Mod", [t("top_index"), t("num_points")], [t("top_box")], name=t("box_of_index")),
        helper.make_node("Unsqueeze", [t("top_box"), axis_2], [t("top_box_nd")], name=t("box_index_nd")),
        helper.make_node("GatherND", [spec.OUT_BOXES, t("top_box_nd")], [t("top_boxes")], name=t("gather_boxes"), batch_dims=1),
        # valid slots and padding
        helper.make_node("Greater", [t("top_scores"), filler_thr], [t("valid")], name=t("valid")),
        helper.make_node("Where", [t("valid"), t("top_scores"), pad_score], [spec.OUT_DET_SCORES], name=t("det_scores")),
        helper.make_node("Cast", [t("top_class")], [t("top_class_i32")], name=t("class_to_int32"), to=TensorProto.INT32),
        helper.make_node("Where", [t("valid"), t("top_class_i32"), pad_class], [spec.OUT_DET_CLASSES], name=t("det_classes")),
        helper.make_node("Unsqueeze", [t("valid"), axis_2], [t("valid_nd")], name=t("valid_nd")),
        helper.make_node("Where", [t("valid_nd"), t("top_boxes"), pad_box], [spec.OUT_DET_BOXES], name=t("det_boxes")),
        helper.make_node("Cast", [t("valid")], [t("valid_i32")], name=t("valid_to_int32"), to=TensorProto.INT32),
        helper.make_node("ReduceSum", [t("valid_i32"), one_i64], [spec.OUT_NUM_DETS], name=t("num_dets"), keepdims=1),
    ]
    g.node.extend(nodes)
    del g.output[:]
    g.output.extend(_end_to_end_outputs(dims[0], k))
    return model


EFFICIENT_NMS_OP = "EfficientNMS_TRT"


def efficient_nms_attributes(*, score_thr: float, iou_thr: float, max_dets: int) -> dict[str, Any]:
    """Attributes of the EfficientNMS_TRT node (deploy_landscape §1b, §4)."""
    return {
        "score_threshold": float(score_thr),
        "iou_threshold": float(iou_thr),
        "max_output_boxes": int(max_dets),
        "background_class": -1,  # no background class: every class is real
        "score_activation": 0,  # scores are already sigmoid(cls) x quality (spec §7.1)
        "class_agnostic": 0,  # per-class NMS with shared boxes (spec §7.8)
        "box_coding": 0,  # x1 y1 x2 y2 corners
        "plugin_version": "1",
        "plugin_namespace": "",
    }


def attach_efficient_nms(model: onnx.ModelProto, *, score_thr: float, iou_thr: float, max_dets: int) -> onnx.ModelProto:
    """Append one EfficientNMS_TRT node to a pre-NMS graph (in place; also returned). TensorRT only."""
    dims = _check_pre_nms(model, max_dets)
    node = helper.make_node(
        EFFICIENT_NMS_OP, [spec.OUT_BOXES, spec.OUT_SCORES], list(spec.END_TO_END_OUTPUTS), name=_PREFIX + "efficient_nms",
        domain="", **efficient_nms_attributes(score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets),
    )
    model.graph.node.append(node)
    del model.graph.output[:]
    model.graph.output.extend(_end_to_end_outputs(dims[0], int(max_dets)))
    return model


def plugin_nms_attributes(*, score_thr: float, iou_thr: float, max_dets: int, nms_pre: int = 0,
                          num_levels: int = 0) -> dict[str, Any]:
    """Attributes of the GFLV2NMS_TRT node (contract table in plugins/README.md).

    nms_pre / num_levels: rows per level the graph pre-selected (A = num_levels * nms_pre); 0 when the
    graph passes every point (the plugin then checks nothing about A).
    """
    from gflv2_deploy import nms_plugin

    return {
        "score_threshold": float(score_thr),
        "iou_threshold": float(iou_thr),
        "max_output_boxes": int(max_dets),
        "nms_pre": int(nms_pre),
        "num_levels": int(num_levels),
        "plugin_version": nms_plugin.PLUGIN_VERSION,
        "plugin_namespace": nms_plugin.PLUGIN_NAMESPACE,
    }


def attach_plugin_nms(model: onnx.ModelProto, *, score_thr: float, iou_thr: float, max_dets: int, nms_pre: int = 0,
                      num_levels: int = 0) -> onnx.ModelProto:
    """Append one ``gflv2::GFLV2NMS_TRT`` node to a pre-NMS graph (in place; also returned).

    Outputs the end-to-end contract padded with boxes 0, scores 0, classes -1 (``model.deploy.PAD_*``).
    Runs in onnxruntime once ``gflv2_deploy.nms_plugin.register_ort_library`` registered the CPU twin, and in
    TensorRT with the plugin library loaded before parsing.
    """
    from gflv2_deploy import nms_plugin

    dims = _check_pre_nms(model, max_dets)
    if nms_pre > 0 and isinstance(dims[1], int) and dims[1] != nms_pre * num_levels:
        raise ValueError(f"the pre-NMS graph has {dims[1]} points, not nms_pre * num_levels = {nms_pre} * {num_levels}")
    node = helper.make_node(
        nms_plugin.OP_TYPE, [spec.OUT_BOXES, spec.OUT_SCORES], list(spec.END_TO_END_OUTPUTS), name=_PREFIX + "gflv2_nms",
        domain=nms_plugin.OP_DOMAIN, **plugin_nms_attributes(score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets,
                                                             nms_pre=nms_pre, num_levels=num_levels),
    )
    model.graph.node.append(node)
    if not any(o.domain == nms_plugin.OP_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(nms_plugin.OP_DOMAIN, nms_plugin.OP_DOMAIN_VERSION))
    del model.graph.output[:]
    model.graph.output.extend(_end_to_end_outputs(dims[0], int(max_dets)))
    return model
