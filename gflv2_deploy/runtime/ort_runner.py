"""onnxruntime backend: runs an ONNX exported by ``gflv2-deploy export`` behind the Runner interface.

The graph contract (gflv2_deploy/contract.py) comes from the ONNX metadata, read through onnxruntime's
model metadata, so neither torch, onnx nor the configuration is needed. Pre-NMS graphs
return ``boxes``/``scores``; end-to-end graphs (``--nms onnx``) return ``num_dets``, ``det_boxes``,
``det_scores``, ``det_classes``; graphs ending
in the TensorRT plugin EfficientNMS_TRT (``--nms trt``) cannot run here and are refused clearly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gflv2_deploy import spec as io_spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.contract_io import contract_from_metadata, read_onnx_contract
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import graph_feed

_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")  # never TensorRT EP by default


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "running ONNX models") from None
    return onnxruntime


def graph_nms_form(path: Path) -> str | None:
    """The NMS form (``none``, ``onnx``, ``trt``, ``plugin``) the graph contract of the ONNX at ``path`` records, or
    None when it cannot be read (best effort, for messages)."""
    try:
        return read_onnx_contract(path).postprocessing.nms
    except (UserError, MissingDependencyError):
        return None


class OrtRunner:
    """Runner over an onnxruntime ``InferenceSession``.

    path: ONNX written by ``export_onnx``. providers: onnxruntime execution providers (default: CUDA
    when available, then CPU). threads: intra-op threads (default: onnxruntime's choice).
    ``infer(images, img_shape=None)``: images N x 3 x H x W float32 (normalised), or N x H x W x 3 uint8
    pictures for a graph exported with ``--input uint8``; img_shape N x 2
    float32 (height, width) of the unpadded images. It is fed only when the graph has that input;
    when the graph has it and the caller gives None, every image is taken to fill the whole input
    (H, W), i.e. boxes are clamped to the padded tensor.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX file not found: {self.path}")
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in _PREFERRED_PROVIDERS if p in available]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise UserError(f"onnxruntime provider(s) {', '.join(unknown)} not available here (available: {', '.join(available)})")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise UserError(f"threads must be at least 1, got {threads}")
            options.intra_op_num_threads = int(threads)
        # fatal only: onnxruntime would also print its own "[E:onnxruntime:...]" line for every error it raises, and
        # that text is in the exception we report (one line) anyway
        options.log_severity_level = 4
        from gflv2_deploy import nms_plugin

        if nms_plugin.session_needs_ort_library(self.path):  # --nms plugin: our NMS runs through its CPU twin
            nms_plugin.register_ort_library(options)  # UserError naming how to build it when missing
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            if graph_nms_form(self.path) == "trt":
                raise UserError(
                    f"{self.path} ends in the TensorRT plugin EfficientNMS_TRT, which onnxruntime cannot run: build a "
                    "TensorRT engine from it, or export with --nms none / --nms onnx for onnxruntime"
                ) from None
            raise UserError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        self.contract: GraphContract = contract_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        if io_spec.INPUT_IMAGES not in self._inputs:
            raise UserError(f"{self.path} has no '{io_spec.INPUT_IMAGES}' input: re-export with `gflv2-deploy export`")
        self._output_names = tuple(o.name for o in self.session.get_outputs())

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def has_img_shape_input(self) -> bool:
        return io_spec.INPUT_IMAGE_SHAPE in self._inputs

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """(H, W) when the graph was exported with a fixed input size, else None."""
        dims = self._inputs[io_spec.INPUT_IMAGES].shape
        h_axis, w_axis = self.contract.preprocessing.hw_axes
        h, w = dims[h_axis], dims[w_axis]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    def __enter__(self) -> "OrtRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Named numpy outputs of the graph (``spec.PRE_NMS_OUTPUTS`` or ``spec.END_TO_END_OUTPUTS``)."""
        fixed_n = self._inputs[io_spec.INPUT_IMAGES].shape[0]
        feed = graph_feed(images, img_shape, graph=self.path.name, fixed_batch=fixed_n if isinstance(fixed_n, int) else None,
                          static_hw=self.static_hw, divisor=self.contract.preprocessing.pad_divisor,
                          with_img_shape=self.has_img_shape_input, input_format=self.contract.preprocessing.input_format)
        try:
            outputs = self.session.run(list(self._output_names), feed)
        except Exception as exc:  # onnxruntime's own types (Fail, InvalidArgument, ...): one line naming the graph
            raise UserError(f"onnxruntime failed running {self.path.name}: {str(exc).splitlines()[0]}") from None
        return dict(zip(self._output_names, outputs))


def load_onnx_detector(path: str | os.PathLike[str], providers: Sequence[str] | None = None, threads: int | None = None) -> Any:
    """A ``runtime.detector.Detector`` over an exported ONNX, configured from its graph contract
    (test settings, class names, preprocessing; static-size graphs letterbox pictures into their input)."""
    from gflv2_deploy.runtime.detector import Detector

    runner = OrtRunner(path, providers=providers, threads=threads)
    return Detector.from_contract(runner, runner.contract)
