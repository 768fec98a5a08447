"""Shared fixtures: the test data folder (tests/data), a fixed torch thread count, a detecting tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """tests/data: real COCO photos and annotations kept in the repository (tests/data/README.md)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def tiny50(test_data: Path) -> Path:
    """50 COCO val2017 photos with their official annotations (COCO folder layout, split ``val2017``)."""
    return test_data / "coco_val2017_tiny50"


def validate_contract_schema(contract: object) -> dict:
    """Validate a graph contract (GraphContract, dict or JSON text) against gflv2_deploy/contract.schema.json."""
    import json

    import jsonschema

    from gflv2_deploy.contract import SCHEMA_PATH, GraphContract

    data = contract.to_dict() if isinstance(contract, GraphContract) else json.loads(contract) if isinstance(contract, str) else contract
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(data)
    GraphContract.from_dict(data)  # and it parses
    return data


@pytest.fixture(scope="session")
def contract_schema() -> Callable[[object], dict]:
    """``contract_schema(c)`` validates a graph contract against the JSON Schema (see validate_contract_schema)."""
    return validate_contract_schema


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _detecting_model(config: str, seed: int = 0, num_classes: int | None = None, cls_std: float = 0.15,
                     reg_std: float = 0.05, offset_px: float = 1.5):
    """``config`` with random weights and a head that detects: classification / regression convs drawn with
    ``cls_std`` / ``reg_std`` (wider heads need smaller values), biases giving scores above 0.05 and boxes
    of many sizes. Deformable convolutions get offsets of about ``offset_px`` pixels (fractional, mostly from the
    offset conv's bias: their zero initialisation would make them plain convolutions)."""
    from gflv2_deploy import build_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(config, **({"num_classes": num_classes} if num_classes else {})).eval()
        head = model.bbox_head
        with torch.no_grad():
            head.gfl_cls.weight.normal_(0, cls_std)
            head.gfl_cls.bias.uniform_(-5.0, -3.0)
            head.gfl_reg.weight.normal_(0, reg_std)
            head.gfl_reg.bias.normal_(0, 1.0)
            head.reg_conf[2].bias.fill_(1.0)
            for m in model.modules():
                if hasattr(m, "conv_offset"):
                    fan_in = m.conv_offset.weight[0].numel()
                    m.conv_offset.weight.normal_(0, 0.02 * offset_px / fan_in**0.5)
                    m.conv_offset.bias.normal_(0, offset_px)
    return model


def _detecting_tiny(seed: int = 0):
    """gflv2_tiny with 6 classes and head weights that give real detections (scores above 0.05, boxes of many sizes)."""
    return _detecting_model("gflv2_tiny", seed, num_classes=6)


@pytest.fixture(scope="session")
def detecting_tiny() -> Callable[..., torch.nn.Module]:
    """Factory ``detecting_tiny(seed=0)``: a trained-looking gflv2_tiny without training (parity and export tests)."""
    return _detecting_tiny


@pytest.fixture(scope="session")
def detecting_model() -> Callable[..., torch.nn.Module]:
    """Factory ``detecting_model(config, seed=0, num_classes=None, cls_std=0.15, reg_std=0.05, offset_px=1.5)``
    (see _detecting_model)."""
    return _detecting_model


def _write_pseudo_gt(ckpt: Path, synth: Path, out: Path) -> None:
    """COCO folder with the synthetic val pictures and the torch model's detections scoring > 0.3 as ground truth."""
    import json
    import shutil

    from gflv2_deploy.data.coco import CocoDataset, find_coco_files
    from gflv2_deploy.data.image_io import read_image
    from gflv2_deploy.runtime.factory import make_detector

    dataset = CocoDataset(*find_coco_files(synth, "val"))
    detector = make_detector("torch", ckpt)
    shutil.copytree(synth / "val", out / "val")
    data = json.loads(dataset.ann_file.read_text())
    anns = []
    for image_id in dataset.image_ids:
        dets = detector.detect([read_image(dataset.image_path(image_id))])[0]
        for box, score, label in zip(dets.boxes, dets.scores, dets.labels):
            if score > 0.3:
                x1, y1, x2, y2 = (float(v) for v in box)
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": dataset.label_to_cat_id[int(label)],
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    assert len(anns) > 20
    data["annotations"] = anns
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "instances_val.json").write_text(json.dumps(data))


@pytest.fixture(scope="session")
def write_pseudo_gt() -> Callable[[Path, Path, Path], None]:
    """``write_pseudo_gt(checkpoint, synth_folder, out_folder)``: a COCO folder whose ground truth is the torch
    model's own confident detections on the synthetic val pictures (parity tests measure AP against it)."""
    return _write_pseudo_gt


@pytest.fixture(scope="session")
def huge_png_header() -> bytes:
    """A PNG signature and IHDR chunk declaring 20000 x 20000 RGB pixels, with no pixel data (header-size guards)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


@pytest.fixture(scope="session")
def coco_tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detecting gflv2_tiny with COCO's 80 classes, exported at a fixed 320 x 320 (host NMS): every picture is
    letterboxed alone, so its detections do not depend on the batch it travels in (infer and predict agree)."""
    from gflv2_deploy.export.onnx import export_onnx

    path = tmp_path_factory.mktemp("coco_tiny") / "tiny80.onnx"
    export_onnx(_detecting_model("gflv2_tiny", 0, num_classes=80), path, dynamic_hw=False, input_hw=(320, 320))
    return path


@pytest.fixture(scope="session")
def coco_subset(tmp_path_factory: pytest.TempPathFactory, tiny50: Path) -> Path:
    """COCO folder (``annotations/instances_val2017.json`` + ``val2017/``) with the first 8 tiny50 photos (by image
    id) and their annotations, plus three unreadable files in ``val2017/`` that the annotations do not list
    (``broken.jpg``: not a picture, ``empty.png``: 0 bytes, ``truncated.jpg``: a photo cut in half)."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("coco_subset")
    data = json.loads((tiny50 / "annotations" / "instances_val2017.json").read_text())
    images = sorted(data["images"], key=lambda im: im["id"])[:8]
    ids = {im["id"] for im in images}
    (root / "val2017").mkdir()
    for im in images:
        shutil.copy(tiny50 / "val2017" / im["file_name"], root / "val2017" / im["file_name"])
    subset = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(subset))
    (root / "val2017" / "broken.jpg").write_bytes(b"this is not a picture\n")
    (root / "val2017" / "empty.png").write_bytes(b"")
    photo = (tiny50 / "val2017" / images[0]["file_name"]).read_bytes()
    (root / "val2017" / "truncated.jpg").write_bytes(photo[: len(photo) // 2])
    return root
