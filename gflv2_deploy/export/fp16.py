"""FP16 ONNX: backbone, FPN and head towers in float16; graph I/O and the head tail in float32.

TensorRT 11 and TensorRT-RTX build strongly typed networks, so an FP16 engine needs an ONNX whose
tensors already are float16 (deploy_landscape §4). ``convert_fp16`` writes that ONNX from the fp32
pre-NMS export:

- the "fp16 region" is every node downstream of the ``images`` input whose op is in ``_TYPED_INPUTS``,
  minus deformable convolutions and their offset convs (``precision.deform_conv_nodes``), minus the head tail (``precision.find_head_tail``: Scale, DFL softmax/integral, DGQP, decode,
  clamp, spec §7.10) and minus user exclusions (``--exclude``);
- float initializers used only by fp16 nodes are stored as float16; one ``Cast`` to float16 is
  inserted after ``images``, and one ``Cast`` back to float32 per tensor leaving the region (the
  outputs of the ten prediction convs ``gfl_cls`` / ``gfl_reg`` in a five-level head); shape
  arithmetic (Shape, Gather, Range, Resize scales) is untouched.

Why not ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True,
node_block_list=tail)``: measured on gflv2_tiny with onnxruntime 1.32, it inserted 700 Casts, among
them float32 -> float16 -> float32 round trips between two blocked tail nodes (so tail values did pass
through float16, e.g. after the per-level Scale), and emitted a graph that is not topologically sorted
(onnx.checker refuses it). Inserting the few Casts ourselves keeps the tail exactly float32.

onnxruntime CPU runs the result (it adds its own float32 fallbacks for ops without float16 kernels),
so the same file is evaluated here and built into an FP16 engine by TensorRT.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gflv2_deploy import spec as io_spec
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.uint8_input import NORMALISED
from gflv2_deploy.export.precision import (
    NMS_FORMS,
    STAGE_PREFIX,
    ConversionResult,
    compute_nodes,
    deform_conv_nodes,
    file_sha256,
    find_head_tail,
    find_stages,
    finish_precision_onnx,
    load_source,
    prepare_graph,
    select_nodes,
    toposort,
)

# Ops allowed in the fp16 region, with the input positions that carry the op's float type T.
# Other float inputs (Resize roi/scales, shapes) keep their type.
_TYPED_INPUTS: dict[str, tuple[int, ...] | None] = {  # None: every input
    "Conv": (0, 1, 2), "ConvTranspose": (0, 1, 2), "Relu": (0,), "LeakyRelu": (0,), "Sigmoid": (0,),
    "Add": (0, 1), "Sub": (0, 1), "Mul": (0, 1), "Div": (0, 1), "MaxPool": (0,), "AveragePool": (0,),
    "GlobalAveragePool": (0,), "Resize": (0,), "InstanceNormalization": (0, 1, 2),
    "BatchNormalization": (0, 1, 2, 3, 4), "Reshape": (0,), "Flatten": (0,), "Transpose": (0,), "Identity": (0,),
    "Squeeze": (0,), "Unsqueeze": (0,), "Slice": (0,), "Split": (0,), "Pad": (0, 2), "Clip": (0, 1, 2),
    "Concat": None, "DeformConv": (0, 1, 2, 3, 4),  # kept float32 by default: precision.deform_conv_nodes
}
_FLOAT = TensorProto.FLOAT
_HALF = TensorProto.FLOAT16
_PREFIX = "fp16_cast/"


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    """elem_type of every tensor (graph I/O, intermediates after shape inference, initializers)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _fp16_region(model: onnx.ModelProto, keep_fp32: set[str], types: dict[str, int]) -> set[str]:
    """Nodes to run in float16: downstream of ``images`` through float tensors, op in _TYPED_INPUTS, not kept.

    In a uint8-input graph the region starts at the normalised float32 tensor its first nodes produce
    (export/uint8_input.py): the pixel nodes stay as they are.
    """
    produced = {out for node in model.graph.node for out in node.output}
    activations = {NORMALISED if NORMALISED in produced else io_spec.INPUT_IMAGES}
    region: set[str] = set()
    for node in model.graph.node:  # topological order
        if node.op_type == "Shape" or not any(name in activations for name in node.input):
            continue
        activations.update(out for out in node.output if types.get(out) == _FLOAT)
        if node.op_type in _TYPED_INPUTS and node.name not in keep_fp32:
            region.add(node.name)
    return region


