"""Every graph the package writes carries the lowest IR version its opsets need (onnx_ir.py), not the installed
onnx's newest: onnxruntime 1.30 reads IR <= 13 and refused the test graphs written at 14 on a real H200."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gflv2_deploy.export.fp16 import convert_fp16
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.onnx_ir import lowest_ir_version, onnx_bytes, stamp_lowest_ir_version

PACKAGE = Path(__file__).resolve().parents[3] / "gflv2_deploy"
ORT_1_30_MAX_IR = 13


def table_ir(opset: int) -> int:
    """IR version of the first onnx release whose ai.onnx opset reaches ``opset`` (read from VERSION_TABLE here,
    independently of onnx_ir.py, which uses helper.find_min_ir_version_for)."""
    return min(row[1] for row in helper.VERSION_TABLE if row[2] >= opset)


def assert_lowest(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert model.ir_version == table_ir(opset) <= ORT_1_30_MAX_IR, (path.name, model.ir_version, opset)
    return model


def test_the_table_we_rely_on() -> None:
    assert table_ir(17) == 8 and table_ir(18) == 8 and table_ir(21) == 10
    assert onnx.IR_VERSION >= 10  # the installed onnx writes newer IR versions than opset 17 needs


@pytest.mark.parametrize("opset, ir", [(13, 7), (17, 8), (18, 8), (21, 10)])
def test_lowest_ir_version_follows_the_opset(opset: int, ir: int) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("gflv2", 1)])
    assert model.ir_version == onnx.IR_VERSION  # make_model's default: the newest
    assert stamp_lowest_ir_version(model).ir_version == ir == table_ir(opset)
    onnx.checker.check_model(model)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.int8), "w"))
    model.graph.initializer[-1].data_type = TensorProto.INT4  # a type newer than opset 17's IR
    model.graph.initializer[-1].ClearField("int32_data")
    assert lowest_ir_version(model) == max(ir, 10)


def test_exported_and_converted_graphs_are_written_at_the_lowest_ir(tmp_path: Path, exported: dict[str, Path],
                                                                     prenms: Path, tiny_model) -> None:
    for path in exported.values():  # none, onnx, trt at opset 17
        assert_lowest(path)
    assert_lowest(prenms)
    plugin = tmp_path / "plugin.onnx"
    export_onnx(tiny_model, plugin, nms="plugin", input_hw=(64, 64))
    assert_lowest(plugin)
    fp16 = tmp_path / "fp16.onnx"
    convert_fp16(prenms, fp16, nms="onnx")
    assert assert_lowest(fp16).graph.initializer[0].data_type in (TensorProto.FLOAT16, TensorProto.FLOAT)


def test_session_only_copies_and_test_graphs_too(exported: dict[str, Path]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nms_plugin"))
    try:
        from test_nms_plugin_op import nms_graph  # the CPU twin's graph, run on the GPU machine's onnxruntime 1.30
    finally:
        sys.path.pop(0)
    assert nms_graph(3, score_thr=0.05, iou_thr=0.6, max_dets=10).ir_version == 8
    from gflv2_deploy.runtime.factory import _write_with_pre_nms_outputs

    copy = exported["onnx"].with_name("exposed.onnx")
    _write_with_pre_nms_outputs(exported["onnx"], copy)
    assert_lowest(copy)
    model = onnx.load(str(exported["none"]))
    model.ir_version = onnx.IR_VERSION
    assert onnx.load_from_string(onnx_bytes(model)).ir_version == 8


def test_no_writer_bypasses_the_helper() -> None:
    """``onnx.save`` and ``.SerializeToString()`` of a model appear only in onnx_ir.py."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "onnx_ir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("save", "save_model", "SerializeToString"):
                base = node.value
                if node.attr == "SerializeToString" or (isinstance(base, ast.Name) and base.id == "onnx"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.attr}")
    assert offenders == []
