"""The one place that knows TensorRT module names and the differences between their versions.

Two flavours are supported:

* ``"tensorrt"``: NVIDIA TensorRT 10.x (weakly typed builds with ``BuilderFlag.FP16`` / ``INT8``)
  and 11.x (always strongly typed; precision comes from the ONNX). Module ``tensorrt``.
  Needs a GPU to build: the engine targets the GPU it was built on.
* ``"tensorrt-rtx"``: TensorRT for RTX (module ``tensorrt_rtx``, wheel ``tensorrt-rtx-cu13``).
  Always strongly typed; builds ahead of time on the CPU, without a GPU, for a list of compute
  capabilities (default: the portable Ampere-and-later set); no timing cache (a deprecated no-op
  since RTX 1.2); its plugin library holds no NMS plugin.

Nothing is imported at module import time: ``load_runtime`` imports the backend when asked.
Everything else in ``gflv2_deploy.engine`` goes through the helpers below instead of testing
versions itself.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, Mapping, Sequence

from gflv2_deploy.errors import MissingDependencyError, UserError

Flavour = Literal["tensorrt", "tensorrt-rtx"]
FLAVOURS: tuple[str, ...] = ("tensorrt", "tensorrt-rtx")

_MODULE_NAMES: dict[str, str] = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
_EXTRAS: dict[str, str] = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt-rtx"}
_LABELS: dict[str, str] = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeInfo:
    """An imported TensorRT flavour and what its version can do.

    ``strongly_typed_only``: the builder takes its precision from the network's tensor types
    (TensorRT >= 11 and every TensorRT-RTX); ``has_precision_flags``: the builder has
    ``BuilderFlag.FP16`` / ``INT8`` (TensorRT 10).
    """

    flavour: Flavour
    module: ModuleType = field(repr=False, compare=False)
    version: str
    major: int
    strongly_typed_only: bool
    has_precision_flags: bool

    @property
    def label(self) -> str:
        """Human-readable name and version, e.g. ``"TensorRT-RTX 1.7.1.116"``."""
        return f"{_LABELS[self.flavour]} {self.version}"

    @property
    def builds_ahead_of_time(self) -> bool:
        """True when engines are built for a list of compute capabilities without a GPU (RTX)."""
        return self.flavour == "tensorrt-rtx"

    @property
    def supports_timing_cache(self) -> bool:
        """True when the builder's timing cache does something (RTX: deprecated no-op)."""
        return self.flavour == "tensorrt"


def extra_of(flavour: str) -> str:
    """The pip extra that installs ``flavour`` (and cuda-python with it): ``gflv2-deploy[<extra>]``."""
    return _EXTRAS.get(flavour, "tensorrt")


@dataclass(frozen=True)
class DeviceInfo:
    """A CUDA device as an engine cares about it: name and compute capability (``"8.6"``)."""

    name: str
    compute_capability: str


def load_runtime(kind: str, purpose: str = "Building") -> RuntimeInfo:
    """Import the TensorRT flavour ``kind`` (``"tensorrt"`` or ``"tensorrt-rtx"``).

    Raises MissingDependencyError naming the extra to install when the module is absent or
    cannot load its libraries (its message starts "<purpose> TensorRT engines needs ..."), and
    UserError for an unknown kind or a TensorRT older than 10.
    """
    if kind not in _MODULE_NAMES:
        raise UserError(f"unknown TensorRT runtime {kind!r}: choose one of {', '.join(FLAVOURS)}")
    module_name = _MODULE_NAMES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # also raised when the module exists but its .so files do not load
        _log.debug("importing %s failed: %s", module_name, exc)
        raise MissingDependencyError(module_name, _EXTRAS[kind], f"{purpose} {_LABELS[kind]} engines") from exc
    version = str(getattr(module, "__version__", "0"))
    major = _major(version)
    if kind == "tensorrt" and major < 10:
        raise UserError(
            f"TensorRT {version} is too old: gflv2-deploy needs TensorRT 10 or newer "
            f"(pip install 'gflv2-deploy[tensorrt]')"
        )
    rtx = kind == "tensorrt-rtx"
    return RuntimeInfo(
        flavour="tensorrt-rtx" if rtx else "tensorrt",
        module=module,
        version=version,
        major=major,
        strongly_typed_only=rtx or major >= 11,
        has_precision_flags=not rtx and major == 10,
    )


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


# --- logging -----------------------------------------------------------------------------------


