"""Triton ``config.pbtxt`` files: built as dicts, parsed into ``model_config_pb2.ModelConfig``, checked, rendered.

Every config goes through tritonclient's protobuf schema (``json_format.ParseDict`` refuses an unknown
field or a wrong type; ``text_format`` renders the canonical text and parses it back) and then through
the semantic checks Triton would otherwise only report when loading the model: preferred batch sizes
within ``max_batch_size``, no batching options without batching, unique tensor names, positive instance
counts, and for an ensemble that every step names a model of the repository, maps only that model's
tensors, and connects tensors of one data type. ``check_repository`` runs the whole set before anything
is written.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract, TensorInfo
from gflv2_deploy.errors import MissingDependencyError, UserError

DTYPES: dict[str, str] = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
}


def _pb() -> tuple[Any, Any, Any]:
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingDependencyError("tritonclient", "triton", "writing Triton model configurations") from None
    return model_config_pb2, json_format, text_format


def tensor_entry(name: str, dtype: str, dims: Sequence[int]) -> dict[str, Any]:
    """One ``input``/``output`` entry; ``dtype`` is a contract dtype ("float32", ...) or "bytes"."""
    if dtype not in DTYPES:
        raise UserError(f"tensor '{name}' has dtype {dtype}, which a Triton config cannot express")
    return {"name": name, "data_type": DTYPES[dtype], "dims": [int(d) for d in dims]}


def contract_dims(tensor: TensorInfo, contract: GraphContract) -> list[int]:
    """Triton dims of a graph tensor: named (dynamic) axes -> -1, the batch axis left out when it is dynamic.

    The ``images`` height and width are the contract's fixed ``input_hw`` when it has one (an engine built
    with a fixed-size profile from a dynamic-size ONNX: Triton checks the config against the plan's dims).
    """
    dims = [d if isinstance(d, int) else -1 for d in tensor.shape]
    hw = contract.preprocessing.input_hw
    if tensor.name == spec.INPUT_IMAGES and hw is not None and len(dims) == 4:
        h_axis, w_axis = contract.preprocessing.hw_axes
        dims[h_axis], dims[w_axis] = int(hw[0]), int(hw[1])
    return dims[1:] if contract.dynamic_batch else dims


def parse_config(config: Mapping[str, Any]) -> Any:
    """dict -> ModelConfig message; UserError naming the model for an unknown field or a bad value."""
    model_config_pb2, json_format, _ = _pb()
    try:
        return json_format.ParseDict(dict(config), model_config_pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise UserError(f"invalid Triton config for model '{config.get('name')}': {exc}") from None


def parse_text_config(text: str, source: str) -> Any:
    """A ``config.pbtxt`` text -> ModelConfig; UserError naming ``source`` when it does not parse."""
    model_config_pb2, _, text_format = _pb()
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise UserError(f"{source} is not a valid Triton model config: {exc}") from None


def render_config(message: Any) -> str:
    """The canonical ``config.pbtxt`` text of a ModelConfig, checked to parse back to the same message."""
    model_config_pb2, _, text_format = _pb()
    text = text_format.MessageToString(message, use_short_repeated_primitives=True)
    if text_format.Parse(text, model_config_pb2.ModelConfig()) != message:
        raise UserError(f"config.pbtxt of model '{message.name}' does not parse back to itself")
    return text


def check_model(message: Any) -> list[str]:
    """Semantic problems of one model config (empty when fine)."""
    problems: list[str] = []
    name = message.name
    if not name:
        problems.append("a model has no name")
    if message.max_batch_size < 0:
        problems.append(f"{name}: max_batch_size {message.max_batch_size} is negative")
    if message.HasField("dynamic_batching"):
        if message.max_batch_size == 0:
            problems.append(f"{name}: dynamic_batching needs max_batch_size > 0")
        for size in message.dynamic_batching.preferred_batch_size:
            if not 1 <= size <= message.max_batch_size:
                problems.append(f"{name}: preferred batch size {size} is outside 1..max_batch_size {message.max_batch_size}")
    for kind, tensors in (("input", message.input), ("output", message.output)):
        seen: set[str] = set()
        for tensor in tensors:
            if tensor.name in seen:
                problems.append(f"{name}: {kind} '{tensor.name}' is listed twice")
            seen.add(tensor.name)
            if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
                problems.append(f"{name}: {kind} '{tensor.name}' has dims {list(tensor.dims)} (need sizes >= 1 or -1)")
    for group in message.instance_group:
        if group.count < 1:
            problems.append(f"{name}: instance_group count {group.count} must be at least 1")
    if message.platform != "ensemble" and not (message.platform or message.backend):
        problems.append(f"{name}: neither platform nor backend is set")
    return problems


def check_ensemble(message: Any, members: Mapping[str, Any]) -> list[str]:
    """Problems of an ensemble config against the other model configs of the repository (by name)."""
    problems: list[str] = []
    name = message.name
    available = {t.name: t.data_type for t in message.input}
    for step in message.ensemble_scheduling.step:
        member = members.get(step.model_name)
        if member is None:
            problems.append(f"{name}: step model '{step.model_name}' is not in the repository")
            continue
        if member.max_batch_size < message.max_batch_size:
            problems.append(f"{name}: max_batch_size {message.max_batch_size} exceeds that of '{step.model_name}' "
                            f"({member.max_batch_size})")
        member_in = {t.name: t.data_type for t in member.input}
        member_out = {t.name: t.data_type for t in member.output}
        for model_tensor, ensemble_tensor in step.input_map.items():
            if model_tensor not in member_in:
                problems.append(f"{name}: '{step.model_name}' has no input '{model_tensor}'")
            elif ensemble_tensor not in available:
                problems.append(f"{name}: '{ensemble_tensor}' feeds '{step.model_name}' before anything produces it")
            elif available[ensemble_tensor] != member_in[model_tensor]:
                problems.append(f"{name}: '{ensemble_tensor}' and input '{model_tensor}' of '{step.model_name}' "
                                "have different data types")
        missing = set(member_in) - set(step.input_map)
        if missing:
            problems.append(f"{name}: inputs {sorted(missing)} of '{step.model_name}' are not fed")
        for model_tensor, ensemble_tensor in step.output_map.items():
            if model_tensor not in member_out:
                problems.append(f"{name}: '{step.model_name}' has no output '{model_tensor}'")
            else:
                available[ensemble_tensor] = member_out[model_tensor]
    for tensor in message.output:
        if tensor.name not in available:
            problems.append(f"{name}: ensemble output '{tensor.name}' is produced by no step")
        elif available[tensor.name] != tensor.data_type:
            problems.append(f"{name}: ensemble output '{tensor.name}' has another data type than its producer")
    return problems


def check_repository(messages: Sequence[Any]) -> None:
    """All semantic checks over the configs of one repository; UserError listing every problem."""
    by_name = {m.name: m for m in messages}
    problems = [p for m in messages for p in check_model(m)]
    if len(by_name) != len(messages):
        problems.append("two models share a name")
    for message in messages:
        if message.platform == "ensemble":
            problems += check_ensemble(message, by_name)
    if problems:
        raise UserError("invalid Triton repository: " + "; ".join(problems))
