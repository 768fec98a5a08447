"""triton backend: a network served by Triton Inference Server, behind the Runner interface (gRPC).

Target ``HOST:PORT/MODEL`` (e.g. ``127.0.0.1:8001/gflv2_network``): the network model of a repository
written by ``gflv2-deploy triton`` (any platform). ``gflv2-deploy bench --backend triton`` serves its
graph on a local server first (``serve.triton_server.serve_onnx_locally``) and runs this runner on it.
The runner reads the graph contract from the model's config parameter ``gflv2_deploy.contract``, so
names, thresholds, classes and a fixed input size come from the server; ``infer`` sends the preprocessed batch (split into chunks of the model's ``max_batch_size``)
and returns the named outputs, like the onnxruntime runner. ``tritonclient`` (extra ``triton``) is
imported when a runner is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import batch_hw, check_batch

CONTRACT_PARAMETER = "gflv2_deploy.contract"
# Repositories served with restricted APIs (gflv2-deploy triton --k8s, TritonServer(admin_key=...)) need a key for
# the model-config API this runner reads the contract from: the value of this variable, sent in KEY_HEADER over
# HTTP and in GRPC_KEY_HEADER over gRPC (Triton prefixes restricted gRPC headers).
KEY_ENV = "GFLV2_TRITON_ADMIN_KEY"
KEY_HEADER = "gflv2-admin-key"
GRPC_KEY_HEADER = f"triton-grpc-protocol-{KEY_HEADER}"
_NP_TO_TRITON = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}


def grpc_client(url: str) -> Any:
    """A ``tritonclient.grpc.InferenceServerClient`` for ``HOST:PORT``."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise MissingDependencyError("tritonclient", "triton", "talking to Triton Inference Server") from None
    return grpcclient.InferenceServerClient(url=url)


def parse_target(target: str) -> tuple[str, str]:
    """``"127.0.0.1:8001/gflv2_network"`` -> ("127.0.0.1:8001", "gflv2_network"); UserError for another form."""
    url, sep, model = str(target).rpartition("/")
    if not sep or not url or not model or ":" not in url:
        raise UserError(f"expected a Triton target HOST:GRPC_PORT/MODEL (e.g. 127.0.0.1:8001/gflv2_network), got '{target}'")
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:  # gRPC would wrap 99999 to another port
        raise UserError(f"Triton target {target}: the port must be a number in 1..65535, got '{port}'")
    return url, model


class TritonRunner:
    """Runner over one network model of a running Triton server (gRPC).

    admin_key: the key of a server whose model-config API is restricted (default: ``$GFLV2_TRITON_ADMIN_KEY``).
    """

    name = "triton"

    def __init__(self, target: str, timeout_s: float = 60.0, admin_key: str | None = None) -> None:
        import os

        self.path = target  # what reports show as the model
        self.url, self.model = parse_target(target)
        self.timeout_s = timeout_s
        self.client = grpc_client(self.url)
        from tritonclient.utils import InferenceServerException

        key = admin_key if admin_key is not None else os.environ.get(KEY_ENV)
        headers = {GRPC_KEY_HEADER: key} if key else None
        try:
            ready = self.client.is_model_ready(self.model)
            config = self.client.get_model_config(self.model, as_json=True, headers=headers)["config"] if ready else None
        except InferenceServerException as exc:
            raise UserError(f"cannot reach Triton at {self.url}: {exc.message()}") from None
        if config is None:
            raise UserError(f"Triton at {self.url} has no ready model '{self.model}'")
        text = config.get("parameters", {}).get(CONTRACT_PARAMETER, {}).get("string_value")
        self.contract = GraphContract.from_json(text, f"Triton model '{self.model}'")
        self.max_batch = int(config.get("max_batch_size", 0)) or 1

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.contract.output_names

    def __enter__(self) -> "TritonRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """images N x 3 x H x W float32 (N x H x W x 3 uint8 for a uint8-input graph), img_shape N x 2 -> the
        network's named outputs, N rows each."""
        input_format = self.contract.preprocessing.input_format
        batch = check_batch(images, input_format)
        n, h, w = batch_hw(batch, input_format)
        if img_shape is None:
            img_shape = np.tile(np.array([[h, w]], np.float32), (n, 1))
        img_shape = np.ascontiguousarray(img_shape, dtype=np.float32)
        chunks = [self._infer_chunk(batch[i:i + self.max_batch], img_shape[i:i + self.max_batch])
                  for i in range(0, n, self.max_batch)]
        return {name: np.concatenate([c[name] for c in chunks]) for name in self.output_names}

    def _infer_chunk(self, images: np.ndarray, img_shape: np.ndarray) -> dict[str, np.ndarray]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        feeds = {spec.INPUT_IMAGES: images}
        if self.contract.has_img_shape_input:
            feeds[spec.INPUT_IMAGE_SHAPE] = img_shape
        inputs = []
        for name, value in feeds.items():
            tensor = grpcclient.InferInput(name, list(value.shape), _NP_TO_TRITON[str(value.dtype)])
            tensor.set_data_from_numpy(np.ascontiguousarray(value))
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in self.output_names]
        try:
            result = self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise UserError(f"Triton model '{self.model}' at {self.url} failed: {exc.message()}") from None
        return {name: result.as_numpy(name) for name in self.output_names}


def load_triton_detector(target: str) -> Any:
    """A ``Detector`` over the Triton network model ``HOST:PORT/MODEL``, configured from its contract."""
    from gflv2_deploy.runtime.detector import Detector

    runner = TritonRunner(target)
    return Detector.from_contract(runner, runner.contract)
