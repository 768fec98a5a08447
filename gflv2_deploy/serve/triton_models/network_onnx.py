"""Triton python-backend model written by ``gflv2-deploy triton --platform python``: the network in onnxruntime.

For servers without the onnxruntime backend (the pip-installed tritonserver of nvidia-pytriton has the
python backend only). ``model.onnx`` beside this file; inputs and outputs as the graph contract says.
Each request is checked on its own (dtype, layout, sizes within what the contract serves:
``pipeline.check_network_feeds``) and answered with its own error when it does not fit; the requests
Triton's dynamic batcher hands over together then run as ONE onnxruntime batch. Should that batch fail
(onnxruntime raises its own exception classes: InvalidArgument, Fail, ...), each request runs alone, so
that only the one that fails gets an error.
"""

import gflv2_triton_env  # noqa: F401  (must come first: puts the server's packages on sys.path)

import json
import os

import triton_python_backend_utils as pb_utils

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.serve import pipeline


def _error(exc):
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"network: {type(exc).__name__}: {text}"))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.contract = GraphContract.from_json(pipeline.json_parameter(config, "gflv2_deploy.contract"), "model config")
        threads = int(pipeline.json_parameter(config, "onnxruntime_threads"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.network = pipeline.OnnxNetwork(path, self.contract, threads=threads or None)
        self.input_names = self.contract.input_names

    def _feeds(self, request):
        feeds = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"the request has no input '{name}'")
            feeds[name] = tensor.as_numpy()
        pipeline.check_network_feeds(feeds, self.contract)
        return feeds

    def _respond(self, outputs, start, n):
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, value[start:start + n]) for name, value in outputs.items()])

    def execute(self, requests):
        responses = [None] * len(requests)
        good = []
        for index, request in enumerate(requests):
            try:
                good.append((index, self._feeds(request)))
            except Exception as exc:  # noqa: BLE001 (every problem of one request is that request's error)
                responses[index] = _error(exc)
        if not good:
            return responses
        try:
            feeds = {name: pipeline.stack_requests([f[name] for _, f in good], name) for name in self.input_names}
            outputs = self.network.run(feeds)
        except Exception:  # noqa: BLE001 (onnxruntime's exception classes do not derive from RuntimeError)
            for index, request_feeds in good:
                try:
                    responses[index] = self._respond(self.network.run(request_feeds), 0, len(request_feeds[spec.INPUT_IMAGES]))
                except Exception as exc:  # noqa: BLE001
                    responses[index] = _error(exc)
            return responses
        start = 0
        for index, request_feeds in good:
            n = len(request_feeds[spec.INPUT_IMAGES])
            responses[index] = self._respond(outputs, start, n)
            start += n
        return responses
