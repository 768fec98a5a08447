"""``build`` before any engine is built (issue 9, rows 7, 9, 10): --shapes checked against the graph's inputs and the
input size rule, foreign ONNX files refused for conversions with coherent advice, converted file names, and the
manifest's ONNX path. The toy graph is conftest's ``toy_fp32`` (onnx helper API, no torch, no contract)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from gflv2_deploy.engine.manifest import onnx_path_from
from gflv2_deploy.engine.onnx_info import OnnxSummary, OnnxTensor, inspect_onnx
from gflv2_deploy.engine.policy import build_from_onnx, converted_onnx_path
from gflv2_deploy.engine.profiles import complete_shapes, parse_shapes
from gflv2_deploy.errors import UserError


def _summary(contract: Any) -> OnnxSummary:
    """Inputs of a gflv2-deploy graph with a dynamic batch and size (``contract`` None: a foreign graph with them)."""
    return OnnxSummary(path=Path("m.onnx"), sha256="0" * 64, external_data={}, opset=17, num_qdq_nodes=0, has_fp16=False,
                       op_types=frozenset(), plugin_nodes=[],
                       inputs=[OnnxTensor("images", ("batch", 3, "height", "width"), "float32"),
                               OnnxTensor("img_shape", ("batch", 2), "float32")],
                       outputs=[], contract=contract)


def test_unknown_input_name_is_named_with_the_real_ones(tmp_path: Path, toy_fp32: Path, sample_contract) -> None:
    with pytest.raises(UserError, match=r"--shapes names input\(s\) 'imgs', which m.onnx does not have; its inputs are "
                                        r"'images', 'img_shape'"):
        complete_shapes(_summary(sample_contract()), parse_shapes(["imgs:1x3x320x320/1x3x320x320/2x3x320x320"]))
    # through build: refused before anything is converted or built
    with pytest.raises(UserError, match="'imgs', which toy_fp32.onnx does not have; its inputs are 'images'"):
        build_from_onnx(toy_fp32, tmp_path / "toy.engine", precision=None, runtime="tensorrt-rtx",
                        shapes=parse_shapes(["imgs:1x3x32x32"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


@pytest.mark.parametrize("text, message", [("images:1x3x33x33", "multiples of 32"),
                                           ("images:1x3x320x320/1x3x320x320/1x3x320x8224", "at most 8192")])
def test_input_size_rule_of_export_and_bench_holds_for_build(text: str, message: str, sample_contract) -> None:
    with pytest.raises(UserError, match=message):
        complete_shapes(_summary(sample_contract()), parse_shapes([text]))
    foreign = complete_shapes(_summary(None), parse_shapes([text]))  # a foreign graph keeps its own rules
    assert foreign["img_shape"][0] == (1, 2)


def test_foreign_onnx_conversions_give_coherent_advice(tmp_path: Path, toy_fp32: Path) -> None:
    toy = toy_fp32
    assert inspect_onnx(toy).contract is None
    for precision in ("fp16", "int8"):
        with pytest.raises(UserError) as info:
            build_from_onnx(toy, tmp_path / "toy.engine", precision=precision, runtime="tensorrt-rtx",
                            shapes=parse_shapes(["images:1x3x32x32"]), calib_data=tmp_path)
        message = str(info.value)
        assert "carries no gflv2-deploy contract" in message and "--fp32" in message
        assert "re-export" not in message and "gflv2-deploy quantize" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]
    logged: list[str] = []
    with contextlib.suppress(UserError):  # building needs TensorRT(-RTX); the note comes first either way
        build_from_onnx(toy, tmp_path / "toy.engine", precision="fp32", runtime="tensorrt", shapes=parse_shapes(["images:1x3x32x32"]),
                        log=logged.append)
    assert any("carries no gflv2-deploy contract" in line for line in logged)


def test_converted_names_are_not_doubled() -> None:
    assert converted_onnx_path(Path("run/m.int8.engine"), "int8") == Path("run/m.int8.onnx")
    assert converted_onnx_path(Path("run/m.engine"), "fp16") == Path("run/m.fp16.onnx")


def test_manifest_onnx_path_is_relative_to_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "engines").mkdir()
    monkeypatch.chdir(tmp_path / "models")  # the current folder at build time does not matter
    assert onnx_path_from(tmp_path / "engines" / "m.engine", "m.onnx") == "../models/m.onnx"
    assert onnx_path_from("m.engine", "m.onnx") == "m.onnx"
