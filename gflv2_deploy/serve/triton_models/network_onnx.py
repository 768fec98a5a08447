"""Triton python-backend model written by ``gflv2-deploy triton --platform python``: the network in onnxruntime.

For servers without the onnxruntime backend (the pip-installed tritonserver of nvidia-pytriton has the
python backend only). ``model.onnx`` beside this file; inputs and outputs as the graph contract says.
The requests Triton's dynamic batcher hands over together run as ONE onnxruntime batch.
"""

import gflv2_triton_env  # noqa: F401  (must come first: puts the server's packages on sys.path)

import json
import os

import triton_python_backend_utils as pb_utils

from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import pipeline


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        contract = GraphContract.from_json(pipeline.json_parameter(config, "gflv2_deploy.contract"), "model config")
        threads = int(pipeline.json_parameter(config, "onnxruntime_threads"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.network = pipeline.OnnxNetwork(path, contract, threads=threads or None)
        self.input_names = contract.input_names

    def execute(self, requests):
        try:
            feeds = {name: pipeline.stack_requests(
                [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests], name)
                for name in self.input_names}
            outputs = self.network.run(feeds)
        except (UserError, ValueError, RuntimeError) as exc:
            error = pb_utils.TritonError(f"network: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, self.input_names[0]).as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, value[start:start + n]) for name, value in outputs.items()]))
            start += n
        return responses
