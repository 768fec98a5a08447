"""The graph contract: JSON round trip, schema, refusals (docs/contract.md)."""

from __future__ import annotations

import json

import pytest

from gflv2_deploy.contract import CONTRACT_VERSION, GraphContract, ModelInfo, Postprocessing, Preprocessing, Producer, TensorInfo
from gflv2_deploy.errors import UserError


def _contract() -> GraphContract:
    return GraphContract(
        model=ModelInfo(config_name="gflv2_tiny", class_names=("a", "b", "c"), checkpoint="m.pth", checkpoint_sha256="0" * 64),
        inputs=(TensorInfo("images", "float32", ("batch", 3, "height", "width")), TensorInfo("img_shape", "float32", ("batch", 2))),
        outputs=(TensorInfo("boxes", "float32", ("batch", 5000, 4)), TensorInfo("scores", "float32", ("batch", 5000, 3))),
        preprocessing=Preprocessing(test_scale=(384, 256)),
        postprocessing=Postprocessing(),
        producer=Producer(tool_version="0.1.0", torch_version="2.13.0"),
    )


def test_round_trip_and_schema(contract_schema) -> None:
    contract = _contract()
    data = contract_schema(contract)
    assert GraphContract.from_json(contract.to_json()) == contract
    assert data["model"]["num_classes"] == 3 and data["format_version"] == CONTRACT_VERSION
    assert contract.has_img_shape_input and contract.dynamic_batch and not contract.end_to_end
    int8 = contract.with_precision("int8", {"mode": "int8", "method": "max"})
    assert contract_schema(int8)["precision"] == {"compute": "int8", "recipe": {"mode": "int8", "method": "max"}}
    fixed = json.loads(contract.to_json())
    fixed["preprocessing"]["input_hw"] = [640, 640]
    assert GraphContract.from_dict(contract_schema(fixed)).preprocessing.input_hw == (640, 640)


def test_schema_rejects_what_the_reader_rejects(contract_schema) -> None:
    import jsonschema

    data = _contract().to_dict()
    data["postprocessing"]["nms"] = "fast"
    with pytest.raises(jsonschema.ValidationError):
        contract_schema(data)
    with pytest.raises(UserError, match="malformed graph contract"):
        GraphContract.from_dict(data)


@pytest.mark.parametrize(("version", "advice"), [(CONTRACT_VERSION + 1, "upgrade gflv2-deploy"), (1, "re-export")])
def test_other_versions_are_refused_in_one_line(version: int, advice: str) -> None:
    data = _contract().to_dict()
    data["format_version"] = version
    with pytest.raises(UserError, match=advice) as info:
        GraphContract.from_dict(data, "m.onnx")
    assert "\n" not in str(info.value) and f"version {version}" in str(info.value)


def test_missing_or_foreign_contract() -> None:
    with pytest.raises(UserError, match="carries no gflv2-deploy graph contract"):
        GraphContract.from_json(None, "x.onnx")
    with pytest.raises(UserError, match="not valid JSON"):
        GraphContract.from_json("{", "x.onnx")
    with pytest.raises(UserError, match="not a gflv2-deploy graph contract"):
        GraphContract.from_dict({"format": "other"}, "x.onnx")


def test_writers_check_the_schema_before_writing() -> None:
    """write_contract (export, quantize) and engine manifests refuse a contract that breaks the schema."""
    import dataclasses

    import onnx

    from gflv2_deploy.contract import Preprocessing
    from gflv2_deploy.contract_io import write_contract

    broken = dataclasses.replace(_contract(), preprocessing=Preprocessing(color="BGR"))
    model = onnx.ModelProto()
    with pytest.raises(ValueError, match="breaks its schema at \\['preprocessing', 'color'\\]"):
        write_contract(model, broken)
    assert len(model.metadata_props) == 0
    write_contract(model, _contract())
    assert model.metadata_props[0].key == "gflv2_deploy.contract"
