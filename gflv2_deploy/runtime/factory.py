"""Backend selection: one call from (backend name, model file) to a ready ``Detector``.

``make_detector("torch", "run/latest.pth")``, ``make_detector("onnxruntime", "run/model.e2e.onnx")`` or
``make_detector("tensorrt-rtx", "run/model.engine")``. The torch backend takes a checkpoint (ours, or an
official one with ``config``); onnxruntime takes an ONNX written by ``gflv2-deploy export`` and configures
itself from the graph's metadata; tensorrt and tensorrt-rtx take an engine written by ``gflv2-deploy build``
and configure themselves from its manifest. Backends are imported inside the function that needs them, so
a machine without onnxruntime can still use torch, and one without TensorRT, cuda-python or a GPU answers
a TensorRT backend with one line naming what is missing.

``expose_pre_nms=True`` (onnxruntime only) also returns the pre-NMS tensors of an end-to-end graph:
the NMS tail of ``export/nms.py`` consumes the graph's ``boxes`` / ``scores`` tensors under those names,
so a session-only copy of the graph lists them as extra outputs (the file on disk is not changed).
The Detector still returns the graph's own end-to-end detections.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gflv2_deploy import spec
from gflv2_deploy.errors import MissingDependencyError, UserError

if TYPE_CHECKING:  # the CLI reads BACKENDS for its help texts: importing this module stays light (no numpy/cv2 work)
    from gflv2_deploy.runtime.detector import Detector

TRT_BACKENDS: tuple[str, ...] = ("tensorrt", "tensorrt-rtx")
# Every backend and the model it runs: the one list behind check_backend, BACKEND:PATH and every --backend help text.
BACKEND_MODELS: dict[str, str] = {
    "torch": "a checkpoint",
    "onnxruntime": "an exported ONNX",
    "openvino": "an exported ONNX, CPU",
    "tensorrt": "an engine",
    "tensorrt-rtx": "an engine",
    "triton": "HOST:PORT/MODEL served by Triton",
    "cpp": "an exported ONNX or an engine, in the C++ runtime",
}
BACKENDS: tuple[str, ...] = tuple(BACKEND_MODELS)


def backends_help() -> str:
    """``"torch (a checkpoint), onnxruntime (an exported ONNX), ..."``: every backend with what it runs, for help texts."""
    return ", ".join(f"{name} ({model})" for name, model in BACKEND_MODELS.items())


def check_backend(backend: str) -> str:
    """``backend`` itself when known, else UserError listing the choices."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    return backend


def parse_model_spec(text: str) -> tuple[str, Path]:
    """``"torch:run/latest.pth"`` -> ("torch", Path("run/latest.pth")); UserError for another form or backend."""
    backend, sep, path = text.partition(":")
    if not sep or not path:
        raise UserError(f"expected BACKEND:PATH (e.g. torch:model.pth, onnxruntime:model.onnx, "
                        f"tensorrt-rtx:model.engine), got '{text}'")
    return check_backend(backend), Path(path)


def infer_backend(path: str | os.PathLike[str]) -> str:
    """The backend a model file implies: .onnx -> onnxruntime; an engine (a manifest beside it, or .engine /
    .plan / .trt) -> the TensorRT flavour its manifest names; anything else -> torch (a checkpoint)."""
    from gflv2_deploy.engine.manifest import manifest_path

    p = Path(path)
    if p.suffix == ".onnx":
        return "onnxruntime"
    if manifest_path(p).is_file() or p.suffix in (".engine", ".plan", ".trt"):
        from gflv2_deploy.engine.manifest import read_manifest

        flavour = read_manifest(p, verify_engine=False).get("runtime", {}).get("flavour")
        return flavour if flavour in TRT_BACKENDS else "tensorrt"
    return "torch"


def resolve_model(model: str, backend: str | None = None) -> tuple[str, Path]:
    """(backend, path) of a model given as PATH or BACKEND:PATH, with ``backend`` (``--backend``) winning
    over what the file implies (``infer_backend``). UserError when both name a backend and they differ."""
    prefix, sep, rest = model.partition(":")
    if sep and prefix in BACKENDS:
        if backend is not None and backend != prefix:
            raise UserError(f"--backend {backend} contradicts the model spec '{model}'")
        return prefix, Path(rest)
    path = Path(model)
    return (check_backend(backend) if backend is not None else infer_backend(path)), path


def check_model_file(path: str | os.PathLike[str], backend: str | None = None) -> Path:
    """``path`` as a Path when it is a file; UserError saying whether it is missing or a folder (with the file a
    ``backend`` would want in it: ``latest.pth`` for torch)."""
    p = Path(path)
    if p.is_dir():
        example = f" (e.g. {p / 'latest.pth'})" if backend in (None, "torch") else ""
        raise UserError(f"model {p} is a folder: give the model file in it{example}")
    if not p.is_file():
        raise UserError(f"model file not found: {p}")
    return p


def cuda_device_index(device: str) -> int:
    """CUDA device index of a ``--device`` value: ``cuda:N`` -> N; ``cuda`` / ``cpu`` -> 0 (TensorRT runs on a GPU)."""
    head, _, index = device.partition(":")
    if head not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise UserError(f"device must be cpu, cuda or cuda:N, got '{device}'")
    return int(index) if index else 0