class CapturedLog:
    """What the process's TensorRT logger collected: error lines (kept for the user-facing message).

    The logger is shared by every builder, runtime and parser of one flavour, so a caller takes a
    ``mark()`` before its TensorRT calls and reads only its own errors with ``since(mark)``.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def mark(self) -> int:
        """Position to pass to ``since``: the number of errors collected so far."""
        return len(self.errors)

    def since(self, mark: int) -> list[str]:
        """Errors collected after ``mark``."""
        return self.errors[mark:]


_LOGGERS: dict[str, tuple[Any, CapturedLog]] = {}


def shared_logger(rt: RuntimeInfo) -> tuple[Any, CapturedLog]:
    """The one TensorRT ``ILogger`` of this process for ``rt``'s flavour, and the CapturedLog it fills.

    TensorRT keeps a single logger per process: the one given to the first Builder / Runtime is
    used by all later ones (a different logger passed later is ignored, with a warning). So every
    builder, parser and runner here shares one, created on first use. It keeps errors and forwards
    warnings to ``logging``; INFO and VERBOSE messages are dropped.
    """
    if rt.flavour not in _LOGGERS:
        _LOGGERS[rt.flavour] = _create_logger(rt)
    return _LOGGERS[rt.flavour]


def _create_logger(rt: RuntimeInfo) -> tuple[Any, CapturedLog]:
    trt = rt.module
    captured = CapturedLog()
    severity = trt.ILogger.Severity
    # Severity values compare only as ints (the enum itself refuses <).
    error_level = int(severity.ERROR)
    warning_level = int(severity.WARNING)

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            level = int(sev)
            if level <= error_level:
                captured.errors.append(msg)
            elif level == warning_level:
                _log.warning("%s: %s", rt.label, msg)

    return _Logger(), captured


# --- builder set-up ----------------------------------------------------------------------------


def init_standard_plugins(rt: RuntimeInfo, logger: Any) -> bool:
    """Register the flavour's standard plugin library (``init_libnvinfer_plugins``), if it has one.

    Must happen before parsing an ONNX with plugin nodes and before deserialising such an engine.
    Returns True when the call exists and succeeded.
    """
    init = getattr(rt.module, "init_libnvinfer_plugins", None)
    if init is None:
        return False
    return bool(init(logger, ""))


def load_plugin_library(rt: RuntimeInfo, path: str | os.PathLike[str]) -> Any:
    """Load a plugin shared library into the runtime's registry (``IPluginRegistry::loadLibrary``: the library's
    ``getCreators`` entry point, as trtexec ``--dynamicPlugins``). Must happen before parsing or deserialising.

    Returns the registry's handle (keep it alive while the library is used). Raises UserError when it fails.
    """
    registry = rt.module.get_plugin_registry()
    try:
        handle = registry.load_library(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - the bindings raise their own types
        raise UserError(f"{rt.label} could not load the plugin library {path}: {exc}") from None
    if handle is None:
        raise UserError(f"{rt.label} could not load the plugin library {path} (built for another TensorRT major version?)")
    return handle


def plugin_creators(rt: RuntimeInfo) -> list[tuple[str, str, str]]:
    """(name, version, namespace) of every plugin creator now in the registry."""
    registry = rt.module.get_plugin_registry()
    # all_creators_recursive (TensorRT >= 10.10) also lists V3 creators; all_creators is the V2 list.
    creators = getattr(registry, "all_creators_recursive", None) or getattr(registry, "all_creators", [])
    return sorted(
        (str(getattr(c, "name", "?")), str(getattr(c, "plugin_version", "?")), str(getattr(c, "plugin_namespace", "")))
        for c in creators
    )


def has_plugin(rt: RuntimeInfo, name: str, version: str = "1", namespace: str = "") -> bool:
    """True when the registry holds a creator for plugin ``name`` / ``version`` / ``namespace``."""
    try:
        return rt.module.get_plugin_registry().get_creator(name, version, namespace) is not None
    except Exception:  # noqa: BLE001 - some versions raise instead of returning None when absent
        return False


@dataclass(frozen=True)
class TypingPlan:
    """How one build types its network: strongly or weakly typed, and the flags (by name) that say so."""

    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members for Builder.create_network
    builder_flags: tuple[str, ...]  # BuilderFlag members for the builder config

    def to_dict(self) -> dict[str, Any]:
        return {"strongly_typed": self.strongly_typed, "network_flags": list(self.network_flags),
                "builder_flags": list(self.builder_flags)}


def plan_typing(rt: RuntimeInfo, onnx_precision: str, precision: str) -> TypingPlan:
    """The typing of a ``precision`` build of an ONNX whose own tensors are ``onnx_precision``.

    TensorRT 11 and RTX: always strongly typed, nothing to set (EXPLICIT_BATCH is gone and
    STRONGLY_TYPED is deprecated and ignored there).
    TensorRT 10, an ONNX that already carries its precision (fp16 tensors, or Q/DQ nodes): STRONGLY_TYPED
    and no precision flags, so TensorRT runs exactly the types of the graph whose accuracy was measured
    in onnxruntime (the layers outside Q/DQ stay fp32, as on TensorRT 11 / RTX) instead of picking fp16
    per layer; the path NVIDIA recommends for explicitly quantized (Q/DQ) models.
    TensorRT 10, an fp32 ONNX: weakly typed; ``BuilderFlag.FP16`` when fp16 is asked for (TensorRT then
    chooses fp16 layer by layer). EXPLICIT_BATCH is never set: every network is explicit-batch since
    TensorRT 10.0, which ignores the flag (deprecated), and TensorRT 11 / RTX removed it.
    ``precision`` is assumed checked against the ONNX (``build.check_precision``).
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"unknown precision {precision!r}: choose fp32, fp16 or int8")
    if rt.strongly_typed_only:
        return TypingPlan(True, (), ())
    if onnx_precision != "fp32":
        return TypingPlan(True, ("STRONGLY_TYPED",), ())
    return TypingPlan(False, (), ("FP16",) if precision == "fp16" else ())


