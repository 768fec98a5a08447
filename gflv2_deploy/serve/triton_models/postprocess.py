"""Triton python-backend model written by ``gflv2-deploy triton --ensemble``: network outputs -> detections.

Inputs: the network's outputs (end-to-end or pre-NMS, as the graph contract says), ``img_shape`` and
``scale_factor`` of each picture. Outputs per picture: ``num_detections``, ``detection_boxes`` (x1 y1 x2 y2
in picture pixels), ``detection_scores``, ``detection_classes``; the padding slots are dropped, so a
request of one picture gets exactly its detections (a request of several pictures is padded to its
largest count with the contract's pad values). Pre-NMS graphs get the host NMS of spec §3.2.
"""

import gflv2_triton_env  # noqa: F401  (must come first: puts the server's packages on sys.path)

import json

import triton_python_backend_utils as pb_utils

from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import pipeline


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.contract = GraphContract.from_json(pipeline.json_parameter(config, "gflv2_deploy.contract"), "model config")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                outputs = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                           for name in self.contract.output_names}
                img_shape = pb_utils.get_input_tensor_by_name(request, "img_shape").as_numpy()
                scale = pb_utils.get_input_tensor_by_name(request, pipeline.SCALE_FACTOR).as_numpy()
                tensors = pipeline.batch_detections(outputs, scale, img_shape, self.contract.postprocessing)
                responses.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor(name, value) for name, value in tensors.items()]))
            except UserError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            except Exception as exc:  # noqa: BLE001 (anything else is this request's error too, not the batch's)
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
