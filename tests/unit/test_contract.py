"""The graph contract: JSON round trip, schema, refusals (docs/contract.md)."""

from __future__ import annotations

import json

import pytest

from gflv2_deploy.contract import (
    CONTRACT_VERSION,
    INPUT_UINT8,
    GraphContract,
    ModelInfo,
    Postprocessing,
    Preprocessing,
    Producer,
    TensorInfo,
)
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
    assert data["model"]["num_classes"] == 3 and data["format_version"] == 2  # float32 input: still version 2
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


def _uint8_contract() -> GraphContract:
    import dataclasses

    c = _contract()
    images = TensorInfo("images", "uint8", ("batch", "height", "width", 3))
    return dataclasses.replace(c, inputs=(images, c.inputs[1]),
                               preprocessing=dataclasses.replace(c.preprocessing, input_format=INPUT_UINT8))


def test_uint8_input_is_version_3_and_version_2_stays_readable(contract_schema) -> None:
    """A writer emits the lowest version that expresses the graph: readers of version 2 run float32 graphs still."""
    u8 = _uint8_contract()
    data = contract_schema(u8)
    assert data["format_version"] == 3 == CONTRACT_VERSION and data["preprocessing"]["input_format"] == INPUT_UINT8
    parsed = GraphContract.from_dict(data)
    assert parsed == u8 and parsed.preprocessing.uint8_input and parsed.preprocessing.hw_axes == (1, 2)
    assert parsed.preprocessing.images_shape(2, 32, 64) == (2, 32, 64, 3)
    v2 = _contract().to_dict()
    assert "input_format" not in v2["preprocessing"]
    assert not GraphContract.from_dict(v2).preprocessing.uint8_input


def test_schema_ties_input_format_to_the_version(contract_schema) -> None:
    import jsonschema

    v2_with_member = _contract().to_dict()
    v2_with_member["preprocessing"]["input_format"] = INPUT_UINT8
    with pytest.raises(jsonschema.ValidationError):
        contract_schema(v2_with_member)
    v3_without = _uint8_contract().to_dict()
    del v3_without["preprocessing"]["input_format"]
    with pytest.raises(jsonschema.ValidationError):
        contract_schema(v3_without)
    with pytest.raises(UserError, match="malformed graph contract"):
        GraphContract.from_dict(v3_without)


def test_uint8_contract_needs_a_uint8_nhwc_images_input() -> None:
    data = _uint8_contract().to_dict()
    data["inputs"][0] = {"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]}
    with pytest.raises(UserError, match="uint8 N x H x W x 3"):
        GraphContract.from_dict(data, "m.onnx")


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