def network_flag_bits(rt: RuntimeInfo, names: Sequence[str]) -> int:
    """The ``create_network`` bit mask for the named NetworkDefinitionCreationFlag members."""
    flag_enum = rt.module.NetworkDefinitionCreationFlag
    return sum(1 << int(getattr(flag_enum, name)) for name in names)


def builder_flags(rt: RuntimeInfo, names: Sequence[str]) -> list[Any]:
    """The named ``BuilderFlag`` members."""
    return [getattr(rt.module.BuilderFlag, name) for name in names]


def set_workspace(rt: RuntimeInfo, config: Any, workspace_mib: int) -> None:
    """Limit the builder's scratch memory to ``workspace_mib`` MiB."""
    config.set_memory_pool_limit(rt.module.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)


TimingCacheStatus = Literal["unsupported", "created", "loaded", "rejected"]


def load_timing_cache(rt: RuntimeInfo, config: Any, data: bytes) -> TimingCacheStatus:
    """Attach a timing cache built from ``data`` (empty: a new cache) to the builder ``config``.

    Returns "unsupported" (RTX: nothing attached), "created" (empty ``data``), "loaded", or
    "rejected" when ``IBuilderConfig.set_timing_cache`` returns False: the file was written by
    another TensorRT version or GPU (``ignore_mismatch=False``), so the build runs without it.
    """
    if not rt.supports_timing_cache:
        return "unsupported"
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):  # ignore_mismatch=False: refuse another GPU's
        return "rejected"
    return "loaded" if data else "created"


def add_optimization_profile(config: Any, profile: Any, shapes: Mapping[str, Any], log: CapturedLog | None = None) -> int:
    """Add ``profile`` to the builder ``config`` and return its index.

    ``IBuilderConfig::addOptimizationProfile`` returns -1 for an invalid profile (min > opt, an input
    without shapes); that raises UserError naming the shapes and TensorRT's last error from ``log``.
    """
    mark = log.mark() if log is not None else 0
    index = int(config.add_optimization_profile(profile))
    if index < 0:
        given = "; ".join(f"{name} {[list(s) for s in dims]}" for name, dims in shapes.items()) or "none"
        detail = next((e for e in (log.since(mark) if log is not None else []) if "Profile" in e or "profile" in e), "")
        raise UserError(f"TensorRT refused the optimisation profile (min, opt, max: {given})"
                        f"{f' ({detail})' if detail else ''}: give 0 < min <= opt <= max for every dynamic input")
    return index


def dump_timing_cache(rt: RuntimeInfo, config: Any) -> bytes | None:
    """The builder config's timing cache, serialised; None where unsupported."""
    if not rt.supports_timing_cache:
        return None
    cache = config.get_timing_cache()
    return None if cache is None else bytes(cache.serialize())


# --- compute-capability targets (RTX ahead-of-time builds) ---------------------------------------


def rtx_available_targets(rt: RuntimeInfo) -> list[str]:
    """Compute capabilities the RTX builder can target, as ``"8.6"`` strings (from its enum)."""
    out = []
    for name in rt.module.ComputeCapability.__members__:
        if name.startswith("SM"):
            out.append(_sm_to_cc(name))
    return out


def rtx_default_targets(rt: RuntimeInfo) -> list[str]:
    """What an RTX engine runs on when no target is set: every target except Turing (7.5).

    TensorRT-RTX documents its default engines as portable across Ampere and later RTX GPUs;
    Turing needs an explicit 7.5 target. Hopper (9.0) is not an RTX target at all.
    """
    return [cc for cc in rtx_available_targets(rt) if cc != "7.5"]


