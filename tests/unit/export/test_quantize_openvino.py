"""OpenVINO runs the U8S8 INT8 Q/DQ ONNX written for onnxruntime (in int8, close to onnxruntime and fp32) and
the FP16 ONNX (close to onnxruntime's run of it).

Same small setting as test_quantize.py: gflv2_tiny (non-trivial random head) at 128 x 160, calibrated
on six synthetic 96 x 128 pictures with the max method.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.data.preprocess import preprocess
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.export.quantize import quantize_int8
from gflv2_deploy.runtime.ort_runner import OrtRunner

ov = pytest.importorskip("openvino")
from gflv2_deploy.runtime.openvino_runner import OpenVinoRunner  # noqa: E402

HW = (128, 160)


@pytest.fixture(scope="module")
def u8s8(tmp_path_factory: pytest.TempPathFactory, prenms: Path) -> tuple[Path, Path]:
    """(U8S8 INT8 ONNX, its calibration folder)."""
    root = tmp_path_factory.mktemp("ov_calib") / "synth"
    generate_synthetic_coco(root, 8, seed=3, image_size=(96, 128), val_fraction=0.25)
    out = root.parent / "tiny.int8.onnxruntime.onnx"
    quantize_int8(prenms, out, calib_data=root / "train", calib_images=6, target="onnxruntime", method="max")
    return out, root / "train"


def _pictures(calib_dir: Path, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    images = [read_image(p) for p in sorted(calib_dir.glob("*.jpg"))[:n]]
    batch, metas = preprocess(images, scale=(160, 128), pad_to=HW)
    return batch, np.array([m.img_shape for m in metas], np.float32)


def test_openvino_runs_u8s8_convolutions_in_int8(u8s8: tuple[Path, Path]) -> None:
    core = ov.Core()
    compiled = core.compile_model(str(u8s8[0]), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    kinds = Counter((op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
                    for op in compiled.get_runtime_model().get_ordered_ops())
    # most convolutions execute on uint8 activations; the float head tail stays f32 even with the f32 hint
    assert kinds[("Convolution", "u8")] > kinds[("Convolution", "f32")] > 0


def test_openvino_int8_matches_onnxruntime_int8_and_fp32(u8s8: tuple[Path, Path], prenms: Path) -> None:
    path, calib_dir = u8s8
    images, img_shape = _pictures(calib_dir)
    ours = OpenVinoRunner(path, threads=2).infer(images, img_shape)
    ort_int8 = OrtRunner(path, threads=2).infer(images, img_shape)
    fp32 = OrtRunner(prenms, threads=2).infer(images, img_shape)
    for ref, bound in ((ort_int8, 0.01), (fp32, 0.01)):  # the INT8 bounds of test_quantize.py
        assert float(np.abs(ours["scores"] - ref["scores"]).mean()) < bound
        confident = ref["scores"].max(axis=2) > 0.05
        assert confident.sum() > 10
        assert float(np.median(np.abs(ours["boxes"] - ref["boxes"])[confident])) < 4.0


def test_openvino_runs_the_fp16_graph_like_onnxruntime(tmp_path: Path, prenms: Path, u8s8: tuple[Path, Path]) -> None:
    from gflv2_deploy.export.fp16 import convert_fp16

    fp16 = tmp_path / "tiny.fp16.onnx"
    convert_fp16(prenms, fp16)
    images, img_shape = _pictures(u8s8[1])
    ours = OpenVinoRunner(fp16, threads=2).infer(images, img_shape)
    ref = OrtRunner(fp16, threads=2).infer(images, img_shape)
    assert ours["scores"].dtype == np.float32 and ours["scores"].shape == ref["scores"].shape
    # the same graph (float16 region and its Casts) run by two runtimes: measured 2e-6 (scores), 6e-5 px (boxes)
    assert float(np.abs(ours["scores"] - ref["scores"]).max()) <= 1e-3
    assert float(np.abs(ours["boxes"] - ref["boxes"]).max()) <= 0.05
