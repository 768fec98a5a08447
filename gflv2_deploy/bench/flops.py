"""How much arithmetic a forward pass is, and how fast this machine can do that arithmetic at best.

A latency ratio between two backends says nothing about how much faster either could go. Two
numbers put it in context:

- ``count_gflop(net, hw, batch)``: the floating-point operations of one forward pass, counted as
  2 x multiply-accumulates of every ``Conv2d`` and ``Linear`` call (hooks on a copy of the network on
  torch's ``meta`` device: shapes only, no arithmetic, no memory). Normalisation, activations, the
  DFL softmax, DGQP's top-k and the decode are left out: they are < 1 % of GFLV2's work (the ONNX
  profile of R-50 at 640 x 640 puts Conv at 96 % of the time).
- ``measure_conv_peak(backends, threads)``: the sustained GFLOP/s of R-50 GFLV2's dominant layer, a
  3x3 convolution 256 -> 256 channels on an 80 x 80 map (the head tower at stride 8 of a 640 input;
  3x3 convolutions over 256 channels are 65 % of R-50 GFLV2's operations), run alone by torch and by
  onnxruntime (and OpenVINO) with the same thread count. A whole network of such layers cannot run much faster than
  that; ``peak / torch's achieved rate`` is therefore a ceiling on any FP32 speed-up over torch on this
  machine. (gflv2_tiny is mostly 64-channel layers, which reach a lower rate: its fraction of this
  peak is lower by construction.)
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gflv2_deploy.bench.timing import time_callable

PEAK_LAYER = {"channels": 256, "kernel": 3, "hw": 80}  # the dominant layer of GFLV2 (head tower, stride 8, 640 input)


def count_gflop(net: Any, hw: tuple[int, int], batch: int = 1) -> float:
    """GFLOP (1e9 floating-point operations) of ``net`` on a ``batch`` x 3 x H x W input; conv and linear layers."""
    import torch

    meta = copy.deepcopy(net).to("meta")
    total = [0]

    def count(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        per_output = module.weight[0].numel()  # Conv2d: in/groups * kh * kw; Linear: in_features
        total[0] += 2 * output.numel() * per_output

    handles = [m.register_forward_hook(count) for m in meta.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            meta(torch.zeros(batch, 3, hw[0], hw[1], device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total[0] / 1e9


def peak_layer_gflop() -> float:
    c, k, s = PEAK_LAYER["channels"], PEAK_LAYER["kernel"], PEAK_LAYER["hw"]
    return 2 * c * c * k * k * s * s / 1e9


def _torch_conv_seconds(x: np.ndarray, weight: np.ndarray, iterations: int, warmup: int) -> float:
    import torch

    xt, wt = torch.from_numpy(x), torch.from_numpy(weight)
    pad = weight.shape[-1] // 2
    with torch.no_grad():
        conv = lambda: torch.nn.functional.conv2d(xt, wt, padding=pad)  # noqa: E731
        return time_callable(conv, iterations=iterations, warmup=warmup).p50_ms / 1000.0


def _conv_onnx(x: np.ndarray, weight: np.ndarray) -> bytes:
    """The serialised ONNX of one same-padded Conv of ``weight`` on an input shaped like ``x``."""
    from onnx import TensorProto, helper, numpy_helper

    from gflv2_deploy.onnx_ir import onnx_bytes

    pad = weight.shape[-1] // 2
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[pad] * 4)], "peak_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    return onnx_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _ort_conv_seconds(x: np.ndarray, weight: np.ndarray, threads: int | None, iterations: int, warmup: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(_conv_onnx(x, weight), options, providers=["CPUExecutionProvider"])
    return time_callable(lambda: session.run(None, {"x": x}), iterations=iterations, warmup=warmup).p50_ms / 1000.0


def _openvino_conv_seconds(x: np.ndarray, weight: np.ndarray, threads: int | None, iterations: int, warmup: int) -> float:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(_conv_onnx(x, weight))  # bytes: an in-memory ONNX model
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # as OpenVinoRunner
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(model, "CPU", config).create_infer_request()
    return time_callable(lambda: request.infer({"x": x}, share_inputs=True), iterations=iterations, warmup=warmup).p50_ms / 1000.0


def measure_conv_peak(backends: list[str], threads: int | None, iterations: int = 15, warmup: int = 3) -> dict[str, float]:
    """GFLOP/s of the dominant layer alone (median of ``iterations``), per backend ("torch", "onnxruntime",
    "openvino"), on CPU.

    torch runs with its current thread setting (the caller sets it), onnxruntime and OpenVINO with ``threads``.
    """
    rng = np.random.default_rng(0)
    c, k, s = PEAK_LAYER["channels"], PEAK_LAYER["kernel"], PEAK_LAYER["hw"]
    x = rng.random((1, c, s, s), dtype=np.float32)
    weight = (rng.standard_normal((c, c, k, k)) * 0.01).astype(np.float32)
    timers = {"torch": lambda: _torch_conv_seconds(x, weight, iterations, warmup),
              "onnxruntime": lambda: _ort_conv_seconds(x, weight, threads, iterations, warmup),
              "openvino": lambda: _openvino_conv_seconds(x, weight, threads, iterations, warmup)}
    return {b: peak_layer_gflop() / timers[b]() for b in backends if b in timers}
