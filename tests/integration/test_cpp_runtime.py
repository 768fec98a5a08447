"""The C++ runtime (cpp/, libgflv2.so through the ``cpp`` backend) against the Python Detector (onnxruntime).

Model: the detecting tiny model (tests/conftest.py) exported by ``cpp/tests/make_test_models.py`` (pre-NMS,
end-to-end, fixed 256 x 384). Pictures: the 50 real tiny50 photos. Parity budget (fp32): every detection
matched at IoU >= 0.99 both ways, |score delta| <= 1e-4. The preprocessed tensors (OpenCV 4.6 in C++ vs
opencv-python in Python) are compared and their max abs difference reported.

Needs the built library (``bash scripts/build_cpp.sh``; ``GFLV2_CPP_LIBRARY`` overrides its path); the
module is skipped with that instruction when it is missing.
"""

from __future__ import annotations

import ctypes
import copy
import importlib.util
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy import spec as io_spec
from gflv2_deploy.data.image_io import decode_image, read_image
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.compare import DetectionAgreement
from gflv2_deploy.runtime.cpp_runner import CppRunner, _Image, _Settings, library_path
from gflv2_deploy.runtime.factory import make_detector

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not library_path().is_file(),
                                reason=f"C++ runtime not built ({library_path()}): run bash scripts/build_cpp.sh")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("make_test_models", REPO / "cpp" / "tests" / "make_test_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    out = tmp_path_factory.mktemp("cpp_models")
    module.main(str(out))
    return out


@pytest.fixture(scope="module")
def photos(tiny50: Path) -> list[np.ndarray]:
    files = sorted((tiny50 / "val2017").glob("*.jpg"))
    assert len(files) == 50
    return [read_image(f) for f in files]


def _agreement(ref, test, photos: list[np.ndarray], batch: int = 1) -> dict:
    agreement = DetectionAgreement(iou_thr=0.99, max_score_delta=1e-4)
    for start in range(0, len(photos), batch):
        chunk = photos[start:start + batch]
        for i, (r, t) in enumerate(zip(ref.detect(chunk), test.detect(chunk))):
            agreement.update(start + i, r, t)
    return agreement.result()


def _assert_parity(result: dict) -> None:
    assert result["num_ref"] > 0
    assert result["matched"] == result["num_ref"] == result["num_test"], result["worst_images"]
    assert result["score_delta_max"] <= 1e-4


@pytest.mark.parametrize("graph", ["tiny_prenms.onnx", "tiny_e2e.onnx", "tiny_plugin.onnx"])
def test_cpp_matches_the_python_detector_on_tiny50(models: Path, photos: list[np.ndarray], graph: str) -> None:
    # tiny_plugin.onnx: both backends register libgflv2_nms_ort.so (the package tells the C++ library where it is)
    ref = make_detector("onnxruntime", models / graph, threads=1)
    test = make_detector("cpp", models / graph, threads=1)
    result = _agreement(ref, test, photos)
    print(f"\n{graph}: {result['num_ref']} detections, matched {result['matched']}, max |dscore| "
          f"{result['score_delta_max']:.3g}, min IoU {result['min_matched_iou']}")
    _assert_parity(result)


def test_cpp_matches_python_in_batches_of_8(models: Path, photos: list[np.ndarray]) -> None:
    ref = make_detector("onnxruntime", models / "tiny_prenms.onnx", threads=1)
    test = make_detector("cpp", models / "tiny_prenms.onnx", threads=1)
    _assert_parity(_agreement(ref, test, photos[:24], batch=8))


def test_preprocessed_tensors_agree(models: Path, photos: list[np.ndarray]) -> None:
    """OpenCV 4.6 (C++) vs opencv-python (Python) bilinear resize: reported, and bounded by one uint8 step."""
    ref = make_detector("onnxruntime", models / "tiny_prenms.onnx", threads=1)
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    worst = 0.0
    for photo in photos:
        py = ref.preprocess([photo])[0]
        cpp = runner.preprocess_pictures([photo])
        assert py.shape == cpp.shape
        worst = max(worst, float(np.abs(py - cpp).max()))
    print(f"\nmax abs difference of the preprocessed tensors over 50 photos: {worst:.3g}")
    assert worst <= 1.0 / 57.12 + 1e-6  # at most one uint8 step of the resize, after /std


def test_fixed_size_graph_letterboxes_every_photo(models: Path, photos: list[np.ndarray]) -> None:
    """The 256 x 384 graph: both letterbox every photo (portrait ones included) and agree."""
    ref = make_detector("onnxruntime", models / "tiny_static.onnx", threads=1)
    test = make_detector("cpp", models / "tiny_static.onnx", threads=1)
    portrait = sum(p.shape[0] > p.shape[1] for p in photos)
    assert portrait > 0
    for photo in photos[:3]:
        assert test.runner.preprocess_pictures([photo]).shape == (1, 3, 256, 384)
    _assert_parity(_agreement(ref, test, photos))


def test_four_threads_give_the_results_of_one(models: Path, photos: list[np.ndarray]) -> None:
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    reference = [runner.detect_pictures([p])[0] for p in photos]
    results: list[list] = [[None] * len(photos) for _ in range(4)]
    errors: list[BaseException] = []

    def work(t: int, clone: CppRunner) -> None:
        try:
            for i in range(len(photos)):
                k = (i + 13 * t) % len(photos)
                results[t][k] = clone.detect_pictures([photos[k]])[0]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t, runner.clone())) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in range(4):
        for got, want in zip(results[t], reference):
            assert np.array_equal(got.boxes, want.boxes) and np.array_equal(got.scores, want.scores)
            assert np.array_equal(got.labels, want.labels)


