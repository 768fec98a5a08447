"""The dynamo exporter path (opset >= 18), kept working for when the TorchScript exporter goes away."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gflv2_deploy import spec
from gflv2_deploy.errors import UserError
from gflv2_deploy.export.checks import topk_values
from gflv2_deploy.contract_io import read_onnx_contract
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.deploy import DeployModel


@pytest.mark.slow  # ~20 s on the 2-core CI machine: torch.export tracing
def test_dynamo_export_matches_torch(tmp_path, tiny_model, make_images, sizes, capfd) -> None:
    import onnx

    out = tmp_path / "dynamo.onnx"
    result = export_onnx(tiny_model, out, exporter="dynamo", opset=18, dynamic_hw=True, input_hw=sizes[0], nms_pre=0)
    assert "torchvision is not installed" not in capfd.readouterr().err  # the registry's notice, dropped at its source
    assert result.opset == 18 and read_onnx_contract(out).producer.exporter == "dynamo"
    assert not list(tmp_path.glob("*.data"))  # external_data=False: one file
    model = onnx.load(str(out))
    assert topk_values(model) == [4] * 5
    assert [i.name for i in model.graph.input] == [spec.INPUT_IMAGES, spec.INPUT_IMAGE_SHAPE]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    deploy = DeployModel(tiny_model).eval()
    for seed, hw in enumerate(sizes):
        x = make_images(3, hw, 20 + seed)
        img_shape = np.array([hw, (hw[0] - 32, hw[1] - 32), hw], np.float32)
        boxes, scores = session.run(None, {"images": x.numpy(), "img_shape": img_shape})
        with torch.no_grad():
            ref_boxes, ref_scores = deploy(x, torch.from_numpy(img_shape))
        assert np.abs(scores - ref_scores.numpy()).max() <= 1e-4
        assert np.abs(boxes - ref_boxes.numpy()).max() <= 1e-3


def test_dynamo_needs_opset_18(tmp_path, tiny_model) -> None:
    with pytest.raises(UserError, match="opset 17 is not available with the dynamo exporter"):
        export_onnx(tiny_model, tmp_path / "x.onnx", exporter="dynamo", opset=17)
    assert not (tmp_path / "x.onnx").exists()
