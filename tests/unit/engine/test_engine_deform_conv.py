"""ONNX DeformConv (deformable convolutions) and the TensorRT runtimes: the real TensorRT-RTX parser here has no
importer and no ModulatedDeformConv2d plugin for it, so build_engine refuses the graph with one clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gflv2_deploy.engine import build_engine
from gflv2_deploy.engine import trt_api
from gflv2_deploy.engine.build import DEFORM_CONV_PLUGIN
from gflv2_deploy.engine.trt_api import RuntimeInfo
from gflv2_deploy.errors import UserError


def deform_conv_onnx(path: Path) -> Path:
    """images [1,8,16,16] -> Conv 3x3 (offsets, 18 ch) -> DeformConv 3x3 (8 ch, pad 1) -> feat: as the exporter writes it."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n)
             for n, s in (("w", (8, 8, 3, 3)), ("ow", (18, 8, 3, 3)), ("ob", (18,)))]
    nodes = [helper.make_node("Conv", ["images", "ow", "ob"], ["offset"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("DeformConv", ["images", "w", "offset"], ["feat"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              strides=[1, 1], dilations=[1, 1], group=1, offset_group=1, name="dcn")]
    graph = helper.make_graph(nodes, "dcn", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_rtx_parser_has_no_deform_conv(tmp_path: Path, rtx: RuntimeInfo) -> None:
    """The fact the refusal rests on: TensorRT-RTX falls back to a plugin lookup for DeformConv and finds none.
    (When a TensorRT-RTX release parses it, this fails: then build and test an RTX engine instead.)"""
    model = deform_conv_onnx(tmp_path / "dcn.onnx")
    logger, _ = trt_api.shared_logger(rtx)
    trt_api.init_standard_plugins(rtx, logger)
    assert not any(trt_api.has_plugin(rtx, DEFORM_CONV_PLUGIN, v) for v in ("1", "2"))
    network = rtx.module.Builder(logger).create_network(0)
    parser = rtx.module.OnnxParser(network, logger)
    assert not parser.parse_from_file(str(model))
    assert "DeformConv" in " ".join(trt_api.parser_errors(parser)) and "Plugin not found" in " ".join(trt_api.parser_errors(parser))


def test_deform_conv_graph_is_refused_clearly_on_rtx(tmp_path: Path) -> None:
    model = deform_conv_onnx(tmp_path / "dcn.onnx")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"dcn\.onnx has deformable convolutions \(ONNX DeformConv\), but TensorRT-RTX .* "
                                        r"no importer .*ModulatedDeformConv2d.*TensorRT >= 10\.1.*onnxruntime"):
        build_engine(model, out / "dcn.plan", runtime="tensorrt-rtx")
    assert not out.exists() or list(out.iterdir()) == []


def test_weakly_typed_fp16_of_deform_conv_is_refused_on_tensorrt10(tmp_path: Path) -> None:
    """TensorRT 10's BuilderFlag.FP16 may pick the plugin's fp16 format; the converted fp16 ONNX keeps DCN float32."""
    from gflv2_deploy.engine.build import check_precision
    from gflv2_deploy.engine.onnx_info import inspect_onnx

    trt10 = RuntimeInfo(flavour="tensorrt", module=None, version="10.16.0", major=10,  # type: ignore[arg-type]
                        strongly_typed_only=False, has_precision_flags=True)
    summary = inspect_onnx(deform_conv_onnx(tmp_path / "dcn.onnx"))
    with pytest.raises(UserError, match=r"weakly typed fp16 build .*deformable convolutions.*quantize --fp16"):
        check_precision(summary, "fp16", trt10)
    check_precision(summary, "fp32", trt10)