def cast_to_fp16(model: onnx.ModelProto, keep_fp32: set[str]) -> tuple[onnx.ModelProto, int, int]:
    """Convert ``model`` (prepared, fp32) in place to float16 outside ``keep_fp32``; I/O stays float32.

    Returns (model, number of fp16 nodes, number of Casts inserted).
    """
    types = _float_types(model)
    region = _fp16_region(model, keep_fp32, types)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))

    def typed(node: onnx.NodeProto, index: int) -> bool:
        positions = _TYPED_INPUTS[node.op_type]
        return positions is None or index in positions

    half: set[str] = set()  # tensors that are float16 after the conversion
    for node in g.node:
        if node.name in region:
            half.update(out for out in node.output if types.get(out) == _FLOAT)
    # initializers used only at typed positions of fp16 nodes become float16 themselves
    for name, tensor in inits.items():
        uses = consumers.get(name, [])
        if tensor.data_type == _FLOAT and uses and all(n.name in region and typed(n, i) for n, i in uses):
            converted = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), name)
            tensor.CopyFrom(converted)
            half.add(name)

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            suffix = "fp16" if to == _HALF else "fp32"
            casts[key] = f"{_PREFIX}{name.lstrip('/')}_{suffix}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"{_PREFIX}{name.lstrip('/')}_to_{suffix}", to=to))
        return casts[key]

    for node in g.node:
        for index, name in enumerate(node.input):
            if not name:
                continue
            if node.name in region:
                if typed(node, index) and types.get(name) == _FLOAT and name not in half:
                    node.input[index] = cast(name, _HALF)  # float32 tensor entering the region
            elif name in half and name not in inits and node.op_type != "Shape":  # Shape reads only the size
                node.input[index] = cast(name, _FLOAT)  # float16 tensor leaving the region
    for output in g.output:
        if output.name in half:  # a region node produces a graph output: rename it, cast back to the name
            producer = next(n for n in g.node if output.name in n.output)
            inner = f"{_PREFIX}{output.name}_fp16"
            producer.output[list(producer.output).index(output.name)] = inner
            for node, index in consumers.get(output.name, []):
                if node.name in region:
                    node.input[index] = inner
            new_nodes.append(helper.make_node("Cast", [inner], [output.name], name=f"{_PREFIX}{output.name}_out", to=_FLOAT))
    g.node.extend(new_nodes)
    del g.value_info[:]
    toposort(model)
    return model, len(region), len(new_nodes)


def convert_fp16(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    exclude: Sequence[str] = (),
    keep_head_tail_fp32: bool = True,
    keep_deform_conv_fp32: bool = True,
    nms: str = "none",
) -> ConversionResult:
    """Write the FP16 version of a pre-NMS fp32 ONNX (``gflv2-deploy export --nms none``) to ``out_path``.

    exclude: extra nodes kept in float32: node names, globs or ``stage:NAME`` (see
      ``precision.select_nodes``). keep_head_tail_fp32: keep the head tail in float32 (default; turn
      off only to measure what it buys). keep_deform_conv_fp32: keep DeformConv nodes and their offset convs in
      float32 (``precision.deform_conv_nodes``; default, likewise). nms: "none" | "onnx" | "trt": attach NMS after converting
      (boxes and scores reach it as float32). Inputs ``images`` / ``img_shape`` and every output stay
      float32, so runners feed the same arrays as for the fp32 graph.
    Records ``precision`` = {"mode": "fp16", ...} in the graph contract.
    """
    started = time.perf_counter()
    if nms not in NMS_FORMS:
        raise UserError(f"unknown NMS form '{nms}': choose one of {', '.join(NMS_FORMS)}")
    source, contract = load_source(onnx_path)
    model = prepare_graph(source)
    tail = find_head_tail(model)
    stages = find_stages(model, tail) if any(p.startswith(STAGE_PREFIX) for p in exclude) else None
    excluded = select_nodes(model, exclude, stages)
    keep = set(excluded) | (set(tail.nodes) if keep_head_tail_fp32 else set())
    deform = deform_conv_nodes(model) if keep_deform_conv_fp32 else set()
    keep |= deform
    model, num_half, num_casts = cast_to_fp16(model, keep)
    precision: dict[str, Any] = {
        "mode": "fp16",
        "tool": "gflv2-deploy Cast insertion (export/fp16.py)",
        "io_dtype": "float32",
        "head_tail_fp32": keep_head_tail_fp32,
        **({"deform_conv_fp32": keep_deform_conv_fp32} if deform or not keep_deform_conv_fp32 else {}),
        "excluded_patterns": list(exclude),
        "fp32_nodes": compute_nodes(model, keep),
        "fp16_nodes": num_half,
        "casts_inserted": num_casts,
        "source_onnx": os.path.basename(os.fspath(onnx_path)),
        "source_onnx_sha256": file_sha256(onnx_path),
    }
    written = finish_precision_onnx(model, out_path, contract=contract, precision=precision, nms=nms)
    return ConversionResult(path=Path(out_path), contract=written, precision=precision,
                            seconds=time.perf_counter() - started)
