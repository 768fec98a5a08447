"""OpenVINO backend: runs an ONNX exported by ``gflv2-deploy export`` on the CPU behind the Runner interface.

OpenVINO (PyPI ``openvino``, the ``openvino`` extra) reads the ONNX itself (fp32, the FP16 conversion
or an INT8 Q/DQ one, which its CPU plugin executes in int8) with ``Core.read_model`` and compiles it
for the CPU with the LATENCY performance hint and ``INFERENCE_NUM_THREADS`` = ``threads``. Inputs
``images`` / ``img_shape`` and the outputs are addressed by name, as in the graph's contract.

Precision: on CPUs with AMX or AVX-512 BF16, OpenVINO's default ``INFERENCE_PRECISION_HINT`` is bf16,
i.e. an fp32 graph would silently run in bfloat16 (8 mantissa bits). This runner asks for ``f32``
unless told otherwise, so that an fp32 ONNX gives fp32 results; an INT8 Q/DQ graph still runs its
quantised convolutions in int8 (the hint governs only the layers left in float).

Deformable convolutions (ONNX DeformConv, the DCN models) are read through a conversion rule onto OpenVINO's
DeformableConvolution-8 (runtime/openvino_deform_conv.py): its ONNX frontend has none of its own.

Graphs whose H and W are fixed are compiled once per batch size with a static shape (OpenVINO picks
faster kernels for static shapes); graphs with dynamic H/W are compiled once, dynamic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from gflv2_deploy import spec as io_spec
from gflv2_deploy.contract import CONTRACT_METADATA_KEY, GraphContract
from gflv2_deploy.contract_io import contract_from_metadata
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.runtime.base import graph_feed
from gflv2_deploy.runtime.ort_runner import graph_nms_form

PRECISION_HINTS: tuple[str, ...] = ("f32", "bf16", "f16")
DEFAULT_PRECISION = "f32"


def _import_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", "the openvino backend") from None
    return openvino


_OLD_CONTRACT_KEY = "gflv2_deploy.spec"  # format 1: refused by contract_from_metadata with its own message


def read_graph_contract(model: Any, path: Path) -> GraphContract:
    """The graph contract of an OpenVINO model read from one of our ONNX files; UserError when absent or unknown.

    OpenVINO's ONNX frontend keeps ``metadata_props`` in the model's rt_info under ``framework``, so
    neither onnx nor onnxruntime is needed.
    """
    metadata = {key: model.get_rt_info(["framework", key]).astype(str) for key in (CONTRACT_METADATA_KEY, _OLD_CONTRACT_KEY)
                if model.has_rt_info(["framework", key])}
    return contract_from_metadata(metadata, path)


def _reason(exc: Exception) -> str:
    """The informative line of an OpenVINO exception (its text starts with source locations)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[-1]


def _contract_name(names: set[str], contract: GraphContract) -> str:
    """The contract's name of an output port (a port may carry several tensor names)."""
    known = [n for n in contract.output_names if n in names]
    return known[0] if known else sorted(names)[0]


