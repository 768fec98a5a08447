"""What ``gflv2-deploy triton`` was asked for, checked against the model before any config is built.

``RepositoryOptions`` holds every option with its bounds; ``check_options`` refuses, in one line each,
the combinations Triton cannot load or that make no sense (an ``EfficientNMS_TRT`` graph on onnxruntime, a
TensorRT-RTX engine as ``tensorrt_plan``, accelerators on the CPU, numbers out of range);
``parse_instances`` reads ``--instances`` (``2`` or ``network=2,preprocess=4``); ``serving_contract``
decides the size Triton serves at: a graph with a dynamic input size is letterboxed into one fixed size by
default, because Triton's dynamic batcher only joins requests of equal shape (each picture padded to its
own size gave 9 shapes for 79 photos, 315 executions for 400 requests instead of 114).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve.pipeline import MAX_PICTURE_PIXELS

PLATFORMS: tuple[str, ...] = ("onnxruntime", "tensorrt", "python")
DEVICES: tuple[str, ...] = ("gpu", "cpu")
ACCELERATORS: tuple[str, ...] = ("none", "tensorrt")
MODEL_ROLES: tuple[str, ...] = ("network", "preprocess", "postprocess")
SERVE_DYNAMIC = "dynamic"  # --serve-size dynamic: keep a dynamic-size graph's per-picture sizes
# Bounds of the numeric options (inclusive): large enough for any real deployment, small enough that a typo
# (an extra digit, a negative sign) is refused before a repository is written.
BOUNDS: dict[str, tuple[int, int]] = {
    "--max-batch": (1, 256),
    "--instances": (1, 64),
    "--queue-delay-us": (0, 10_000_000),
    "--threads": (0, 256),
    "--version": (1, 2**31 - 1),
    "--versions-served": (1, 16),
    "max_pixels": (1, 16384 * 16384),  # library only (RepositoryOptions.max_pixels)
}


@dataclass(frozen=True)
class RepositoryOptions:
    """What ``gflv2-deploy triton`` was asked for (defaults: the CLI's).

    platform: None = onnxruntime for an ONNX, tensorrt for an engine. device: None = gpu for onnxruntime and
    tensorrt, cpu for python. instances: per model role (``MODEL_ROLES``), 1 where not given. accelerator /
    accelerator_fp16 / engine_cache: onnxruntime on a GPU only (TensorRT execution accelerator). serve_size:
    None = the graph's fixed size, or for a dynamic-size graph its test scale rounded up to the pad divisor;
    (H, W) = letterbox into that size; ``SERVE_DYNAMIC`` = per-picture sizes (batching defeated). version: the
    network's version folder (1 for a new repository; with ``add_version`` a version added to an existing one).
    """

    platform: str | None = None
    name: str = "gflv2"
    max_batch: int = 8
    instances: Mapping[str, int] | int = field(default_factory=dict)
    queue_delay_us: int = 1000
    ensemble: bool = False
    onnxruntime_threads: int = 0  # python variant: onnxruntime intra-op threads per instance (0: its default)
    max_pixels: int = MAX_PICTURE_PIXELS
    device: str | None = None
    accelerator: str = "none"
    accelerator_fp16: bool = False
    engine_cache: str | None = None
    serve_size: tuple[int, int] | str | None = None
    version: int = 1
    versions_served: int = 1
    warmup: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.instances, int):  # one count for every model
            object.__setattr__(self, "instances", {role: self.instances for role in MODEL_ROLES})

    def count(self, role: str) -> int:
        """Instances of the model of ``role`` ("network", "preprocess", "postprocess")."""
        return int(self.instances.get(role, 1))


def parse_instances(text: str) -> dict[str, int]:
    """``"2"`` -> every model 2; ``"network=2,preprocess=4"`` -> those, others 1. UserError for anything else."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return {role: int(text) for role in MODEL_ROLES}
    counts: dict[str, int] = {}
    for part in text.split(","):
        role, sep, value = part.partition("=")
        role = role.strip()
        if not sep or role not in MODEL_ROLES or not value.strip().lstrip("-").isdigit():
            raise UserError(f"--instances must be a count (2) or ROLE=COUNT pairs with ROLE in {', '.join(MODEL_ROLES)} "
                            f"(network=2,preprocess=4), got '{text}'")
        if role in counts:
            raise UserError(f"--instances names '{role}' twice")
        counts[role] = int(value)
    return counts


def parse_serve_size(text: str | None) -> tuple[int, int] | str | None:
    """``None`` | ``"dynamic"`` | ``"800x1344"`` -> None | SERVE_DYNAMIC | (800, 1344); UserError otherwise."""
    if text is None:
        return None
    if text == SERVE_DYNAMIC:
        return SERVE_DYNAMIC
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit():
        raise UserError(f"--serve-size must be HxW (e.g. 800x1344) or '{SERVE_DYNAMIC}', got '{text}'")
    size = (int(h), int(w))
    problem = spec.input_hw_problem(*size)
    if problem:
        raise UserError(f"--serve-size {text}: {problem}")
    return size


def _bounded(option: str, value: int) -> None:
    low, high = BOUNDS[option]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{option} must be an integer in {low}..{high}, got {value}")


def resolved_platform(options: RepositoryOptions, is_engine: bool) -> str:
    """--platform, or its default: tensorrt for an engine, onnxruntime for an ONNX."""
    return options.platform or ("tensorrt" if is_engine else "onnxruntime")


def resolved_device(platform: str, options: RepositoryOptions) -> str:
    """--device, or its default: cpu for the python platform, gpu otherwise."""
    return options.device or ("cpu" if platform == "python" else "gpu")


def check_options(path: Path, contract: GraphContract, options: RepositoryOptions, *, is_engine: bool,
                  engine_flavour: str | None) -> None:
    """UserError (one line) for an option out of bounds or a combination Triton cannot load."""
    platform = resolved_platform(options, is_engine)
    if platform not in PLATFORMS:
        raise UserError(f"unknown --platform '{platform}': choose one of {', '.join(PLATFORMS)}")
    if options.device is not None and options.device not in DEVICES:
        raise UserError(f"unknown --device '{options.device}': choose one of {', '.join(DEVICES)}")
    if options.accelerator not in ACCELERATORS:
        raise UserError(f"unknown --accelerator '{options.accelerator}': choose one of {', '.join(ACCELERATORS)}")
    device = resolved_device(platform, options)
    for option, value in (("--max-batch", options.max_batch), ("--queue-delay-us", options.queue_delay_us),
                          ("--threads", options.onnxruntime_threads), ("--version", options.version),
                          ("--versions-served", options.versions_served), ("max_pixels", options.max_pixels)):
        _bounded(option, value)
    for role, count in options.instances.items():
        if role not in MODEL_ROLES:
            raise UserError(f"--instances: unknown model '{role}' (choose from {', '.join(MODEL_ROLES)})")
        _bounded("--instances", count)
    if not options.name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--name '{options.name}' must be letters, digits, '_' or '-'")
    if is_engine and platform != "tensorrt":
        raise UserError(f"{path.name} is a TensorRT engine: it runs only with --platform tensorrt")
    if not is_engine and platform == "tensorrt":
        raise UserError(f"{path.name} is an ONNX: build an engine first (gflv2-deploy build {path.name} ...) "
                        "or choose --platform onnxruntime / python")
    if is_engine and engine_flavour == "tensorrt-rtx":
        raise UserError(f"{path.name} was built by TensorRT-RTX, whose plans Triton's TensorRT backend (tensorrt_plan) "
                        "cannot deserialise: build the engine with TensorRT (gflv2-deploy build --runtime tensorrt) on "
                        "the serving GPU, or serve the ONNX with --platform onnxruntime")
    if platform in ("onnxruntime", "python") and contract.postprocessing.nms == "trt":
        raise UserError(f"{path.name} ends in EfficientNMS_TRT, a TensorRT plugin that onnxruntime cannot run: export "
                        "with --nms onnx or --nms none, or build a TensorRT engine from it (--platform tensorrt)")
    if platform == "tensorrt" and device != "gpu":
        raise UserError("a TensorRT plan runs on a GPU only: drop --device cpu")
    if platform == "python" and device != "cpu":
        raise UserError("the python platform runs onnxruntime on the CPU inside the python backend: use --platform "
                        "onnxruntime for the GPU")
    if options.accelerator != "none" and (platform != "onnxruntime" or device != "gpu"):
        raise UserError("--accelerator tensorrt is onnxruntime's TensorRT execution accelerator: it needs "
                        "--platform onnxruntime --device gpu")
    if (options.accelerator_fp16 or options.engine_cache) and options.accelerator == "none":
        raise UserError("--accelerator-fp16 and --engine-cache configure the TensorRT accelerator: add --accelerator tensorrt")
    if options.onnxruntime_threads and platform == "tensorrt":
        raise UserError("--threads sets onnxruntime's threads; a TensorRT plan has none")
    if options.engine_cache is not None and not options.engine_cache.startswith("/"):
        raise UserError(f"--engine-cache must be an absolute path inside the server's container, got '{options.engine_cache}'")
    if not contract.dynamic_batch:
        fixed = contract.tensor(spec.INPUT_IMAGES).shape[0]
        raise UserError(f"{path.name} has a fixed batch of {fixed}: Triton batching needs a dynamic batch axis; "
                        "re-export it without --static-batch")
    if isinstance(options.serve_size, tuple) and contract.preprocessing.input_hw is not None \
            and tuple(options.serve_size) != tuple(contract.preprocessing.input_hw):
        hw = contract.preprocessing.input_hw
        raise UserError(f"{path.name} has a fixed input of {hw[0]}x{hw[1]}: --serve-size can only choose the size of a "
                        "graph exported with --dynamic-hw")


def serving_contract(contract: GraphContract, options: RepositoryOptions) -> tuple[GraphContract, list[str]]:
    """The contract the repository serves (its ``input_hw`` fixed unless ``--serve-size dynamic``) and notes to print.

    A graph with a fixed input size is served at that size. A dynamic-size graph is letterboxed into
    ``options.serve_size`` or, by default, its test scale's short x long edge rounded up to the pad divisor
    (800 x 1344 for (1333, 800)); pictures keep their aspect ratio and are padded (docs/contract.md). With
    ``SERVE_DYNAMIC`` every picture keeps its own padded size and the note says that batching is defeated.
    """
    pre = contract.preprocessing
    if pre.input_hw is not None:
        return contract, []
    if options.serve_size == SERVE_DYNAMIC:
        return contract, ["the graph has a dynamic input size and --serve-size dynamic keeps it: Triton's dynamic "
                          "batcher joins only requests of equal shape, and each picture is padded to its own size, so "
                          "requests are rarely batched; serve at a fixed size (--serve-size HxW, the default) to batch"]
    if isinstance(options.serve_size, tuple):
        hw = options.serve_size
    else:
        up = lambda v: -(-int(v) // pre.pad_divisor) * pre.pad_divisor  # noqa: E731
        hw = (up(min(pre.test_scale)), up(max(pre.test_scale)))
    served = dataclasses.replace(contract, preprocessing=dataclasses.replace(pre, input_hw=(int(hw[0]), int(hw[1]))))
    note = (f"the graph has a dynamic input size: pictures are letterboxed into {hw[0]}x{hw[1]} so that Triton can "
            "batch requests (kept aspect ratio, zero padding; --serve-size HxW to choose, --serve-size dynamic to keep "
            "per-picture sizes, which defeats batching)")
    return served, [note]
