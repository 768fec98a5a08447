"""A fixed-size graph takes any photo (docs/contract.md letterbox rule): eval, predict and INT8 calibration on
all 50 real COCO photos of tests/data (14 portrait), with a 640 x 640 export whose test scale (1333, 800)
would otherwise resize them beyond the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.export.quantize import calibration_batches, collect_calibration_images
from gflv2_deploy.runtime.evaluate import evaluate_on_coco, predict_images
from gflv2_deploy.runtime.ort_runner import load_onnx_detector


@pytest.fixture(scope="module")
def fixed640(tmp_path_factory: pytest.TempPathFactory, detecting_tiny) -> Path:
    import dataclasses

    model = detecting_tiny(0)
    coco = dataclasses.replace(model.config.with_num_classes(80), test=dataclasses.replace(model.config.test, scale=(1333, 800)))
    model = detecting_tiny(0)
    path = tmp_path_factory.mktemp("fixed") / "tiny.640.onnx"
    from gflv2_deploy import build_model

    net = build_model(coco, num_classes=80).eval()
    export_onnx(net, path, dynamic_hw=False, input_hw=(640, 640))
    return path


def test_fixed_size_graph_evaluates_every_photo(fixed640: Path, tiny50: Path) -> None:
    contract = read_onnx_contract(fixed640)
    assert contract.preprocessing.input_hw == (640, 640) and contract.preprocessing.test_scale == (1333, 800)
    detector = load_onnx_detector(fixed640, threads=1)
    metrics, detections = evaluate_on_coco(detector, tiny50, "val2017" if (tiny50 / "val2017").is_dir() else None,
                                           progress=False)
    assert metrics["num_images"] == 50 and len(detections) == 50


def test_fixed_size_graph_predicts_portrait_photos(fixed640: Path, tiny50: Path, tmp_path: Path) -> None:
    photos = sorted((tiny50 / "val2017").glob("*.jpg"))
    portrait = [p for p in photos if (lambda im: im.shape[0] > im.shape[1])(read_image(p))][:3]
    assert len(portrait) == 3
    detector = load_onnx_detector(fixed640, threads=1)
    batch, metas = detector.preprocess([read_image(p) for p in portrait])
    assert batch.shape[2:] == (640, 640)
    for meta in metas:  # letterboxed: the long (vertical) side fills 640, the width keeps the ratio
        h, w = meta.ori_shape
        assert meta.img_shape[0] == 640 and abs(meta.img_shape[1] - w * 640 / h) <= 1
    written = predict_images(detector, portrait, tmp_path / "pred", progress=False)
    assert len(written) == 6 and all(p.stat().st_size > 0 for p in written)


def test_fixed_size_graph_calibrates_on_every_photo(fixed640: Path, tiny50: Path) -> None:
    calib = collect_calibration_images(tiny50 / "val2017", 50)
    feeds = list(calibration_batches(calib, read_onnx_contract(fixed640)))
    assert len(feeds) == 50
    assert all(f["images"].shape == (1, 3, 640, 640) for f in feeds)
    assert all(np.all(f["img_shape"] <= 640) and f["img_shape"].max() == 640 for f in feeds)
