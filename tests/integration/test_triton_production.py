"""Triton in production shape, against the REAL server (the tritonserver of nvidia-pytriton, .venv-triton).

One server (admin key, explicit model control, two versions served) runs a uint8 python ensemble of a
small gflv2_tiny graph (256 x 320, end-to-end NMS). In order:
- restricted APIs: without the key an unload (HTTP and gRPC) and a config read are refused, inference answers;
- a version 2 (other weights) is added with ``gflv2-deploy triton --version 2`` while version 1 serves under
  load: nothing fails, then both versions answer, with their own outputs;
- two writers adding the same version at once: one succeeds, the other fails with one clear line;
- a managing process killed with SIGKILL leaves no server, no python stub and no /dev/shm region;
- a drain during an 8-client load: every request is answered or refused before it was accepted; none lost.
Without .venv-triton the tests fail in CI (CI=true) and are skipped elsewhere, with the command that creates it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient  # the 'triton' extra installs both clients
from tritonclient.utils import InferenceServerException

from gflv2_deploy.serve.drain import GRPC_KEY_HEADER, KEY_HEADER
from gflv2_deploy.serve.load import drain_under_load, ensemble_detections, ensemble_inputs
from gflv2_deploy.serve.triton_options import RepositoryOptions
from gflv2_deploy.serve.triton_server import TritonServer, default_venv
from gflv2_deploy.serve.triton_write import write_triton_repository

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli.py"
KEY = "test-admin-key"
ENSEMBLE, NETWORK = "gflv2", "gflv2_network"
HW = (256, 320)
OPTIONS = dict(platform="python", ensemble=True, max_batch=8, queue_delay_us=2000, onnxruntime_threads=1,
               versions_served=2)


def _require_triton_venv() -> None:
    if (default_venv() / "bin" / "python").is_file():
        return
    message = f"no Triton venv at {default_venv()}: run `bash scripts/setup_triton.sh`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def photos(tiny50: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tiny50 / "val2017").glob("*.jpg"))]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, detecting_tiny):
    """(server, repo, {version: ONNX}) with version 1 of the network loaded; version 2's ONNX exported, not added."""
    _require_triton_venv()
    from gflv2_deploy.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("triton_production")
    graphs = {}
    for version, seed in ((1, 0), (2, 1)):
        graphs[version] = folder / f"v{version}.onnx"
        export_onnx(detecting_tiny(seed), graphs[version], nms="onnx", input_hw=HW, input_dtype="uint8")
    repo = folder / "repo"
    write_triton_repository(graphs[1], repo, RepositoryOptions(**OPTIONS))
    server = TritonServer(repo, admin_key=KEY, exit_timeout_s=10)
    server.start()
    yield server, repo, graphs
    server.stop()


def _network_inputs(n: int = 1, client=grpcclient) -> list:
    """A direct request to the network: n random uint8 pictures filling the 256 x 320 input."""
    arrays = {"images": np.random.default_rng(n).integers(0, 256, (n, HW[0], HW[1], 3), dtype=np.uint8),
              "img_shape": np.tile(np.array([HW], np.float32), (n, 1))}
    inputs = []
    for name, array in arrays.items():
        tensor = client.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def test_restricted_apis_need_the_key_and_inference_does_not(served, photos) -> None:
    server, _, _ = served
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    http = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match="restricted"):
        http.unload_model(ENSEMBLE)
    with pytest.raises(InferenceServerException, match="restricted"):
        grpc.unload_model(ENSEMBLE)
    with pytest.raises(InferenceServerException, match="restricted"):
        grpc.get_model_config(ENSEMBLE)
    assert grpc.is_model_ready(ENSEMBLE), "an unload without the key must not have happened"
    boxes, scores, _ = ensemble_detections(grpc.infer(ENSEMBLE, ensemble_inputs(photos[0])))
    assert len(scores) > 0 and boxes.shape[1] == 4
    http_answer = http.infer(NETWORK, _network_inputs(1, httpclient))
    assert http_answer.as_numpy("num_dets").shape == (1, 1)
    config = grpc.get_model_config(ENSEMBLE, headers={GRPC_KEY_HEADER: KEY}, as_json=True)["config"]
    assert config["platform"] == "ensemble"
    assert http.get_model_config(ENSEMBLE, headers={KEY_HEADER: KEY})["platform"] == "ensemble"


