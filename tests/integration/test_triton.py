"""Against a REAL Triton Inference Server (the binary of nvidia-pytriton, from .venv-triton).

One server per module serves two generated python-variant ensembles of a small gflv2_tiny graph
(dynamic batch): end-to-end NMS at a fixed 384 x 384, and pre-NMS at a fixed 256 x 320 (letterboxed
pictures, host NMS in the postprocessing model). The tests check: the 50 photos of tiny50 through each
ensemble give the in-process Detector's detections; the ``triton`` runner behind ``gflv2-deploy compare``; a bounded load test of
8 concurrent clients x 50 requests (all answered and matched, batches > 1 formed on the server);
per-request errors for bad requests while the server stays up; a clean shutdown (no process left, no
/dev/shm region left). Without .venv-triton the tests fail in CI (CI=true) and are skipped elsewhere,
with the command that creates it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import tritonclient.grpc as grpcclient  # the 'triton' extra: CI installs it, so a missing client fails
from tritonclient.utils import InferenceServerException

from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.runtime.factory import make_detector
from gflv2_deploy.serve.load import batch_size_counts, ensemble_detections, ensemble_inputs, run_load
from gflv2_deploy.serve.triton_options import RepositoryOptions
from gflv2_deploy.serve.triton_write import write_triton_repository
from gflv2_deploy.serve.triton_server import TritonServer, default_venv

ENSEMBLE, NETWORK = "gflv2", "gflv2_network"
CLIENTS, REQUESTS_PER_CLIENT = 8, 50
BOX_ATOL, SCORE_ATOL = 1e-3, 1e-5


def _require_triton_venv() -> None:
    if (default_venv() / "bin" / "python").is_file():
        return
    message = f"no Triton venv at {default_venv()}: run `bash scripts/setup_triton.sh`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def photos(tiny50: Path) -> list[Path]:
    paths = sorted((tiny50 / "val2017").glob("*.jpg"))
    assert len(paths) == 50
    return paths


# Two ensembles in one repository: end-to-end NMS at 384 x 384 (every photo fits at scale (384, 256)), and a
# pre-NMS graph at a fixed 256 x 320, into which landscape photos are letterboxed and whose NMS runs on
# the host in the postprocessing model.
GRAPHS = {
    "gflv2": dict(nms="onnx", input_hw=(384, 384)),
    "pre": dict(nms="none", input_hw=(256, 320)),
    "u8": dict(nms="onnx", input_hw=(384, 384), input_dtype="uint8"),  # the gflv2 graph taking uint8 pictures
}
DETECTOR_PARITY = ("gflv2", "pre")  # u8 is compared with the gflv2 ensemble itself


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, detecting_tiny, photos):
    """(server, {ensemble: (onnx path, expected detections per photo from the in-process Detector)})."""
    _require_triton_venv()
    from gflv2_deploy.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("triton")
    repo = folder / "repo"
    repo.mkdir()
    graphs = {}
    for name, kwargs in GRAPHS.items():
        onnx_path = folder / f"{name}.onnx"
        export_onnx(detecting_tiny(0), onnx_path, **kwargs)
        write_triton_repository(onnx_path, folder / name, RepositoryOptions(
            name=name, platform="python", ensemble=True, max_batch=8, queue_delay_us=2000, onnxruntime_threads=2))
        for model in (folder / name).iterdir():
            model.rename(repo / model.name)
        if name in DETECTOR_PARITY:
            detector = make_detector("onnxruntime", onnx_path, threads=2)
            graphs[name] = (onnx_path, {p.name: detector.detect([read_image(p)])[0] for p in photos})
        else:
            graphs[name] = (onnx_path, {})
    started = time.perf_counter()
    server = TritonServer(repo)
    server.start()
    print(f"\ntritonserver ready in {time.perf_counter() - started:.1f} s at {server.grpc_url}")
    yield server, graphs
    server.stop()


def _mismatch(got: tuple[np.ndarray, np.ndarray, np.ndarray], want) -> str | None:
    boxes, scores, classes = got
    if len(scores) != len(want) or boxes.shape[0] != len(want):
        return f"{len(scores)} detections instead of {len(want)}"
    if not np.array_equal(classes, want.labels):
        return "classes differ"
    if len(want) and np.abs(scores - want.scores).max() > SCORE_ATOL:
        return f"scores differ by {np.abs(scores - want.scores).max():.2e}"
    if len(want) and np.abs(boxes - want.boxes).max() > BOX_ATOL:
        return f"boxes differ by {np.abs(boxes - want.boxes).max():.2e} px"
    return None


@pytest.mark.parametrize("ensemble", DETECTOR_PARITY)
def test_tiny50_through_the_ensemble_equal_the_detector(served, photos, ensemble: str) -> None:
    server, graphs = served
    expected = graphs[ensemble][1]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    worst_box = worst_score = 0.0
    total = 0
    for path in photos:
        got = ensemble_detections(client.infer(ensemble, ensemble_inputs(path.read_bytes())))
        assert _mismatch(got, expected[path.name]) is None, f"{path.name}: {_mismatch(got, expected[path.name])}"
        total += len(got[1])
        if len(got[1]):
            worst_box = max(worst_box, float(np.abs(got[0] - expected[path.name].boxes).max()))
            worst_score = max(worst_score, float(np.abs(got[1] - expected[path.name].scores).max()))
    print(f"\nparity ({ensemble}): 50 photos, {total} detections, all equal; max |d box| {worst_box:.2e} px, "
          f"max |d score| {worst_score:.2e}")
    assert total > 0


def test_uint8_ensemble_gives_the_float32_ensembles_detections(served, photos) -> None:
    """The same graph taking uint8 pictures (a quarter of the shared-memory bytes): identical detections."""
    server, _ = served
    client = grpcclient.InferenceServerClient(server.grpc_url)
    total = 0
    for path in photos:
        data = path.read_bytes()
        want = ensemble_detections(client.infer("gflv2", ensemble_inputs(data)))
        got = ensemble_detections(client.infer("u8", ensemble_inputs(data)))
        for name, a, b in zip(("boxes", "scores", "classes"), want, got):
            assert np.array_equal(a, b), f"{path.name}: {name} differ"
        total += len(got[1])
    print(f"\nuint8 vs float32 ensemble: 50 photos, {total} detections, identical")
    assert total > 0


def test_triton_runner_passes_the_compare_gate(served, photos, tmp_path) -> None:
    """``compare --ref onnxruntime:M --test triton:HOST:PORT/gflv2_network --images``: the CLI parity gate."""
    import json
    import subprocess
    import sys

    server, graphs = served
    onnx_path = graphs[ENSEMBLE][0]
    report = tmp_path / "compare.json"
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parents[2] / "cli.py"), "compare", "--ref", f"onnxruntime:{onnx_path}",
         "--test", f"triton:{server.grpc_url}/{NETWORK}", "--images", str(photos[0].parent), "--limit", "12",
         "--batch-size", "4", "--report", str(report)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["passed"], data.get("failures")


def test_load_8_clients_x_50_requests_nothing_lost(served, photos) -> None:
    server, graphs = served
    expected = graphs[ENSEMBLE][1]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    before = client.get_inference_statistics(NETWORK, as_json=True)["model_stats"][0]
    channels = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(CLIENTS)]  # one per client

    def send(index: int, j: int) -> str | None:
        path = photos[(index * 7 + j) % len(photos)]
        got = ensemble_detections(channels[index].infer(ENSEMBLE, ensemble_inputs(path.read_bytes()), client_timeout=120))
        return _mismatch(got, expected[path.name])

    result = run_load(send, CLIENTS, REQUESTS_PER_CLIENT)
    after = client.get_inference_statistics(NETWORK, as_json=True)["model_stats"][0]
    sizes = batch_size_counts(after, before)
    print(f"\nload: {result.summary()}; network batches formed by Triton {{size: executions}}: {sizes}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    assert result.answered == CLIENTS * REQUESTS_PER_CLIENT
    assert result.failures == []
    assert sum(size * count for size, count in sizes.items()) == CLIENTS * REQUESTS_PER_CLIENT
    assert max(sizes) > 1, f"Triton formed no batch larger than 1: {sizes}"


def test_bad_requests_get_their_own_error_and_the_server_stays_up(served, photos, huge_png_header) -> None:
    server, graphs = served
    expected = graphs[ENSEMBLE][1]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    wrong_dtype = grpcclient.InferInput("image", [1, 1], "FP32")
    wrong_dtype.set_data_from_numpy(np.zeros((1, 1), np.float32))
    empty = grpcclient.InferInput("image", [0, 1], "BYTES")
    empty.set_data_from_numpy(np.zeros((0, 1), dtype=object))
    cases = {
        "non-image bytes": (ensemble_inputs(b"this is not a picture" * 10), "cannot decode"),
        "20000 x 20000 header": (ensemble_inputs(huge_png_header), "20000 x 20000 pixels by its header"),
        "wrong dtype": ([wrong_dtype], "FP32"),
        "empty batch": ([empty], ""),
    }
    good = photos[3]
    for label, (inputs, message) in cases.items():
        with pytest.raises(InferenceServerException) as info:
            client.infer(ENSEMBLE, inputs)
        assert message in info.value.message(), f"{label}: {info.value.message()}"
        assert client.is_server_live() and client.is_model_ready(ENSEMBLE), f"server down after {label}"
        got = ensemble_detections(client.infer(ENSEMBLE, ensemble_inputs(good.read_bytes())))
        assert _mismatch(got, expected[good.name]) is None, f"good request after {label}"


def test_shutdown_is_clean(served) -> None:
    """Last test of the module: SIGTERM by PID stops server and stubs and leaves no /dev/shm region."""
    server, _ = served
    assert server.group_alive() and server.shm_regions(), "the server should be running with its shm regions"
    prefix = server.shm_prefix
    server.process.terminate()  # SIGTERM to the PID, as stop() does, so that the server itself cleans up
    server.process.wait(timeout=60)
    deadline = time.monotonic() + 10
    while server.group_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.group_alive(), "a python-backend stub outlived the server"
    assert list(Path("/dev/shm").glob(f"{prefix}*")) == [], "the server left shared memory behind"
    server.stop()


def test_a_model_that_cannot_load_stops_the_start_cleanly(tmp_path) -> None:
    """A repository whose model fails at load: one UserError with the server log's tail; nothing left behind."""
    _require_triton_venv()
    from gflv2_deploy.errors import UserError

    model = tmp_path / "repo" / "broken"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
                                        'input { name: "x" data_type: TYPE_FP32 dims: [1] }\n'
                                        'output { name: "y" data_type: TYPE_FP32 dims: [1] }\n')
    (model / "1" / "model.py").write_text("raise ImportError('this model cannot load')\n")
    server = TritonServer(tmp_path / "repo", ready_timeout_s=120)
    with pytest.raises(UserError, match="this model cannot load"):
        server.start()
    assert not server.group_alive() and server.workspace is None
    assert list(Path("/dev/shm").glob(f"{server.shm_prefix}*")) == []
