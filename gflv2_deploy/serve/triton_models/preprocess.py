"""Triton python-backend model written by ``gflv2-deploy triton``: encoded pictures -> network input.

Input ``image``: one encoded picture (JPEG, PNG, ...) per batch row, TYPE_STRING. Outputs ``images``
(3 x H x W float32, or H x W x 3 uint8 BGR pictures for a graph exported with ``--input uint8``), ``img_shape`` (height, width after the resize) and ``scale_factor`` (sx, sy, sx, sy),
from the shared preprocessing of gflv2_deploy and the graph contract in this model's parameters. The
pictures of one request are preprocessed together, as ``Detector.detect`` does with a list. A request
whose bytes are not a picture, or whose header declares too many pixels, gets its own error response.
"""

import gflv2_triton_env  # noqa: F401  (must come first: puts the server's packages on sys.path)

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import pipeline


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        contract = GraphContract.from_json(pipeline.json_parameter(config, "gflv2_deploy.contract"), "model config")
        self.pre = contract.preprocessing
        self.max_pixels = int(pipeline.json_parameter(config, "max_pixels"))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                data = pb_utils.get_input_tensor_by_name(request, pipeline.PICTURE_INPUT).as_numpy()
                images, img_shape, scale = pipeline.preprocess_pictures(
                    [row.reshape(-1)[0] for row in data], self.pre, max_pixels=self.max_pixels)
                responses.append(pb_utils.InferenceResponse([
                    pb_utils.Tensor("images", images),
                    pb_utils.Tensor("img_shape", img_shape),
                    pb_utils.Tensor(pipeline.SCALE_FACTOR, scale),
                ]))
            except UserError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            except Exception as exc:  # noqa: BLE001 (anything else is this request's error too, not the batch's)
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
