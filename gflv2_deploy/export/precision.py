"""What the precision converters share: graph regions, node selection and the final write.

``export/fp16.py`` (FP16 ONNX) and ``export/quantize.py`` (INT8 Q/DQ ONNX) both start from a pre-NMS
fp32 ONNX written by ``export_onnx`` and both keep the same part of it in float32:

- **head tail** (``find_head_tail``): everything after the head's prediction convolutions
  (``gfl_cls`` / ``gfl_reg``): Scale, DFL softmax + integral, DGQP (TopK, mean, 1x1 MLP, Sigmoid),
  sigmoid x quality, prior points, decode, clamp. Found by structure, not by name, so it works on
  graphs from either torch exporter: walk back from the graph outputs and stop at every Conv that is
  not itself downstream of a Softmax (the DGQP MLP convs are; ``gfl_cls`` / ``gfl_reg`` are not).
  Shape nodes are not walked through (they only read a tensor's size). Why float32: spec §7.10
  (fp16 spacing is 1 px in [1024, 2048), so decoded corners would be quantised) and the INT8
  detector failures of deploy_landscape §3.1 (quantised score heads).
- **deformable convolutions** (``deform_conv_nodes``): each DeformConv and the Conv predicting its offsets
  (DCN models), unless the caller turns that off to measure what it buys.
- **stages** (``find_stages``): stem, layer1..layer4, fpn, head cls/reg towers and the prediction
  convs, found from module paths (TorchScript node names such as
  ``/detector/backbone/layer1/layer1.0/conv1/Conv``, or the dynamo exporter's ``namespace`` node
  metadata). The sensitivity search quantises or excludes them one at a time.

``finish_precision_onnx`` records the recipe under ``precision`` in the ``gflv2_deploy.spec``
metadata (the engine manifest copies the whole spec), optionally attaches NMS after the conversion
(deploy_landscape §4: quantise the pre-NMS graph, attach NMS afterwards), checks and writes one file
atomically.
"""

from __future__ import annotations

import collections
import fnmatch
import heapq
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import onnx
from onnx import TensorProto

from gflv2_deploy import spec as io_spec
from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.hashing import file_sha256  # noqa: F401  (re-exported for callers)
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.checks import check_final_graph
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.contract_io import contract_from_metadata, load_onnx_model, tensor_infos, write_contract
from gflv2_deploy.onnx_ir import onnx_bytes

STAGES: tuple[str, ...] = (
    "stem", "layer1", "layer2", "layer3", "layer4", "fpn", "head_cls_tower", "head_reg_tower", "head_pred",
)
STAGE_PREFIX = "stage:"
NMS_FORMS: tuple[str, ...] = ("none", "onnx", "trt", "plugin")

# Scope patterns of each stage (module paths as "/"-separated names; see _scope).
_STAGE_SCOPES: dict[str, re.Pattern[str]] = {
    "stem": re.compile(r"/backbone/(conv1|bn1|relu|maxpool)(/|$)"),
    "layer1": re.compile(r"/backbone/layer1(/|$)"),
    "layer2": re.compile(r"/backbone/layer2(/|$)"),
    "layer3": re.compile(r"/backbone/layer3(/|$)"),
    "layer4": re.compile(r"/backbone/layer4(/|$)"),
    "fpn": re.compile(r"/neck(/|$)"),
    "head_cls_tower": re.compile(r"/bbox_head/cls_convs(/|\.|$)"),
    "head_reg_tower": re.compile(r"/bbox_head/reg_convs(/|\.|$)"),
}
# Ops that compute on float tensors: the ones worth listing when recording what stayed in float.
COMPUTE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "Sigmoid", "Softmax", "TopK", "ReduceMean", "ReduceSum",
    "Mul", "Add", "Sub", "Div", "Min", "Max", "Clip", "InstanceNormalization", "BatchNormalization", "Resize",
    "MaxPool", "Exp", "Log", "Sqrt", "Pow",
})


@dataclass(frozen=True)
class ConversionResult:
    """What a precision conversion wrote: the file, its graph contract, the ``precision`` recipe, wall time."""

    path: Path
    contract: GraphContract
    precision: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class HeadTail:
    """The float-only tail of the head: ``nodes`` (names) and the prediction convs feeding it."""

    nodes: frozenset[str]
    prediction_convs: tuple[str, ...]


