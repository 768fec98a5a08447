"""The graph contract of a model file (ONNX or engine), read in one place for the serving code.

``model_contract(path)`` returns a ``GraphContract`` for an exported ONNX (metadata key
``gflv2_deploy.contract``) or a built engine (its ``<engine>.json`` manifest, member ``contract``).
Exports older than the contract carry the version-1 ``gflv2_deploy.spec`` dict; it is translated here
(and only here) until every exporter writes the contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from gflv2_deploy import spec
from gflv2_deploy.contract import (CONTRACT_METADATA_KEY, GraphContract, ModelInfo, Postprocessing,
                                   Preprocessing, Producer, TensorInfo)
from gflv2_deploy.errors import UserError

ENGINE_SUFFIXES: tuple[str, ...] = (".engine", ".plan")


def model_contract(path: str | os.PathLike[str]) -> GraphContract:
    """The contract of the ONNX or engine at ``path``; UserError for a missing file or one without a contract."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model file not found: {p}")
    if p.suffix == ".onnx":
        from gflv2_deploy.export.metadata import SPEC_METADATA_KEY, load_onnx_model, parse_spec

        props = {prop.key: prop.value for prop in load_onnx_model(p, "reading the graph contract").metadata_props}
        if CONTRACT_METADATA_KEY in props:
            return GraphContract.from_json(props[CONTRACT_METADATA_KEY], str(p))
        return contract_from_v1_spec(parse_spec(props.get(SPEC_METADATA_KEY), p))
    if p.suffix in ENGINE_SUFFIXES:
        manifest = Path(os.fspath(p) + ".json")
        if not manifest.is_file():
            raise UserError(f"{p} has no manifest {manifest.name} beside it: build it with `gflv2-deploy build`")
        try:
            data = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read the engine manifest {manifest}: {exc}") from None
        if isinstance(data.get("contract"), Mapping):
            return GraphContract.from_dict(data["contract"], str(manifest))
        if isinstance(data.get("spec"), Mapping):
            return contract_from_v1_spec(data["spec"])
        raise UserError(f"{manifest} carries no graph contract: rebuild the engine from an ONNX exported by gflv2-deploy")
    raise UserError(f"{p}: expected an exported ONNX (.onnx) or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")


def contract_from_v1_spec(old: Mapping[str, Any]) -> GraphContract:
    """Translate the version-1 ``gflv2_deploy.spec`` metadata dict (export/metadata.py) to a GraphContract."""
    pre, nms, test = old["preprocessing"], old["nms"], old.get("test", {})
    static_hw = not old.get("dynamic_axes", {}).get("height_width", False)
    padding = nms.get("padding") or {}

    def tensors(items: Any) -> tuple[TensorInfo, ...]:
        return tuple(TensorInfo(t["name"], str(t["dtype"]), tuple(t["shape"])) for t in items)

    return GraphContract(
        model=ModelInfo(config_name=old["config_name"], class_names=tuple(old["class_names"]),
                        strides=tuple(old.get("strides", spec.STRIDES)), reg_max=int(old.get("reg_max", spec.REG_MAX)),
                        reg_topk=int(old.get("reg_topk", spec.REG_TOPK)),
                        checkpoint=old.get("source", {}).get("checkpoint"),
                        checkpoint_sha256=old.get("source", {}).get("checkpoint_sha256")),
        inputs=tensors(old["inputs"]),
        outputs=tensors(old["outputs"]),
        preprocessing=Preprocessing(test_scale=tuple(pre["test_scale"]), mean=tuple(pre["mean"]),  # type: ignore[arg-type]
                                    std=tuple(pre["std"]), pad_divisor=int(pre["pad_divisor"]),  # type: ignore[arg-type]
                                    input_hw=tuple(old["input_hw"]) if static_hw else None,  # type: ignore[arg-type]
                                    pad_value=float(pre.get("pad_value", 0.0))),
        postprocessing=Postprocessing(nms=str(nms["form"]), nms_pre=int(test.get("nms_pre", spec.NMS_PRE)),
                                      nms_pre_in_graph=False, score_thr=float(nms["score_threshold"]),
                                      iou_thr=float(nms["iou_threshold"]), max_per_img=int(nms["max_dets"]),
                                      clamped=bool(old.get("clamp", True)),
                                      pad_box=float(padding.get("box") or 0.0), pad_score=float(padding.get("score") or 0.0),
                                      pad_class=int(padding["class"]) if padding.get("class") is not None else -1),
        producer=Producer(tool_version=str(old.get("tool", {}).get("version", "0")),
                          exporter=str(old.get("exporter", {}).get("name", "torchscript")),
                          torch_version=old.get("exporter", {}).get("torch_version"), opset=int(old.get("opset", 17))),
    )
