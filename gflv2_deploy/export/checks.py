"""Structural checks of an exported graph: the export traps of spec §7 as code.

- ``topk_problems``: every TopK has a constant K (an initializer; the TensorRT parser accepts nothing
  else, mmdeploy #2149), ``sorted=1`` and ``largest=1`` (the DGQP MLP is tied to rank positions, §7.4).
- ``control_flow_nodes``: no Loop / If / Scan (a traced per-image loop would fix the batch size).
- ``precision_problems``: the graph is fp32 end to end (no fp16/bf16/fp64 tensor or Cast, §7.10).
- ``batch_folding_nodes``: no Reshape/Flatten merges the batch axis into another one (§7.3),
  found by running the graph in onnxruntime at two batch sizes with every reshape output exposed.
- ``check_final_graph``: ``onnx.checker`` full check of a finished graph, TensorRT plugin nodes
  included, and strict shape inference where no plugin node makes shapes unknowable.
- ``constants_to_initializers``: turns ``Constant`` nodes into initializers (the TorchScript exporter
  emits TopK's K as a Constant node).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from gflv2_deploy.onnx_ir import onnx_bytes

_NOT_FP32 = frozenset({TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE})
_CONTROL_FLOW = frozenset({"Loop", "If", "Scan"})
_PLUGIN_CHECK_DOMAIN = "trt.plugins"


def check_final_graph(model: onnx.ModelProto) -> None:
    """Full checker and, without plugin nodes, strict shape inference (both raise on a bad graph).

    TensorRT plugin nodes (``*_TRT``, default domain, as the TensorRT parser wants them) are moved to
    a custom domain on a copy first, because the checker (rightly) knows no such op in the default
    domain; shape inference cannot type their outputs, so it is skipped for such graphs.
    """
    if not any(node.op_type.endswith("_TRT") for node in model.graph.node):
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node in probe.graph.node:
        if node.op_type.endswith("_TRT"):
            node.domain = _PLUGIN_CHECK_DOMAIN
    probe.opset_import.append(onnx.helper.make_opsetid(_PLUGIN_CHECK_DOMAIN, 1))
    onnx.checker.check_model(probe, full_check=True)


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Replace every ``Constant`` node carrying a tensor ``value`` by an initializer; returns how many."""
    g = model.graph
    keep, moved = [], 0
    for node in g.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and set(attrs) == {"value"}:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attrs["value"].t)
            tensor.name = node.output[0]
            g.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    return moved


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def topk_problems(model: onnx.ModelProto) -> list[str]:
    """Problems with TopK nodes (empty when every K is an initializer and every TopK is sorted, largest)."""
    inits = _initializers(model)
    problems = []
    for node in model.graph.node:
        if node.op_type != "TopK":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.input[1] not in inits:
            problems.append(f"TopK {node.name}: K ({node.input[1]}) is computed, not an initializer")
        if attrs.get("sorted", 1) != 1:
            problems.append(f"TopK {node.name}: sorted={attrs['sorted']} (DGQP needs sorted values)")
        if attrs.get("largest", 1) != 1:
            problems.append(f"TopK {node.name}: largest={attrs['largest']}")
    return problems


def topk_values(model: onnx.ModelProto) -> list[int]:
    """K of every TopK whose K is an initializer, in node order."""
    inits = _initializers(model)
    return [int(numpy_helper.to_array(inits[n.input[1]]).reshape(-1)[0])
            for n in model.graph.node if n.op_type == "TopK" and n.input[1] in inits]


def control_flow_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of Loop / If / Scan nodes."""
    return [f"{n.op_type} {n.name}" for n in model.graph.node if n.op_type in _CONTROL_FLOW]


def precision_problems(model: onnx.ModelProto) -> list[str]:
    """Tensors and Casts that are not fp32 floats (run after shape inference to see intermediates)."""
    g = model.graph
    problems = [f"initializer {t.name} is {TensorProto.DataType.Name(t.data_type)}"
                for t in g.initializer if t.data_type in _NOT_FP32]
    for info in [*g.input, *g.output, *g.value_info]:
        if info.type.tensor_type.elem_type in _NOT_FP32:
            problems.append(f"tensor {info.name} is {TensorProto.DataType.Name(info.type.tensor_type.elem_type)}")
    for node in g.node:
        if node.op_type == "Cast":
            to = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "to")
            if to in _NOT_FP32:
                problems.append(f"Cast {node.name} casts to {TensorProto.DataType.Name(to)}")
    return problems


def batch_folding_nodes(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> list[str]:
    """Reshape/Flatten nodes that merge the batch axis away, found by running the graph.

    ``feeds``: two input dicts that differ only in batch size (e.g. 2 and 3). A node folds the batch when
    its input's leading dimension follows the batch size but its output's leading dimension does not.
    Needs onnxruntime; the graph must run in it (pre-NMS graphs do).
    """
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    watched = [n for n in probe.graph.node if n.op_type in ("Reshape", "Flatten")]
    names = sorted({n.input[0] for n in watched} | {n.output[0] for n in watched})
    existing = {o.name for o in probe.graph.output}
    inits = set(_initializers(probe))
    names = [name for name in names if name not in existing and name not in inits]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes(probe), options, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    runs = []
    for feed in feeds:
        values = session.run(out_names, feed)
        runs.append({name: np.shape(v) for name, v in zip(out_names, values)})
    batches = [next(iter(feed.values())).shape[0] for feed in feeds]

    def follows_batch(name: str) -> bool:
        if name in inits:
            return False
        shapes = [run[name] for run in runs]
        return all(len(s) > 0 and s[0] == b for s, b in zip(shapes, batches))

    return [f"{n.op_type} {n.name}" for n in watched if follows_batch(n.input[0]) and not follows_batch(n.output[0])]
