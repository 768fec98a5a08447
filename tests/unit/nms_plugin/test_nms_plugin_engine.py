"""Engine tooling for the plugin without TensorRT: which library a build loads, the manifest record, and the
refusal of an engine whose plugin library is missing or changed."""

from __future__ import annotations

import types
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from gflv2_deploy import native
from gflv2_deploy import nms_plugin
from gflv2_deploy.engine.build import _plugin_libraries
from gflv2_deploy.engine.manifest import check_plugin_libraries, plugin_library_record
from gflv2_deploy.engine.onnx_info import inspect_onnx
from gflv2_deploy.engine.trt_api import RuntimeInfo, load_plugin_library
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.nms import attach_plugin_nms
from gflv2_deploy.onnx_ir import save_onnx


def runtime(flavour: str = "tensorrt", major: int = 10, load_library=lambda path: object()) -> RuntimeInfo:
    registry = types.SimpleNamespace(load_library=load_library)
    module = types.SimpleNamespace(get_plugin_registry=lambda: registry)
    return RuntimeInfo(flavour=flavour, module=module, version=f"{major}.0", major=major,  # type: ignore[arg-type]
                       strongly_typed_only=major >= 11, has_precision_flags=major < 11)


@pytest.fixture
def plugin_onnx(tmp_path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["b"], ["boxes"]), helper.make_node("Identity", ["s"], ["scores"])], "pre",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 10, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 10, 3])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 10, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10, 3])])
    model = attach_plugin_nms(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                              score_thr=0.05, iou_thr=0.6, max_dets=5, nms_pre=5, num_levels=2)
    path = tmp_path / "nms.onnx"
    save_onnx(model, path)  # at IR 8 (opset 17), as every graph the package writes
    return path


def test_attach_refuses_a_point_count_that_contradicts_nms_pre(plugin_onnx: Path) -> None:
    graph = onnx.load(str(plugin_onnx))
    graph.graph.node.pop()
    del graph.graph.output[:]
    graph.graph.output.extend([helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 10, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10, 3])])
    with pytest.raises(ValueError, match="nms_pre"):
        attach_plugin_nms(graph, score_thr=0.05, iou_thr=0.6, max_dets=5, nms_pre=4, num_levels=2)


def test_our_node_defaults_to_the_built_library_of_the_runtime_major(plugin_onnx: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    summary = inspect_onnx(plugin_onnx)
    assert [n.op_type for n in summary.plugin_nodes] == [nms_plugin.OP_TYPE]
    monkeypatch.setattr(native, "NATIVE_DIR", tmp_path / "no_wheel")
    monkeypatch.setattr(native, "_REPO_BUILD", tmp_path.parent)
    tmp_path = tmp_path.parent / "gflv2_nms"
    tmp_path.mkdir()
    with pytest.raises(UserError, match="libgflv2_nms_trt11.so.*build_cpp.sh"):
        _plugin_libraries(summary, runtime(major=11), None)
    (tmp_path / "libgflv2_nms_trt11.so").write_bytes(b"elf")
    assert _plugin_libraries(summary, runtime(major=11), None) == [tmp_path / "libgflv2_nms_trt11.so"]
    given = tmp_path / "other.so"
    given.write_bytes(b"x")
    assert _plugin_libraries(summary, runtime(major=11), [given]) == [given]
    with pytest.raises(UserError, match="not found"):
        _plugin_libraries(summary, runtime(), [tmp_path / "absent.so"])
    with pytest.raises(UserError, match="TensorRT-RTX"):
        _plugin_libraries(summary, runtime(flavour="tensorrt-rtx", major=1), None)


def test_load_plugin_library_reports_failure() -> None:
    with pytest.raises(UserError, match="could not load"):
        load_plugin_library(runtime(load_library=lambda path: None), "/x/lib.so")


def test_manifest_refuses_a_missing_or_changed_library(tmp_path: Path) -> None:
    lib = tmp_path / "libgflv2_nms_trt10.so"
    lib.write_bytes(b"version 1")
    manifest = {"plugin_libraries": [plugin_library_record(lib)]}
    assert manifest["plugin_libraries"][0]["path"] == str(lib.resolve())
    assert check_plugin_libraries(manifest) == [lib.resolve()]
    assert check_plugin_libraries({}) == []  # engines without plugins
    lib.write_bytes(b"version 2")
    with pytest.raises(UserError, match="changed since the engine was built"):
        check_plugin_libraries(manifest)
    lib.unlink()
    with pytest.raises(UserError, match="missing"):
        check_plugin_libraries(manifest)
