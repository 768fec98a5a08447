"""``export --input uint8``: letterboxed uint8 pictures in, the normalisation as the graph's first nodes.

The added nodes rebuild, bit for bit, the float32 tensor the host preprocessing feeds a float32-input
graph, so every output of the uint8 graph equals the float32 graph's exactly (onnxruntime CPU), for a fixed
and a dynamic input size, one picture and a padded batch of three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.contract import INPUT_UINT8
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.preprocess import stack_img_shapes
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.runtime.factory import make_detector

GRAPHS = {"e2e": dict(nms="onnx", input_hw=(384, 384)), "dynamic": dict(nms="none", dynamic_hw=True, input_hw=(96, 128))}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory, detecting_tiny) -> dict[str, tuple[Path, Path]]:
    """{kind: (float32-input ONNX, uint8-input ONNX)} of one detecting gflv2_tiny."""
    model = detecting_tiny(0)
    folder = tmp_path_factory.mktemp("uint8_input")
    out = {}
    for kind, kwargs in GRAPHS.items():
        f32, u8 = folder / f"{kind}.f32.onnx", folder / f"{kind}.u8.onnx"
        export_onnx(model, f32, **kwargs)
        export_onnx(model, u8, input_dtype="uint8", **kwargs)
        out[kind] = (f32, u8)
    return out


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_outputs_equal_the_float32_graph_exactly(pairs, tiny50: Path, kind: str) -> None:
    f32, u8 = (make_detector("onnxruntime", p) for p in pairs[kind])
    contract = u8.runner.contract
    assert contract.format_version == 3 and contract.preprocessing.input_format == INPUT_UINT8
    images = contract.tensor("images")
    assert images.dtype == "uint8" and images.shape[3] == 3 and images.shape[0] == "batch"
    pictures = [read_image(p) for p in sorted((tiny50 / "val2017").glob("*.jpg"))[:4]]
    total = 0
    for group in (pictures[:1], pictures[1:4]):
        floats, metas = f32.preprocess(group)
        pixels, metas8 = u8.preprocess(group)
        assert pixels.dtype == np.uint8 and pixels.nbytes * 4 == floats.nbytes
        shapes = stack_img_shapes(metas)
        want, got = f32.runner.infer(floats, shapes), u8.runner.infer(pixels, shapes)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        for a, b in zip(f32.detect(group), u8.detect(group)):
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
            total += len(a)
    assert total > 0


def test_uint8_graph_refuses_float_input_in_one_line(pairs) -> None:
    u8 = make_detector("onnxruntime", pairs["e2e"][1])
    with pytest.raises(UserError, match="uint8 BGR pictures"):
        u8.runner.infer(np.zeros((1, 384, 384, 3), np.float32))
    with pytest.raises(UserError, match="N x H x W x 3"):
        u8.runner.infer(np.zeros((1, 3, 384, 384), np.uint8))


def test_no_clamp_cannot_take_uint8(detecting_tiny, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs the img_shape input"):
        export_onnx(detecting_tiny(0), tmp_path / "m.onnx", input_dtype="uint8", clamp=False, input_hw=(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_fp16_conversion_keeps_the_pixel_nodes(pairs, tmp_path: Path, tiny50: Path) -> None:
    """The float16 region starts at the normalised tensor: the input stays uint8 and the table float32."""
    import onnx

    from gflv2_deploy.export.fp16 import convert_fp16
    from gflv2_deploy.export.uint8_input import PREFIX

    out = tmp_path / "u8.fp16.onnx"
    convert_fp16(pairs["dynamic"][1], out)
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    table = next(t for t in model.graph.initializer if t.name == PREFIX + "table")
    assert table.data_type == onnx.TensorProto.FLOAT
    f16 = make_detector("onnxruntime", out)
    picture = read_image(sorted((tiny50 / "val2017").glob("*.jpg"))[0])
    assert len(f16.detect([picture])[0]) > 0


def test_tensorrt_rtx_builds_the_uint8_graph_with_nhwc_profiles(pairs, tmp_path: Path) -> None:
    """The real TensorRT-RTX builder parses the pixel nodes (a uint8 tensor may only enter a Cast there) and
    the manifest's contract gets the profile's fixed H x W from the NHWC axes."""
    from gflv2_deploy.engine.build import build_engine
    from gflv2_deploy.engine.manifest import manifest_contract
    from gflv2_deploy.engine.onnx_info import inspect_onnx
    from gflv2_deploy.engine.profiles import complete_shapes

    source = pairs["dynamic"][1]
    with pytest.raises(UserError, match=r"images:1x256x384x3/1x256x384x3/4x256x384x3"):
        complete_shapes(inspect_onnx(source), {})
    profile = complete_shapes(inspect_onnx(source), {"images": ((1, 256, 320, 3), (2, 256, 320, 3), (4, 256, 320, 3))})
    manifest = build_engine(source, tmp_path / "u8.engine", runtime="tensorrt-rtx", shapes=profile)
    contract = manifest_contract(manifest)
    assert contract.preprocessing.input_hw == (256, 320) and contract.preprocessing.uint8_input
    images = next(t for t in manifest["inputs"] if t["name"] == "images")
    assert images["dtype"] == "uint8" and images["profile"]["max"] == [4, 256, 320, 3]


def test_int8_quantisation_leaves_the_pixel_nodes_exact(pairs, tmp_path: Path, tiny50: Path) -> None:
    """Calibration feeds uint8 pictures to a uint8 graph; its pixel nodes are never quantised, so the INT8 graph
    of each input format gives the same detections."""
    from gflv2_deploy.export.quantize import quantize_int8

    detections = []
    picture = read_image(sorted((tiny50 / "val2017").glob("*.jpg"))[0])
    for source in pairs["dynamic"]:
        out = tmp_path / f"{source.stem}.int8.onnx"
        quantize_int8(source, out, calib_data=tiny50 / "val2017", calib_images=4, target="onnxruntime")
        detections.append(make_detector("onnxruntime", out).detect([picture])[0])
    f32, u8 = detections
    assert len(f32) > 0
    np.testing.assert_array_equal(u8.scores, f32.scores)
    np.testing.assert_array_equal(u8.boxes, f32.boxes)
