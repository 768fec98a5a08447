"""The OpenVINO runner: contract from the ONNX metadata, outputs equal to onnxruntime's, detector, errors."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.factory import make_detector, parse_model_spec
from gflv2_deploy.runtime.ort_runner import OrtRunner


def _batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch, onnx_files) -> None:
    import gflv2_deploy.runtime.openvino_runner as module
    from gflv2_deploy.runtime.openvino_runner import OpenVinoRunner

    top = ast.parse(Path(module.__file__).read_text()).body  # openvino is imported inside functions only
    assert not any(isinstance(n, ast.Import) and any(a.name.startswith("openvino") for a in n.names) for n in top)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(MissingDependencyError, match=r"gflv2-deploy\[openvino\]"):
        OpenVinoRunner(onnx_files["prenms"])


ov = pytest.importorskip("openvino")
from gflv2_deploy.runtime.openvino_runner import OpenVinoRunner  # noqa: E402


def test_runner_reads_its_contract(onnx_files) -> None:
    with OpenVinoRunner(onnx_files["prenms"], threads=1) as runner:
        assert isinstance(runner, Runner) and runner.name == "openvino"
        assert runner.output_names == spec.PRE_NMS_OUTPUTS and runner.has_img_shape_input and runner.static_hw is None
        assert runner.contract == OrtRunner(onnx_files["prenms"]).contract  # read without onnx or onnxruntime
        assert runner.contract.model.class_names == tuple(f"class_{i}" for i in range(6))
    assert OpenVinoRunner(onnx_files["e2e"]).output_names == spec.END_TO_END_OUTPUTS
    assert OpenVinoRunner(onnx_files["static"]).static_hw == (96, 128)


@pytest.mark.parametrize(("graph", "n", "hw"), [("prenms", 2, (128, 160)), ("prenms", 1, (64, 96)), ("static", 2, (96, 128))])
def test_outputs_match_onnxruntime(onnx_files, graph: str, n: int, hw: tuple[int, int]) -> None:
    x = _batch(n, *hw, seed=n)
    img_shape = np.array([[hw[0], hw[1]], [hw[0] - 20, hw[1] - 30]][:n], np.float32)
    got = OpenVinoRunner(onnx_files[graph], threads=2).infer(x, img_shape)
    ref = OrtRunner(onnx_files[graph], threads=2).infer(x, img_shape)
    assert set(got) == set(ref)
    assert np.abs(got["scores"] - ref["scores"]).max() <= 1e-4
    assert np.abs(got["boxes"] - ref["boxes"]).max() <= 1e-3


def test_end_to_end_detections_match_onnxruntime(onnx_files, detecting_tiny) -> None:
    from gflv2_deploy.data.synth import render_synthetic_image

    pictures = [render_synthetic_image(0, i, image_size=(120, 150))[0] for i in range(2)]
    for graph in ("prenms", "e2e", "static"):  # static: the pictures are letterboxed into 96 x 128
        ours = make_detector("openvino", onnx_files[graph], threads=1).detect(pictures)
        ref = make_detector("onnxruntime", onnx_files[graph], threads=1).detect(pictures)
        for a, b in zip(ours, ref):
            assert len(a.scores) == len(b.scores) > 0
            assert np.abs(a.scores - b.scores).max() <= 1e-4 and np.abs(a.boxes - b.boxes).max() <= 1e-2
            assert np.array_equal(a.labels, b.labels)


def test_errors_are_one_line(onnx_files, tmp_path) -> None:
    with pytest.raises(UserError, match="EfficientNMS_TRT"):
        OpenVinoRunner(onnx_files["trt"])
    with pytest.raises(UserError, match="not found"):
        OpenVinoRunner(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="precision hint"):
        OpenVinoRunner(onnx_files["prenms"], precision="int4")
    with pytest.raises(UserError, match="fixed input of 96x128"):
        OpenVinoRunner(onnx_files["static"]).infer(_batch(2, 64, 128))
    with pytest.raises(UserError, match="multiples of 32"):
        OpenVinoRunner(onnx_files["prenms"]).infer(_batch(1, 70, 64))
    with pytest.raises(UserError, match="CPU only"):
        make_detector("openvino", onnx_files["prenms"], device="cuda")
    assert parse_model_spec("openvino:m.onnx")[0] == "openvino"


def test_end_to_end_graph_can_expose_its_pre_nms_tensors(onnx_files) -> None:
    x, img_shape = _batch(1, 64, 96, 3), np.array([[64, 90]], np.float32)
    runner = OpenVinoRunner(onnx_files["e2e"], threads=1, expose_pre_nms=True)
    assert runner.output_names == spec.END_TO_END_OUTPUTS + spec.PRE_NMS_OUTPUTS
    out = runner.infer(x, img_shape)
    ref = OrtRunner(onnx_files["prenms"], threads=1).infer(x, img_shape)
    assert np.abs(out["scores"] - ref["scores"]).max() <= 1e-4 and np.abs(out["boxes"] - ref["boxes"]).max() <= 1e-3
    detector = make_detector("openvino", onnx_files["e2e"], threads=1, expose_pre_nms=True)
    assert detector.runner.output_names == runner.output_names
    assert OpenVinoRunner(onnx_files["prenms"], expose_pre_nms=True).output_names == spec.PRE_NMS_OUTPUTS


def test_detects_without_torch(onnx_files) -> None:
    """The openvino backend needs neither torch nor onnx nor onnxruntime to load a graph and detect."""
    import subprocess

    code = (
        "import sys\n"
        "for m in ('torch', 'onnx', 'onnxruntime'): sys.modules[m] = None  # importing them fails\n"
        "import numpy as np\n"
        "from gflv2_deploy.runtime.factory import make_detector\n"
        f"d = make_detector('openvino', {str(onnx_files['e2e'])!r}, threads=1)\n"
        "print(len(d.detect([np.full((90, 120, 3), 128, np.uint8)])))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