def test_infer_equals_onnxruntime(models: Path, photos: list[np.ndarray]) -> None:
    ref = make_detector("onnxruntime", models / "tiny_prenms.onnx", threads=1)
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    batch, metas = ref.preprocess(photos[:2])
    shapes = np.array([m.img_shape for m in metas], np.float32)
    want, got = ref.runner.infer(batch, shapes), runner.infer(batch, shapes)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5)


def test_bad_input_is_a_user_error(models: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        CppRunner(models / "missing.onnx")
    with pytest.raises(UserError, match="upgrade"):
        CppRunner(models / "tiny_newer_contract.onnx")
    # the package's default device "cpu" means the default GPU for an engine (as for the other TensorRT runners);
    # the library itself refuses an explicit cpu for an engine. No TensorRT here: loading stops at libnvinfer.
    with pytest.raises(UserError, match="cannot load TensorRT 10"):
        CppRunner(models / "tiny_trt10.plan")
    with pytest.raises(UserError, match="device must be cpu, cuda or cuda:N"):
        CppRunner(models / "tiny_trt10.plan", device="cuda:abc")
    runner = CppRunner(models / "tiny_prenms.onnx")
    with pytest.raises(UserError, match="4 channel"):
        runner.detect_pictures([np.zeros((8, 8, 4), np.uint8)])
    with pytest.raises(UserError, match="uint8"):
        runner.detect_pictures([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(UserError, match="empty"):
        runner.detect_pictures([np.zeros((0, 8, 3), np.uint8)])


def test_cpp_bounds_sizes_by_the_rule_of_spec_py(models: Path) -> None:
    """The C++ constants are spec.py's, and the C ABI applies spec.input_hw_problem to the tensors it is given."""
    header = (REPO / "cpp" / "src" / "contract.hpp").read_text()
    constants = {name: int(value) for name, value in re.findall(r"inline constexpr int (k\w+) = (\d+);", header)}
    assert constants["kSizeDivisor"] == io_spec.SIZE_DIVISOR
    assert constants["kMaxInputSide"] == io_spec.MAX_INPUT_SIDE
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    lib, handle = runner._lib, runner._live()
    settings = _Settings(ctypes.sizeof(_Settings))
    assert lib.gflv2_detector_get_settings(handle, ctypes.byref(settings)) == 0
    for side, accepted in ((io_spec.MAX_INPUT_SIDE, True), (io_spec.MAX_INPUT_SIDE + 1, False), (100_000, False)):
        settings.test_scale[0] = settings.test_scale[1] = side
        assert (lib.gflv2_detector_set_settings(handle, ctypes.byref(settings)) == 0) == accepted, side
    for hw in ((96, 64), (100, 64), (64, 8224)):
        batch = np.zeros((1, 3, *hw), np.float32)
        shapes = np.array([hw], np.float32)
        if io_spec.input_hw_problem(*hw) is None:
            runner.infer(batch, shapes)
        else:
            with pytest.raises(UserError, match="multiples of 32|at most 8192"):
                runner.infer(batch, shapes)


def _with_app1(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP1 segment after SOI whose payload holds FF D9 (as an EXIF thumbnail's end does)."""
    payload = b"Exif\x00\x00" + b"\xff\xd8thumbnail\xff\xd9"
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_cpp_and_python_refuse_the_same_pictures(models: Path, tiny50: Path) -> None:
    """One rule for cut-off JPEGs (image_io._jpeg_is_truncated, cpp/src/image.cpp): on the same bytes, the C++
    runtime refuses a picture exactly when Python's decode_image does."""
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    lib, handle = runner._lib, runner._live()
    original = sorted((tiny50 / "val2017").glob("*.jpg"))[3].read_bytes()
    cases = []
    for jpeg in (original, _with_app1(original)):
        cases += [jpeg] + [jpeg[:n] for n in np.linspace(3, len(jpeg) - 1, 24).astype(int)] + [jpeg[:-2], jpeg[:40]]
    refused = 0
    for data in cases:
        try:
            decode_image(data)
            python_ok = True
        except UserError:
            python_ok = False
        buffer = ctypes.create_string_buffer(data, len(data))
        image = _Image(ctypes.cast(buffer, ctypes.c_void_p), 0, 0, 0, 0, len(data))
        result = ctypes.c_void_p()
        status = lib.gflv2_detector_detect(handle, ctypes.byref(image), 1, ctypes.byref(result))
        lib.gflv2_result_release(result if status == 0 else None)
        assert status in (0, 6), lib.gflv2_last_error()  # GFLV2_OK or GFLV2_E_IMAGE
        assert (status == 0) == python_ok, (len(data), lib.gflv2_last_error())
        refused += not python_ok
    assert 0 < refused < len(cases)
def test_a_copy_is_a_clone_never_a_second_owner_of_the_handle(models: Path, photos: list[np.ndarray]) -> None:
    """The minimal double free (``r = CppRunner(m); c = copy.copy(r); del c; del r``) in a process of its own, then
    copies in this one: each has its own native detector, and closing one leaves the other working."""
    script = ("import copy, sys\nfrom gflv2_deploy.runtime.cpp_runner import CppRunner\n"
              "r = CppRunner(sys.argv[1]); c = copy.copy(r); del c; del r\nprint('clean exit')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(models / "tiny_prenms.onnx")], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0 and "clean exit" in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    runner = CppRunner(models / "tiny_prenms.onnx", threads=1)
    want = runner.detect_pictures([photos[0]])[0]
    for duplicate in (copy.copy(runner), copy.deepcopy(runner), runner.clone()):
        assert duplicate._live().value != runner._live().value
        duplicate.close()
        duplicate.close()  # idempotent
        with pytest.raises(UserError, match="closed"):
            duplicate.detect_pictures([photos[0]])
        got = runner.detect_pictures([photos[0]])[0]
        assert np.array_equal(got.boxes, want.boxes) and np.array_equal(got.scores, want.scores)
    with pytest.raises(TypeError, match="clone"):
        copy.copy(runner._native)


def test_bench_times_the_cpp_backend(models: Path, tmp_path: Path) -> None:
    """``bench --backend cpp`` with the e2e timing (crashed 5 of 5 runs when bench shallow-copied the runner)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "bench", "--backend", "cpp", "--model",
                           str(models / "tiny_prenms.onnx"), "--shape", "256x384", "--iterations", "3", "--warmup", "1",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["results"][0]
    assert row["backend"] == "cpp" and row["e2e"]["iterations"] == 3
    stages = row["e2e_stages"]  # measured by the C++ runtime inside each e2e call
    assert stages["network"]["p50_ms"] > 0 and row["e2e"]["p50_ms"] >= stages["network"]["p50_ms"]


def test_compare_cli_gates_cpp_against_onnxruntime(models: Path, tiny50: Path, tmp_path: Path) -> None:
    model = models / "tiny_prenms.onnx"
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "compare", "--ref", f"onnxruntime:{model}",
                           "--test", f"cpp:{model}", "--images", str(tiny50 / "val2017"), "--limit", "5",
                           "--report", str(report), "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(report.read_text())["passed"]


@pytest.mark.slow  # a ResNet-50 export and 2 x 5 inferences at 800 x 1344: about 2 minutes on the 2-core machine
def test_cpp_matches_python_with_an_official_layout_r50(tmp_path: Path, photos: list[np.ndarray], detecting_model) -> None:
    """gflv2_r50_fpn (80 classes, official layout) with random weights and a detecting head (as tests/conftest.py
    does for the tiny model), pre-NMS graph, test scale (1333, 800): 5 photos, every detection matched."""
    from gflv2_deploy.export.onnx import export_onnx

    model = detecting_model("gflv2_r50_fpn", cls_std=0.02, reg_std=0.01)
    path = tmp_path / "r50.onnx"
    export_onnx(model, path, nms="none", dynamic_hw=True)
    ref = make_detector("onnxruntime", path, threads=2)
    test = make_detector("cpp", path, threads=2)
    result = _agreement(ref, test, photos[:5])
    print(f"\nR-50: {result['num_ref']} detections, matched {result['matched']}, max |dscore| {result['score_delta_max']:.3g}")
    _assert_parity(result)
