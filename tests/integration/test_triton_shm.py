"""The uint8 ensemble at 800 x 1344 in a 64 MB /dev/shm (Docker's default), against the REAL server.

The server runs in a mount namespace of its own with a 64 MB tmpfs over /dev/shm (``unshare -m``, as root;
``TritonServer(shm_limit_bytes=...)``), as in a container started without ``--shm-size``. With float32
pictures (12.9 MB each) such a server failed most requests of 2+ pictures; uint8 pictures (3.2 MB) fit:
8 clients x 50 requests, every one answered. The network is a narrower gflv2_tiny (its cost at 800 x 1344
is what bounds this test's time), exported with a dynamic input size and served letterboxed at 800 x 1344.
Skipped, saying why, only where a mount namespace cannot be made (not root, no unshare).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gflv2_deploy.serve.load import batch_size_counts, ensemble_detections, ensemble_inputs, run_load
from gflv2_deploy.serve.triton_options import RepositoryOptions
from gflv2_deploy.serve.triton_server import TritonServer, default_venv
from gflv2_deploy.serve.triton_write import write_triton_repository

SHM_BYTES = 64 * 2**20
CLIENTS, REQUESTS_PER_CLIENT = 8, 50
MICRO = Path(__file__).with_name("gflv2_micro.toml")  # a narrower gflv2_tiny: the network bounds the time


def _require_namespace() -> None:
    if not (default_venv() / "bin" / "python").is_file():
        message = f"no Triton venv at {default_venv()}: run `bash scripts/setup_triton.sh`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    probe = "mount -t tmpfs -o size=1m tmpfs /dev/shm"
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", probe],
                                                         capture_output=True, timeout=30).returncode != 0:
        pytest.skip("a private /dev/shm needs a mount namespace (unshare -m) and root: not available here")


@pytest.fixture(scope="module")
def served_64mb(tmp_path_factory: pytest.TempPathFactory):
    _require_namespace()
    import torch

    from gflv2_deploy import build_model
    from gflv2_deploy.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("triton_shm")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(str(MICRO), num_classes=6).eval()
        with torch.no_grad():
            model.bbox_head.gfl_cls.bias.fill_(-2.0)  # some candidates for the NMS
    onnx_path = folder / "micro.u8.onnx"
    export_onnx(model, onnx_path, nms="onnx", dynamic_hw=True, input_hw=(64, 64), input_dtype="uint8")
    plan = write_triton_repository(onnx_path, folder / "repo", RepositoryOptions(
        platform="python", ensemble=True, max_batch=8, queue_delay_us=2000, onnxruntime_threads=2))
    assert plan.contract.preprocessing.input_hw == (800, 1344)  # letterboxed: the default for a dynamic-size graph
    server = TritonServer(folder / "repo", shm_limit_bytes=SHM_BYTES)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_uint8_ensemble_at_800x1344_in_64mb_shm_loses_nothing(served_64mb, tiny50: Path) -> None:
    server = served_64mb
    photos = [p.read_bytes() for p in sorted((tiny50 / "val2017").glob("*.jpg"))]
    stats = grpcclient.InferenceServerClient(server.grpc_url)
    before = stats.get_inference_statistics("gflv2_network", as_json=True)["model_stats"][0]
    channels = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(CLIENTS)]

    def send(index: int, j: int) -> str | None:
        try:
            result = channels[index].infer("gflv2", ensemble_inputs(photos[(index * 7 + j) % len(photos)]),
                                           client_timeout=300)
        except InferenceServerException as exc:
            return exc.message()
        boxes, scores, classes = ensemble_detections(result)
        return None if boxes.shape == (len(scores), 4) == (len(classes), 4) else "malformed detections"

    result = run_load(send, CLIENTS, REQUESTS_PER_CLIENT)
    after = stats.get_inference_statistics("gflv2_network", as_json=True)["model_stats"][0]
    sizes = batch_size_counts(after, before)
    print(f"\n64 MB /dev/shm, uint8 at 800x1344: sent {CLIENTS * REQUESTS_PER_CLIENT}, answered "
          f"{result.answered - len(result.failures)}, failed {len(result.failures)}; {result.summary()}; network batches "
          f"{{size: executions}} {sizes}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    assert result.failures == [], result.failures[:5]
    assert result.answered == CLIENTS * REQUESTS_PER_CLIENT
    assert sum(size * count for size, count in sizes.items()) == CLIENTS * REQUESTS_PER_CLIENT
    assert max(sizes) > 1, f"no batch formed: {sizes}"
