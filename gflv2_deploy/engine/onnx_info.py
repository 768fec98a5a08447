"""What the engine builder needs to know about an ONNX file before TensorRT sees it.

Read with the ``onnx`` package (weights stay on disk): the precision the graph itself carries
(Q/DQ nodes -> int8, fp16 tensors -> fp16, else fp32), plugin nodes, graph I/O, the
graph contract written by the export stage (gflv2_deploy/contract.py), and content hashes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gflv2_deploy.errors import UserError
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.contract_io import contract_from_metadata, has_contract, load_onnx_model
from gflv2_deploy.hashing import file_sha256

_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


@dataclass(frozen=True)
class PluginNode:
    """A node TensorRT can only import through its plugin registry."""

    name: str
    op_type: str
    domain: str
    plugin_version: str
    plugin_namespace: str


@dataclass(frozen=True)
class OnnxTensor:
    """Graph input or output: name, dims (int, or the symbolic name of a dynamic dim), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass
class OnnxSummary:
    """Facts about one ONNX model file (see ``inspect_onnx``)."""

    path: Path
    sha256: str
    external_data: dict[str, str]  # file name -> sha256, for weights stored beside the model
    opset: int
    num_qdq_nodes: int
    has_fp16: bool
    op_types: frozenset[str]
    plugin_nodes: list[PluginNode]
    inputs: list[OnnxTensor]
    outputs: list[OnnxTensor]
    contract: GraphContract | None = field(default=None)

    @property
    def detected_precision(self) -> str:
        """``"int8"`` with Q/DQ nodes, else ``"fp16"`` with any fp16 tensor, else ``"fp32"``."""
        if self.num_qdq_nodes:
            return "int8"
        return "fp16" if self.has_fp16 else "fp32"




def inspect_onnx(path: str | os.PathLike[str]) -> OnnxSummary:
    """Summarise the ONNX file at ``path`` without loading external weights.

    Raises UserError when the file is missing, is not an ONNX model, or carries unreadable
    graph contract; MissingDependencyError without the ``onnx`` package.
    """
    model = load_onnx_model(path, "building an engine from an ONNX file")
    import onnx  # present: load_onnx_model needed it

    onnx_path = Path(path)
    if not model.HasField("graph") or not model.graph.node:
        raise UserError(f"{onnx_path} holds no graph nodes: export the model again")

    fp16 = onnx.TensorProto.FLOAT16
    num_qdq = 0
    has_fp16 = False
    op_types: set[str] = set()
    plugins: list[PluginNode] = []
    external: set[str] = set()
    for graph in _graphs(model):
        for init in graph.initializer:
            has_fp16 |= init.data_type == fp16
            if init.data_location == onnx.TensorProto.EXTERNAL:
                external.update(e.value for e in init.external_data if e.key == "location")
        for info in [*graph.input, *graph.output, *graph.value_info]:
            has_fp16 |= info.type.tensor_type.elem_type == fp16
        for node in graph.node:
            op_types.add(node.op_type)
            attrs = {a.name: a for a in node.attribute}
            if node.op_type in _QDQ_OPS and node.domain in _STANDARD_DOMAINS:
                num_qdq += 1
            if node.op_type == "Cast" and "to" in attrs:
                has_fp16 |= attrs["to"].i == fp16
            if node.op_type == "Constant" and "value" in attrs:
                has_fp16 |= attrs["value"].t.data_type == fp16
            if node.op_type.endswith("_TRT") or node.domain not in _STANDARD_DOMAINS | {"ai.onnx.ml"}:
                plugins.append(
                    PluginNode(
                        name=node.name,
                        op_type=node.op_type,
                        domain=node.domain,
                        plugin_version=_str_attr(attrs.get("plugin_version"), "1"),
                        plugin_namespace=_str_attr(attrs.get("plugin_namespace"), ""),
                    )
                )

    initializer_names = {i.name for i in model.graph.initializer}
    inputs = [_tensor(v) for v in model.graph.input if v.name not in initializer_names]
    outputs = [_tensor(v) for v in model.graph.output]
    opset = next((o.version for o in model.opset_import if o.domain in _STANDARD_DOMAINS), 0)

    external_hashes = {}
    for name in sorted(external):
        data_path = onnx_path.parent / name
        if not data_path.is_file():
            raise UserError(f"{onnx_path} keeps weights in {name}, which is missing beside it")
        external_hashes[name] = file_sha256(data_path)

    return OnnxSummary(
        path=onnx_path,
        sha256=file_sha256(onnx_path),
        external_data=external_hashes,
        opset=int(opset),
        num_qdq_nodes=num_qdq,
        has_fp16=has_fp16,
        op_types=frozenset(op_types),
        plugin_nodes=plugins,
        inputs=inputs,
        outputs=outputs,
        contract=contract_from_metadata(model, onnx_path) if has_contract(model) else None,
    )


def _graphs(model: Any) -> Iterator[Any]:
    """The main graph, every subgraph (If/Loop/Scan bodies) and every local function body."""
    stack = [model.graph]
    stack.extend(fn for fn in model.functions)  # FunctionProto has .node but no initializers
    while stack:
        graph = stack.pop()
        yield _GraphView(graph)
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


class _GraphView:
    """Uniform access to GraphProto and FunctionProto (which has no initializer/value_info)."""

    def __init__(self, proto: Any) -> None:
        self.node = proto.node
        self.initializer = getattr(proto, "initializer", ())
        self.input = [i for i in getattr(proto, "input", ()) if not isinstance(i, str)]
        self.output = [o for o in getattr(proto, "output", ()) if not isinstance(o, str)]
        self.value_info = getattr(proto, "value_info", ())


def _str_attr(attr: Any, default: str) -> str:
    if attr is None:
        return default
    return attr.s.decode("utf-8") if attr.s else default


def _tensor(value_info: Any) -> OnnxTensor:
    import onnx

    tensor_type = value_info.type.tensor_type
    dims: list[int | str] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or "?")
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    except (KeyError, ValueError, TypeError):  # undefined (0) or a type numpy cannot name
        dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type).lower()
    return OnnxTensor(name=value_info.name, shape=tuple(dims), dtype=dtype)
