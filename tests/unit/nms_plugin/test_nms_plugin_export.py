"""End to end: ``gflv2-deploy export --nms plugin`` -> onnxruntime with the CPU twin == torch post-processing.

gflv2_tiny (6 classes, detecting head weights), checkpoints with ``nms_pre`` 0 (the graph passes every point to
NMS) and 1000 (the graph keeps each level's top 1000 points, padded: the node gets ``nms_pre=1000,
num_levels=5``). Detections must match torch one to one (IoU matching, per class) on the synthetic val pictures
and on the tiny50 photos, and ``eval`` must give the same AP as torch against pseudo ground truth (the torch
model's confident detections).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from gflv2_deploy import nms_plugin
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.eval.compare import DetectionAgreement
from gflv2_deploy.model.checkpoint import save_checkpoint
from gflv2_deploy.runtime.factory import make_detector

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module", params=[0, 1000], ids=["nms_pre0", "nms_pre1000"])
def work(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, detecting_tiny, write_pseudo_gt,
         nms_ort_lib: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nms_plugin_e2e")
    model = detecting_tiny(0)
    cfg = dataclasses.replace(model.config, test=dataclasses.replace(model.config.test, nms_pre=request.param))
    files = {"ckpt": root / "tiny.pth", "plugin": root / "tiny.e2e-plugin.onnx", "data": root / "data"}
    save_checkpoint(files["ckpt"], model, cfg)
    done = run_cli("export", files["ckpt"], "--nms", "plugin", "--onnx", files["plugin"], "--dynamic-hw", "--shape", "96x128")
    assert done.returncode == 0, done.stdout + done.stderr
    synth = root / "synth"
    generate_synthetic_coco(synth, 24, seed=3, image_size=(192, 256))
    write_pseudo_gt(files["ckpt"], synth, files["data"])
    return files


def test_exported_graph_ends_in_one_plugin_node(work: dict[str, Path]) -> None:
    graph = onnx.load(str(work["plugin"]))
    node = graph.graph.node[-1]
    assert (node.op_type, node.domain) == (nms_plugin.OP_TYPE, nms_plugin.OP_DOMAIN)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b""
    assert attrs["max_output_boxes"] == 100 and abs(attrs["score_threshold"] - 0.05) < 1e-7
    nms_pre = attrs["nms_pre"]
    assert nms_pre in (0, 1000) and attrs["num_levels"] == (5 if nms_pre else 0)
    assert [o.name for o in graph.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert any(o.domain == nms_plugin.OP_DOMAIN for o in graph.opset_import)


def _agreement(work: dict[str, Path], images: list[np.ndarray]) -> dict:
    agreement = DetectionAgreement(iou_thr=0.99, max_score_delta=1e-4)
    with make_detector("torch", work["ckpt"], threads=1) as ref, make_detector("onnxruntime", work["plugin"], threads=1) as test:
        for i, image in enumerate(images):
            agreement.update(i, ref.detect([image])[0], test.detect([image])[0])
    return agreement.result()


def test_synthetic_val_detections_all_match_torch(work: dict[str, Path]) -> None:
    from gflv2_deploy.data.image_io import read_image

    images = [read_image(p) for p in sorted((work["data"] / "val").iterdir())]
    result = _agreement(work, images)
    assert result["num_ref"] > 50
    assert result["matched_fraction"] == 1.0 and result["num_test"] == result["num_ref"], result


def test_tiny50_detections_all_match_torch(work: dict[str, Path], tiny50: Path) -> None:
    from gflv2_deploy.data.image_io import read_image

    images = [read_image(p) for p in sorted((tiny50 / "val2017").glob("*.jpg"))[:12]]
    result = _agreement(work, images)
    assert result["num_ref"] > 50
    assert result["matched_fraction"] == 1.0 and result["num_test"] == result["num_ref"], result


def test_eval_of_the_plugin_graph_equals_torch_ap(work: dict[str, Path], tmp_path: Path) -> None:
    out_t, out_p = tmp_path / "torch.json", tmp_path / "plugin.json"
    pt = run_cli("eval", work["ckpt"], "--data", work["data"], "--out", out_t, "--threads", "1")
    pp = run_cli("eval", "--backend", "onnxruntime", "--model", work["plugin"], "--data", work["data"], "--split", "val",
                 "--out", out_p, "--threads", "1")
    assert pt.returncode == 0 and pp.returncode == 0, pt.stderr + pp.stderr
    m_t, m_p = json.loads(out_t.read_text()), json.loads(out_p.read_text())
    assert m_t["stats"][0] > 0.5
    assert m_t["stats"] == m_p["stats"], (m_t["stats"], m_p["stats"])