def prepare_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` ready for node-level editing (same numbers).

    - ``Identity`` nodes that forward an initializer are replaced by a copy of that initializer
      (the TorchScript exporter de-duplicates equal parameters this way; onnxruntime's quantiser
      then warns "Expected bias ... to be an initializer" and leaves such biases unquantised, and
      onnxruntime's fp16 converter emits an unsorted graph);
    - every node gets a unique, non-empty name (node exclusion lists are by name);
    - nodes are topologically sorted.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    toposort(out)  # chains Identity(Identity(initializer)) resolve in one pass
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in graph_outputs:
            copy = TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            g.initializer.append(copy)
            inits[copy.name] = copy
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    used: set[str] = set()
    counter = 0
    for node in g.node:
        if not node.name or node.name in used:
            while f"{node.op_type}_gflv2_{counter}" in used:
                counter += 1
            node.name = f"{node.op_type}_gflv2_{counter}"
        used.add(node.name)
    toposort(out)
    return out


def toposort(model: onnx.ModelProto) -> None:
    """Sort the main graph's nodes topologically (in place), keeping the original order among ready nodes."""
    g = model.graph
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    nodes = list(g.node)
    missing: dict[int, set[str]] = {}
    waiting: dict[str, list[int]] = collections.defaultdict(list)
    ready: list[int] = []
    for index, node in enumerate(nodes):
        need = {name for name in node.input if name not in available}
        missing[index] = need
        for name in need:
            waiting[name].append(index)
        if not need:
            ready.append(index)
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(nodes[index])
        for name in nodes[index].output:
            for j in waiting.pop(name, []):
                missing[j].discard(name)
                if not missing[j]:
                    heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise RuntimeError("the graph has a cycle or an input produced by no node")
    del g.node[:]
    g.node.extend(order)




def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    return consumers


def forward_cone(model: onnx.ModelProto, starts: Iterable[onnx.NodeProto]) -> set[str]:
    """Names of the nodes downstream of ``starts`` (not including the starts themselves)."""
    consumers = _consumers(model)
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        node = stack.pop()
        for out in node.output:
            for consumer in consumers.get(out, ()):
                if consumer.name not in seen:
                    seen.add(consumer.name)
                    stack.append(consumer)
    return seen


def find_head_tail(model: onnx.ModelProto) -> HeadTail:
    """The head tail of a pre-NMS graph (see the module docstring). Needs named nodes (``prepare_graph``)."""
    producers = _producers(model)
    after_softmax = forward_cone(model, (n for n in model.graph.node if n.op_type == "Softmax"))
    if not after_softmax:
        raise UserError("the graph has no Softmax (DFL) node: it is not a GFLV2 graph exported by gflv2-deploy")
    tail: set[str] = set()
    stops: list[str] = []
    stack = [producers[o.name] for o in model.graph.output if o.name in producers]
    while stack:
        node = stack.pop()
        if node.name in tail or node.name in stops:
            continue
        if node.op_type == "Conv" and node.name not in after_softmax:
            stops.append(node.name)
            continue
        tail.add(node.name)
        if node.op_type == "Shape":
            continue  # reads only the size of its input
        stack.extend(producers[name] for name in node.input if name in producers)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return HeadTail(nodes=frozenset(tail), prediction_convs=tuple(sorted(stops, key=order.__getitem__)))


def deform_conv_nodes(model: onnx.ModelProto) -> set[str]:
    """Every DeformConv node and the node computing its offsets (the DCN's ``conv_offset``): kept in float32 by
    both converters by default. Why: a sampling position is row * stride + tap + offset, up to ~1300 px at
    1333 x 800; float16 spacing there is 0.5-1 px (spec §7.10), and an offset read through an 8-bit scale of a
    range of +-20 px moves by up to 0.08 px per step (docs/models.md measures both). Empty without DeformConv."""
    producers = _producers(model)
    kept: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "DeformConv":
            kept.add(node.name)
            if len(node.input) > 2 and node.input[2] in producers:
                kept.add(producers[node.input[2]].name)
    return kept


def _scope(node: onnx.NodeProto) -> str:
    """Module path of a node as "/a/b/c": the TorchScript node name, or the dynamo ``namespace`` metadata."""
    for prop in node.metadata_props:
        if prop.key == "namespace":  # ": Deploy/detector: GFLV2/detector.backbone: ResNet/.../view_1: aten.view"
            path = ""
            for segment in prop.value.split("/"):
                qualname = segment.split(":", 1)[0].strip()
                if qualname and (not path or qualname.startswith(path + ".")):
                    path = qualname  # the deepest module; op segments such as "view_1" are not its children
            return "/" + path.replace(".", "/")
    return node.name


def find_stages(model: onnx.ModelProto, tail: HeadTail) -> dict[str, tuple[str, ...]]:
    """Node names of every stage in ``STAGES`` (tail nodes never belong to a stage).

    Raises UserError when a stage has no node (a graph whose names carry no module paths).
    """
    stages: dict[str, list[str]] = {name: [] for name in STAGES}
    preds = set(tail.prediction_convs)
    for node in model.graph.node:
        if node.name in tail.nodes:
            continue
        if node.name in preds:
            stages["head_pred"].append(node.name)
            continue
        scope = _scope(node)
        for stage, pattern in _STAGE_SCOPES.items():
            if pattern.search(scope):
                stages[stage].append(node.name)
                break
    empty = [name for name, nodes in stages.items() if not nodes]
    if empty:
        raise UserError(
            f"cannot find stage(s) {', '.join(empty)} in the graph: node names carry no module paths "
            f"(export with `gflv2-deploy export` and do not rename nodes)"
        )
    return {name: tuple(nodes) for name, nodes in stages.items()}


def select_nodes(model: onnx.ModelProto, patterns: Sequence[str], stages: Mapping[str, Sequence[str]] | None) -> list[str]:
    """Node names matched by ``patterns``: ``stage:NAME`` (a stage of ``STAGES``), an exact node name
    or an ``fnmatch`` glob such as ``/detector/backbone/layer1/*``. A pattern matching nothing is a UserError."""
    names = [n.name for n in model.graph.node]
    chosen: dict[str, None] = {}
    for pattern in patterns:
        if pattern.startswith(STAGE_PREFIX):
            stage = pattern[len(STAGE_PREFIX):]
            if stages is None or stage not in stages:
                raise UserError(f"unknown stage '{stage}' in '{pattern}': choose one of {', '.join(STAGES)}")
            matched = list(stages[stage])
        else:
            matched = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            example = next((n for n in names if n.startswith("/detector/backbone/")), names[0] if names else "?")
            raise UserError(
                f"--exclude '{pattern}' matches no node: give a node name (e.g. '{example}'), a glob "
                f"(e.g. '/detector/backbone/layer1/*') or stage:NAME ({', '.join(STAGES)})"
            )
        chosen.update(dict.fromkeys(matched))
    return list(chosen)


def compute_nodes(model: onnx.ModelProto, names: Iterable[str]) -> list[str]:
    """The nodes of ``names`` whose op computes on floats (``COMPUTE_OPS``), in graph order: what a
    precision record lists (shape arithmetic around them is left out)."""
    wanted = set(names)
    return [n.name for n in model.graph.node if n.name in wanted and n.op_type in COMPUTE_OPS]


def load_source(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, GraphContract]:
    """(model, contract) of a pre-NMS fp32 ONNX written by ``gflv2-deploy export``; UserError otherwise."""
    p = Path(path)
    model = load_onnx_model(p, "converting an ONNX", external_data=True)
    contract = contract_from_metadata(model, p)
    form = contract.postprocessing.nms
    if form != "none" or [o.name for o in model.graph.output] != list(io_spec.PRE_NMS_OUTPUTS):
        raise UserError(
            f"{p.name} has NMS in the graph (--nms {form}): convert the pre-NMS ONNX (`gflv2-deploy export "
            f"--nms none`) and attach NMS during the conversion with --nms {form}"
        )
    mode = contract.precision.compute
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    fp16 = any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
    if mode != "fp32" or qdq or fp16:
        raise UserError(f"{p.name} is already converted ({mode if mode != 'fp32' else 'int8/fp16'}): start from the fp32 pre-NMS ONNX")
    return model, contract