def test_add_version_2_while_version_1_serves(served, photos) -> None:
    server, repo, graphs = served
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    stop, problems, answered = threading.Event(), [], [0]

    def keep_asking() -> None:  # version 1 keeps serving the ensemble while version 2 is written and loaded
        client = grpcclient.InferenceServerClient(server.grpc_url)
        j = 0
        while not stop.is_set():
            try:
                client.infer(ENSEMBLE, ensemble_inputs(photos[j % len(photos)]), client_timeout=60)
                answered[0] += 1
            except InferenceServerException as exc:
                problems.append(exc.message())
            j += 1

    worker = threading.Thread(target=keep_asking)
    worker.start()
    try:
        result = subprocess.run([sys.executable, str(CLI), "triton", str(graphs[2]), "--repo", str(repo), "--version", "2",
                                 "--platform", "python", "--ensemble", "--max-batch", "8", "--queue-delay-us", "2000",
                                 "--threads", "1", "--versions-served", "2"],
                                capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr
        assert "added version 2 of gflv2_network" in result.stdout
        grpc.load_model(NETWORK, headers={GRPC_KEY_HEADER: KEY})  # explicit mode: the new version is picked up
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert problems == [] and answered[0] > 0
    assert grpc.is_model_ready(NETWORK, "1") and grpc.is_model_ready(NETWORK, "2")
    outputs = {v: grpc.infer(NETWORK, _network_inputs(2), model_version=v).as_numpy("det_scores") for v in ("1", "2")}
    assert outputs["1"].shape == outputs["2"].shape == (2, 100)
    assert not np.array_equal(outputs["1"], outputs["2"]), "version 2 has other weights: its answer must differ"
    assert grpc.is_model_ready(ENSEMBLE)
    print(f"\nversions: {answered[0]} ensemble requests answered while version 2 was added; both versions answer")


def test_concurrent_version_writers_one_fails_clearly(served) -> None:
    _, repo, graphs = served
    command = [sys.executable, str(CLI), "triton", str(graphs[2]), "--repo", str(repo), "--version", "3", "--platform",
               "python", "--ensemble", "--max-batch", "8", "--queue-delay-us", "2000", "--threads", "1",
               "--versions-served", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    results = [(w.wait(timeout=300), *w.communicate()) for w in writers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    failed = next(err for code, _, err in results if code == 2).strip().splitlines()
    assert len(failed) == 1 and failed[0].startswith("error:")
    assert "another gflv2-deploy" in failed[0] or "already there" in failed[0], failed
    version = repo / NETWORK / "3"
    assert sorted(p.name for p in version.iterdir()) == ["gflv2_triton_env.py", "model.onnx", "model.py"]
    assert (version / "model.onnx").read_bytes() == graphs[2].read_bytes()


def test_killed_manager_leaves_no_server_stub_or_shm(served) -> None:
    """SIGKILL to the process that started a server: its parent-death signal stops the server, which stops its
    stubs and removes its /dev/shm regions; nothing is left."""
    _, repo, _ = served
    child = ("import json, sys, time\nfrom gflv2_deploy.serve.triton_server import TritonServer\n"
             f"s = TritonServer({str(repo)!r}, models=['gflv2_postprocess'])\ns.start()\n"
             "print(json.dumps({'pid': s.process.pid, 'prefix': s.shm_prefix}), flush=True)\ntime.sleep(600)\n")
    manager = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        info = json.loads(manager.stdout.readline())
        assert list(Path("/dev/shm").glob(f"{info['prefix']}*")), "the server should have its shm regions"
    finally:
        manager.kill()
        manager.wait(timeout=30)

    def alive() -> bool:
        try:
            os.killpg(info["pid"], 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 60
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(), "the server or a python stub outlived its killed manager"
    assert list(Path("/dev/shm").glob(f"{info['prefix']}*")) == [], "shared memory left behind"


def test_a_bad_network_request_fails_alone(served) -> None:
    """Requests batched together: the one whose img_shape lies outside its picture gets its own error, the others
    their answers (a failure no longer fails the whole batch)."""
    from concurrent.futures import ThreadPoolExecutor

    server, _, _ = served

    def ask(bad: bool):
        inputs = _network_inputs(1)
        if bad:
            inputs[1].set_data_from_numpy(np.array([[0.0, 0.0]], np.float32))
        try:
            return grpcclient.InferenceServerClient(server.grpc_url).infer(NETWORK, inputs, model_version="1")
        except InferenceServerException as exc:
            return exc.message()

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(ask, [False, True, False, False, False]))
    assert isinstance(answers[1], str) and "img_shape" in answers[1], answers[1]
    assert all(not isinstance(a, str) and a.as_numpy("num_dets").shape == (1, 1) for i, a in enumerate(answers) if i != 1)


def test_drain_under_8_client_load_loses_nothing(served, photos) -> None:
    """Last test of the module: a drain then SIGTERM while 8 clients send; every request answered or refused."""
    server, _, _ = served
    channels = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(8)]

    def send(index: int, j: int) -> str | None:
        try:
            result = channels[index].infer(ENSEMBLE, ensemble_inputs(photos[(index * 7 + j) % len(photos)]),
                                           client_timeout=120)
        except InferenceServerException as exc:
            return exc.message()
        return None if result.as_numpy("num_detections") is not None else "no num_detections"

    def stop() -> dict:
        drained = server.drain(timeout_s=120)
        status = server.stop()
        return {"drained": drained, "exit_status": status}

    result = drain_under_load(send, clients=8, requests_per_client=25, stop=stop, stop_after_answers=40, model=ENSEMBLE)
    print(f"\ndrain: {result.summary()}; exit status {result.stop_result['exit_status']}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    assert result.sent == 8 * 25
    assert result.lost == [], result.lost[:5]
    assert result.answered >= 40 and result.refused > 0
    assert result.stop_result["drained"][0] == ENSEMBLE and result.stop_result["exit_status"] == 0
    assert not server.group_alive()