def make_detector(backend: str, model_path: str | os.PathLike[str], config: str | None = None, device: str = "cpu",
                  threads: int | None = None, *, allow_unsafe_pickle: bool = False, expose_pre_nms: bool = False,
                  tf32: bool = False) -> Detector:
    """A ``Detector`` over ``model_path`` run by ``backend`` (one of ``BACKENDS``).

    torch: ``model_path`` is a checkpoint; ``config`` is needed for official checkpoints; ``threads`` sets
        torch's intra-op threads for the whole process (``torch.set_num_threads``); true FP32 unless ``tf32``
        (CUDA TF32 convolutions and matmuls; refused by the other backends and on the CPU).
    onnxruntime: ``model_path`` is an exported ONNX; ``device`` 'cpu' uses the CPU execution provider,
        'cuda[:N]' the CUDA one; ``threads`` sets the session's intra-op threads.
    tensorrt / tensorrt-rtx: ``model_path`` is an engine with its manifest; it runs on CUDA device N of
        ``device`` 'cuda:N' (0 otherwise); ``threads`` and ``expose_pre_nms`` do not apply. Where TensorRT,
        cuda-python or a GPU is missing, UserError names it (``trt_runner.check_engine_loadable``).
    triton: ``model_path`` is HOST:PORT/MODEL of a network model served by Triton (``gflv2-deploy triton``);
        ``threads`` and ``device`` do not apply (the server's configuration decides).
    Raises UserError for an unknown backend, a missing file or a model the backend cannot load.
    """
    check_backend(backend)
    if tf32 and backend != "torch":
        raise UserError(f"--tf32 sets the math of the torch reference on CUDA; the {backend} backend has its own precision")
    from gflv2_deploy.runtime.detector import Detector

    if backend == "triton":  # HOST:PORT/MODEL of a running server (runtime/triton_runner.py)
        from gflv2_deploy.runtime.triton_runner import load_triton_detector

        return load_triton_detector(str(model_path))
    path = check_model_file(model_path, backend)
    if threads is not None and threads < 1:
        raise UserError(f"threads must be at least 1, got {threads}")
    if backend == "cpp":  # the C++ runtime library (cpp/): an exported ONNX, or a TensorRT engine with its manifest
        from gflv2_deploy.runtime.cpp_runner import load_cpp_detector

        return load_cpp_detector(path, threads=threads, device=device)
    if backend == "torch":
        if path.suffix == ".onnx":
            raise UserError(f"{path} is an ONNX file: use the onnxruntime backend, or give torch a checkpoint (.pth)")
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("torch", "torch", "the torch backend (checkpoints)") from None

        from gflv2_deploy.model.load import load_torch_model
        from gflv2_deploy.runtime.torch_runner import TorchRunner

        if threads is not None:
            torch.set_num_threads(threads)
        model = load_torch_model(path, config, allow_unsafe_pickle=allow_unsafe_pickle)
        return Detector(TorchRunner(model, device, tf32=tf32), model.config.test, model.config.class_names)
    if backend in TRT_BACKENDS:
        return _make_trt_detector(backend, path, device)
    if path.suffix == ".pth":
        raise UserError(f"{path} is a checkpoint: export it first (gflv2-deploy export {path}), or use the torch backend")
    if backend == "openvino":  # CPU only; OpenVINO reads the ONNX itself
        if device != "cpu":
            raise UserError(f"the openvino backend runs on the CPU only, got device '{device}'")
        from gflv2_deploy.runtime.openvino_runner import load_openvino_detector

        return load_openvino_detector(path, threads=threads, expose_pre_nms=expose_pre_nms)
    from gflv2_deploy.runtime.ort_runner import load_onnx_detector

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    if not expose_pre_nms or not _is_end_to_end(path):
        return load_onnx_detector(path, providers=providers, threads=threads)
    with tempfile.TemporaryDirectory(prefix="gflv2_expose_") as tmp:  # onnxruntime reads the whole file at load
        exposed = Path(tmp) / path.name
        _write_with_pre_nms_outputs(path, exposed)
        detector = load_onnx_detector(exposed, providers=providers, threads=threads)
    detector.runner.path = path  # reports name the user's file, not the temporary copy
    return detector


def _make_trt_detector(backend: str, path: Path, device: str) -> Detector:
    if path.suffix in (".pth", ".onnx"):
        raise UserError(f"{backend} runs engines, and {path} is not one: build it first "
                        f"(`gflv2-deploy build <model>.onnx --runtime {backend}`)")
    from gflv2_deploy.runtime.trt_runner import load_trt_detector

    detector: Detector = load_trt_detector(path, backend=backend, device=cuda_device_index(device))
    return detector


def _is_end_to_end(path: Path) -> bool:
    from gflv2_deploy.contract_io import read_onnx_contract

    return read_onnx_contract(path).end_to_end


def _write_with_pre_nms_outputs(src: Path, dst: Path) -> None:
    """Copy the end-to-end graph ``src`` to ``dst`` with ``boxes`` and ``scores`` added as graph outputs."""
    import onnx

    from gflv2_deploy.onnx_ir import save_onnx

    model: Any = onnx.load(str(src))
    produced = {out for node in model.graph.node for out in node.output}
    missing = [name for name in spec.PRE_NMS_OUTPUTS if name not in produced]
    if missing:
        raise UserError(f"{src} has no internal tensor(s) {', '.join(missing)}: re-export it with gflv2-deploy export")
    batch = model.graph.output[0].type.tensor_type.shape.dim[0]
    n = batch.dim_param or batch.dim_value
    model.graph.output.extend([
        onnx.helper.make_tensor_value_info(spec.OUT_BOXES, onnx.TensorProto.FLOAT, [n, "num_points", 4]),
        onnx.helper.make_tensor_value_info(spec.OUT_SCORES, onnx.TensorProto.FLOAT, [n, "num_points", "num_classes"]),
    ])
    save_onnx(model, dst)