def attach_nms(model: onnx.ModelProto, contract: GraphContract, nms: str) -> GraphContract:
    """Append the NMS tail ``nms`` ("onnx", "trt" or "plugin") to a converted pre-NMS graph (in place) with the
    thresholds recorded at export; returns the updated contract."""
    from gflv2_deploy.export.nms import attach_efficient_nms, attach_onnx_nms, attach_plugin_nms

    post = contract.postprocessing
    kwargs = dict(score_thr=post.score_thr, iou_thr=post.iou_thr, max_dets=post.max_per_img)
    if nms == "onnx":
        attach_onnx_nms(model, **kwargs)
    elif nms == "plugin":
        nms_pre = post.nms_pre if post.nms_pre_in_graph else 0
        attach_plugin_nms(model, **kwargs, nms_pre=nms_pre, num_levels=len(io_spec.STRIDES) if nms_pre else 0)
    else:
        attach_efficient_nms(model, **kwargs)
    return contract.with_nms(nms, tensor_infos(model.graph.output), score_thr=post.score_thr, iou_thr=post.iou_thr,
                             max_per_img=post.max_per_img)


def finish_precision_onnx(model: onnx.ModelProto, out_path: str | os.PathLike[str], *, contract: GraphContract,
                          precision: dict[str, Any], nms: str = "none") -> GraphContract:
    """Record ``precision`` (its ``mode`` is the compute precision) in the contract, attach NMS (``nms``
    "onnx"/"trt"/"plugin"), check and write atomically. Returns the contract written into the file."""
    if nms not in NMS_FORMS:
        raise UserError(f"unknown NMS form '{nms}': choose one of {', '.join(NMS_FORMS)}")
    out = Path(out_path)
    if out.is_dir():
        raise UserError(f"output path {out} is a folder; give a file name such as {out / 'model.onnx'}")
    if nms != "none":
        contract = attach_nms(model, contract, nms)
    contract = contract.with_precision(precision["mode"], precision)
    write_contract(model, contract)
    check_final_graph(model)
    data = onnx_bytes(model)  # the lowest IR version its opsets need, whatever the converters stamped
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return contract