class OpenVinoRunner:
    """Runner over an OpenVINO ``CompiledModel`` (CPU) of an exported ONNX.

    path: ONNX written by ``export_onnx`` (or converted by ``convert_fp16`` / ``quantize_int8``).
    threads: ``INFERENCE_NUM_THREADS`` (default: OpenVINO's choice). precision: the CPU plugin's
    ``INFERENCE_PRECISION_HINT`` for float layers ("f32" default; "bf16"/"f16" where the CPU has them).
    expose_pre_nms: an end-to-end graph also returns its internal pre-NMS ``boxes`` / ``scores``
    (``compare`` reports their errors); the Detector still uses the graph's own detections.
    ``infer(images, img_shape=None)`` as ``OrtRunner.infer``: img_shape is fed only when the graph
    has that input; None then means every image fills the whole input.
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, precision: str = DEFAULT_PRECISION,
                 expose_pre_nms: bool = False) -> None:
        ov = _import_openvino()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX file not found: {self.path}")
        if threads is not None and threads < 1:
            raise UserError(f"threads must be at least 1, got {threads}")
        if precision not in PRECISION_HINTS:
            raise UserError(f"unknown OpenVINO precision hint '{precision}': choose one of {', '.join(PRECISION_HINTS)}")
        self._core = ov.Core()
        from gflv2_deploy.runtime.openvino_deform_conv import add_deform_conv_conversion

        add_deform_conv_conversion(self._core)  # DCN models: OpenVINO's ONNX frontend has no DeformConv rule
        try:
            self._model = self._core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError / GeneralFailure with multi-line text
            form = graph_nms_form(self.path)
            if form in ("trt", "plugin"):
                plugin = "the TensorRT plugin EfficientNMS_TRT" if form == "trt" else "our NMS operator GFLV2NMS_TRT (--nms plugin)"
                raise UserError(f"{self.path} ends in {plugin}, which OpenVINO cannot run: export with --nms none or "
                                "--nms onnx for OpenVINO") from None
            raise UserError(f"OpenVINO cannot read {self.path}: {_reason(exc)}") from None
        self.contract = read_graph_contract(self._model, self.path)
        if expose_pre_nms and self.contract.end_to_end:
            # the NMS tail reads the graph's internal boxes/scores tensors: list them as extra outputs
            # (in memory only; the factory does the same for onnxruntime with a temporary copy of the file)
            self._model.add_outputs(list(io_spec.PRE_NMS_OUTPUTS))
        self._inputs = {name: port for port in self._model.inputs for name in port.get_names()}
        if io_spec.INPUT_IMAGES not in self._inputs:
            raise UserError(f"{self.path} has no '{io_spec.INPUT_IMAGES}' input: re-export with `gflv2-deploy export`")
        self._output_names = tuple(_contract_name(port.get_names(), self.contract) for port in self._model.outputs)
        self.has_img_shape_input = io_spec.INPUT_IMAGE_SHAPE in self._inputs
        self.threads = threads
        self.precision = precision
        self._config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads is not None:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[int | None, Any] = {}  # batch size (static H/W) or None (dynamic) -> infer request

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    def _dims(self) -> list[int | None]:
        """Dims of ``images``: ints where fixed, None where dynamic."""
        return [d.get_length() if d.is_static else None for d in self._inputs[io_spec.INPUT_IMAGES].get_partial_shape()]

    @property
    def static_hw(self) -> tuple[int, int] | None:
        """(H, W) when the graph was exported with a fixed input size, else None."""
        dims = self._dims()
        h, w = (dims[axis] for axis in self.contract.preprocessing.hw_axes)
        return (h, w) if h is not None and w is not None else None

    def __enter__(self) -> "OpenVinoRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self._requests.clear()

    def _request(self, n: int) -> Any:
        """The infer request for a batch of ``n``: per batch size, static, when H/W are fixed; else one dynamic."""
        key = n if self.static_hw is not None else None
        if key not in self._requests:
            model = self._model
            if key is not None:
                model = model.clone()
                h, w = self.static_hw  # type: ignore[misc]
                shapes = {io_spec.INPUT_IMAGES: list(self.contract.preprocessing.images_shape(n, h, w))}
                if self.has_img_shape_input:
                    shapes[io_spec.INPUT_IMAGE_SHAPE] = [n, 2]
                model.reshape(shapes)
            try:
                compiled = self._core.compile_model(model, "CPU", self._config)
            except Exception as exc:
                raise UserError(f"OpenVINO cannot compile {self.path}: {_reason(exc)}") from None
            self._requests[key] = compiled.create_infer_request()
        return self._requests[key]

    def infer(self, images: np.ndarray, img_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Named numpy outputs of the graph (``spec.PRE_NMS_OUTPUTS`` or ``spec.END_TO_END_OUTPUTS``)."""
        feed = graph_feed(images, img_shape, graph=self.path.name, fixed_batch=self._dims()[0], static_hw=self.static_hw,
                          divisor=self.contract.preprocessing.pad_divisor, with_img_shape=self.has_img_shape_input,
                          input_format=self.contract.preprocessing.input_format)
        request = self._request(len(feed[io_spec.INPUT_IMAGES]))
        results = request.infer(feed, share_inputs=True, share_outputs=False)
        # by name: a compiled output port may carry several tensor names, get_any_name() any of them
        return {name: np.asarray(results[name]) for name in self._output_names}


def openvino_version() -> str | None:
    """The installed OpenVINO version, or None without the package."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def load_openvino_detector(path: str | os.PathLike[str], threads: int | None = None, precision: str = DEFAULT_PRECISION,
                           expose_pre_nms: bool = False) -> Any:
    """A ``runtime.detector.Detector`` over an exported ONNX run by OpenVINO, configured from its graph contract
    (test settings, class names, preprocessing; static-size graphs letterbox pictures into their input)."""
    from gflv2_deploy.runtime.detector import Detector

    runner = OpenVinoRunner(path, threads=threads, precision=precision, expose_pre_nms=expose_pre_nms)
    return Detector.from_contract(runner, runner.contract)