def set_rtx_targets(rt: RuntimeInfo, config: Any, targets: Sequence[str] | None) -> list[str]:
    """Set the compute capabilities an RTX engine is built for; return them as ``"8.6"`` strings.

    ``targets``: None for the default portable set, or e.g. ``["8.6", "12.0"]``. ``"current"``
    (alone) builds for the GPU in this machine, which needs a GPU and a driver.
    """
    if not rt.builds_ahead_of_time:
        raise UserError(f"compute-capability targets are for TensorRT-RTX only, not {rt.label}")
    if not targets:
        return rtx_default_targets(rt)
    enum = rt.module.ComputeCapability
    if list(targets) == ["current"]:
        config.num_compute_capabilities = 1
        config.set_compute_capability(enum.CURRENT, 0)
        return ["current"]
    available = rtx_available_targets(rt)
    values = []
    for cc in targets:
        if cc not in available:
            raise UserError(
                f"{rt.label} cannot build for compute capability {cc!r}: "
                f"choose from {', '.join(available)} or 'current'"
            )
        values.append(getattr(enum, "SM" + cc.replace(".", "")))
    config.num_compute_capabilities = len(values)
    for index, value in enumerate(values):
        if not config.set_compute_capability(value, index):
            raise UserError(f"{rt.label} refused compute capability {targets[index]}")
    return list(targets)


def _sm_to_cc(name: str) -> str:
    digits = name[2:]  # "SM86" -> "86", "SM120" -> "120"
    return f"{digits[:-1]}.{digits[-1]}"


# --- tensors -------------------------------------------------------------------------------------

_DTYPE_NAMES: dict[str, str] = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "FP8": "float8",
    "INT4": "int4",
    "FP4": "float4",
}


def dtype_name(dtype: Any) -> str:
    """numpy-style name (``"float32"``) of a TensorRT ``DataType``; enum integers are never stored
    because they were renumbered between major versions."""
    raw = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    return _DTYPE_NAMES.get(raw, raw.lower())


@dataclass(frozen=True)
class NetworkTensor:
    """A network input or output: name, shape (-1 for a dynamic dimension) and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    is_shape_tensor: bool = False


def network_io(network: Any) -> tuple[list[NetworkTensor], list[NetworkTensor]]:
    """Inputs and outputs of a parsed ``INetworkDefinition``."""

    def describe(tensor: Any) -> NetworkTensor:
        return NetworkTensor(
            name=str(tensor.name),
            shape=tuple(int(d) for d in tensor.shape),
            dtype=dtype_name(tensor.dtype),
            is_shape_tensor=bool(getattr(tensor, "is_shape_tensor", False)),
        )

    inputs = [describe(network.get_input(i)) for i in range(network.num_inputs)]
    outputs = [describe(network.get_output(i)) for i in range(network.num_outputs)]
    return inputs, outputs


def parser_errors(parser: Any) -> list[str]:
    """The ONNX parser's errors as one line each: node name, op type and description."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node_name = _call(err, "node_name") or "?"
        op = _call(err, "node_operator") or "?"
        desc = _call(err, "desc") or str(err)
        lines.append(f"node '{node_name}' ({op}): {desc}")
    return lines


def _call(obj: Any, method: str) -> str:
    fn = getattr(obj, method, None)
    try:
        return str(fn()) if fn is not None else ""
    except Exception:  # noqa: BLE001 - older parsers lack some accessors; the others still help
        return ""


# --- device --------------------------------------------------------------------------------------


def cuda_runtime_version() -> str | None:
    """The CUDA runtime version (``"13.0"``) cuda-python reports for this process: what an engine built here
    needs from the driver and from the runtime that loads it; None without cuda-python or when it cannot tell."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python layout
        except ImportError:
            return None
    try:
        status, version = cudart.cudaRuntimeGetVersion()
    except Exception:  # noqa: BLE001 - a broken CUDA install: the manifest records "unknown"
        return None
    if status != cudart.cudaError_t.cudaSuccess or int(version) <= 0:
        return None
    return f"{int(version) // 1000}.{int(version) % 1000 // 10}"


def query_device(index: int = 0) -> DeviceInfo | None:
    """Name and compute capability of CUDA device ``index`` via cuda-python; None without a GPU.

    Raises MissingDependencyError when cuda-python (part of the ``tensorrt`` extra) is absent.
    """
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # older cuda-python layout
        except ImportError as exc:
            raise MissingDependencyError("cuda.bindings", "tensorrt", "Querying the GPU") from exc
    try:
        status, props = cudart.cudaGetDeviceProperties(index)
    except Exception:  # noqa: BLE001 - no driver / no device: callers treat it as "no GPU"
        return None
    if status != cudart.cudaError_t.cudaSuccess:
        return None
    raw_name = props.name
    name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else str(raw_name)
    return DeviceInfo(name=name.strip("\x00").strip(), compute_capability=f"{props.major}.{props.minor}")
