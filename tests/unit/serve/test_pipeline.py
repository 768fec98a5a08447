"""Per-request work of the python-backend models, without a server: the same numbers as the Detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gflv2_deploy.data.image_io import image_header_size, read_image
from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.factory import make_detector
from gflv2_deploy.serve import pipeline
from gflv2_deploy.serve.model_contract import model_contract


def test_header_sizes(tiny50: Path, huge_png_header: bytes) -> None:
    path = sorted((tiny50 / "val2017").glob("*.jpg"))[0]
    assert image_header_size(path.read_bytes()) == read_image(path).shape[:2]
    ok, png = cv2.imencode(".png", np.zeros((7, 9, 3), np.uint8))
    assert image_header_size(png.tobytes()) == (7, 9)
    ok, bmp = cv2.imencode(".bmp", np.zeros((5, 3, 3), np.uint8))
    assert image_header_size(bmp.tobytes()) == (5, 3)
    assert image_header_size(huge_png_header) == (20000, 20000)
    assert image_header_size(b"not a picture") is None


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"definitely not a picture", "cannot decode"),
    (None, "20000 x 20000 pixels by its header"),
])
def test_bad_pictures_are_user_errors(serve_onnx, huge_png_header, data, message) -> None:
    data = huge_png_header if data is None else data
    pre = model_contract(serve_onnx["prenms"]).preprocessing
    with pytest.raises(UserError, match=message):
        pipeline.preprocess_pictures([data], pre)
    with pytest.raises(UserError, match="empty batch"):
        pipeline.preprocess_pictures([], pre)


@pytest.mark.parametrize("kind", ["e2e", "prenms"])
def test_ensemble_steps_equal_the_detector(serve_onnx, tiny50: Path, kind: str) -> None:
    """preprocess_pictures -> onnxruntime -> batch_detections gives the Detector's detections exactly."""
    contract = model_contract(serve_onnx[kind])
    detector = make_detector("onnxruntime", serve_onnx[kind])
    network = pipeline.OnnxNetwork(str(serve_onnx[kind]), contract)
    paths = sorted((tiny50 / "val2017").glob("*.jpg"))[:3]
    for group in ([paths[0]], paths[1:3]):
        images, img_shape, scale = pipeline.preprocess_pictures([p.read_bytes() for p in group], contract.preprocessing)
        ref_batch, metas = detector.preprocess([read_image(p) for p in group])
        np.testing.assert_array_equal(images, ref_batch)
        feeds = {"images": images, "img_shape": img_shape}
        got = pipeline.batch_detections(network.run(feeds), scale, img_shape, contract.postprocessing)
        ref = detector.detect([read_image(p) for p in group])
        for i, dets in enumerate(ref):
            n = int(got["num_detections"][i, 0])
            assert n == len(dets) > 0
            np.testing.assert_array_equal(got["detection_classes"][i, :n], dets.labels)
            np.testing.assert_allclose(got["detection_scores"][i, :n], dets.scores, rtol=0, atol=1e-6)
            np.testing.assert_allclose(got["detection_boxes"][i, :n], dets.boxes, rtol=0, atol=1e-3)
            assert np.all(got["detection_classes"][i, n:] == contract.postprocessing.pad_class)


def test_network_requests_are_bounded_by_the_served_contract(serve_onnx) -> None:
    """A direct request to the network: wrong dtype, layout, sizes off the divisor or beyond what is served, and an
    img_shape outside the picture are each refused (a 33 x 47 input would silently give no detection)."""
    import dataclasses

    contract = model_contract(serve_onnx["prenms"])  # dynamic size: bounded by the test scale (384) padded
    ok = {"images": np.zeros((2, 3, 64, 96), np.float32), "img_shape": np.array([[64, 96], [32, 32]], np.float32)}
    pipeline.check_network_feeds(ok, contract)
    bad = [
        ({**ok, "images": ok["images"].astype(np.float64)}, "float32"),
        ({**ok, "images": np.zeros((2, 3, 33, 47), np.float32)}, "multiples of 32"),
        ({**ok, "images": np.zeros((1, 3, 8192, 8192), np.float32)[:, :, :416, :416]}, "up to 384 x 384"),
        ({**ok, "img_shape": np.array([[0, 96], [32, 32]], np.float32)}, "img_shape"),
        ({**ok, "img_shape": np.array([[65, 96], [32, 32]], np.float32)}, "img_shape"),
    ]
    for feeds, message in bad:
        with pytest.raises(UserError, match=message):
            pipeline.check_network_feeds(feeds, contract)
    u8 = model_contract(serve_onnx["u8"])
    pipeline.check_network_feeds({"images": np.zeros((1, 384, 384, 3), np.uint8),
                                  "img_shape": np.array([[384, 384]], np.float32)}, u8)
    with pytest.raises(UserError, match="N x H x W x 3 uint8"):
        pipeline.check_network_feeds({"images": np.zeros((1, 3, 384, 384), np.uint8),
                                      "img_shape": np.array([[384, 384]], np.float32)}, u8)
    fixed = dataclasses.replace(contract, preprocessing=dataclasses.replace(contract.preprocessing, input_hw=(64, 96)))
    with pytest.raises(UserError, match="up to 64 x 96"):
        pipeline.check_network_feeds({**ok, "images": np.zeros((2, 3, 96, 96), np.float32)}, fixed)
