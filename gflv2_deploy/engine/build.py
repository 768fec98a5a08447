"""ONNX -> TensorRT / TensorRT-RTX engine (serialized plan) plus its sidecar manifest.

The ONNX is inspected first (precision it carries, plugin nodes, metadata) so that user mistakes
fail with one clear line before TensorRT runs. Only ``_build_plan`` touches TensorRT, and all
version differences go through ``trt_api``. The plan is written atomically to ``out_path`` and
the manifest atomically to ``<out_path>.json`` (see ``manifest.py``); on any error neither file
is created or changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from gflv2_deploy.atomic import atomic_path, write_bytes_atomic, write_json_atomic
from gflv2_deploy.engine import trt_api
from gflv2_deploy.engine.manifest import engine_contract, make_manifest, manifest_path, plugin_library_record
from gflv2_deploy.engine.onnx_info import OnnxSummary, inspect_onnx
from gflv2_deploy.engine.trt_api import NetworkTensor, RuntimeInfo
from gflv2_deploy.errors import MissingDependencyError, UserError

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

Shape = Sequence[int]
ShapeRange = tuple[Shape, Shape, Shape]  # (min, opt, max)

_log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What ``_build_plan`` hands back: the serialized engine and facts read from the network."""

    data: bytes
    inputs: list[NetworkTensor]
    outputs: list[NetworkTensor]
    profile: dict[str, tuple[list[int], list[int], list[int]]]
    target: dict[str, Any]
    plugins_initialised: bool
    timing_cache_status: str | None  # trt_api.TimingCacheStatus, None when no cache file was given


def build_engine(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    precision: str = "fp32",
    runtime: str = "tensorrt",
    shapes: Mapping[str, ShapeRange] | None = None,
    workspace_mib: int | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    plugins: bool = True,
    recipe: Mapping[str, Any] | None = None,
    rtx_targets: Sequence[str] | None = None,
    plugin_libs: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Build an engine from ``onnx_path``, write it to ``out_path`` and return its manifest.

    precision: ``fp32`` | ``fp16`` | ``int8``. int8 needs Q/DQ nodes in the ONNX (there is no
      calibrator). An ONNX that carries its precision (fp16 tensors, Q/DQ nodes) is built strongly
      typed on every runtime; TensorRT 10 may also build an fp32 ONNX as fp16 (weakly typed,
      BuilderFlag.FP16). TensorRT 11 and TensorRT-RTX are strongly typed only, so there the ONNX must
      carry the precision; a mismatch raises UserError saying which ONNX to pass. The typing used
      is recorded in the manifest's ``build`` entry (``trt_api.plan_typing``).
    runtime: ``tensorrt`` | ``tensorrt-rtx``.
    shapes: input name -> (min, opt, max) shapes, e.g. ``{"images": ((1,3,320,320),
      (1,3,800,1344), (4,3,1344,1344))}``; required for every input with a dynamic dimension.
      One optimisation profile is built.
    workspace_mib: builder scratch-memory limit in MiB (None: TensorRT's default).
    timing_cache: file loaded before and saved after the build (TensorRT only; TensorRT-RTX has
      none and the option is ignored with a warning). A cache TensorRT rejects (another version or
      GPU) is reported as a warning and as ``build.timing_cache_status = "rejected"``, and left unchanged.
    plugins: register the runtime's standard plugins before parsing (needed for
      ``EfficientNMS_TRT`` nodes).
    recipe: how the ONNX got its precision (excluded nodes, calibration method, calib set hash),
      copied into the manifest.
    rtx_targets: TensorRT-RTX compute capabilities (``["8.6", "12.0"]`` or ``["current"]``);
      None builds the default portable set.
    plugin_libs: plugin shared libraries loaded into the registry before parsing (their path and SHA-256 go
      to the manifest). An ONNX with our ``GFLV2NMS_TRT`` node and no library given uses
      ``build/gflv2_nms/libgflv2_nms_trt<major>.so`` (``gflv2_deploy.nms_plugin``).

    Returns the manifest dict, also written to ``<out_path>.json``. Raises UserError (or its
    subclass MissingDependencyError) for anything the user can fix.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if workspace_mib is not None and workspace_mib <= 0:
        raise UserError(f"workspace must be a positive number of MiB, got {workspace_mib}")
    out = Path(out_path)
    if out.suffix == ".onnx":
        raise UserError(f"refusing to write an engine over an ONNX path: {out}")
    summary = inspect_onnx(onnx_path)
    rt = trt_api.load_runtime(runtime)
    if rtx_targets and not rt.builds_ahead_of_time:
        raise UserError(f"compute-capability targets apply to --runtime tensorrt-rtx only, not {rt.label}")
    check_precision(summary, precision, rt)
    _check_plugin_request(summary, plugins)
    libs = _plugin_libraries(summary, rt, plugin_libs)

    started = time.perf_counter()
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_in: bytes | None = None
    if cache_path is not None:
        if rt.supports_timing_cache:
            cache_in = cache_path.read_bytes() if cache_path.is_file() else b""
        else:
            _log.warning("%s has no timing cache; ignoring %s", rt.label, cache_path)
    typing = trt_api.plan_typing(rt, summary.detected_precision, precision)
    plan, cache_out = _build_plan(summary, rt, typing, shapes, workspace_mib, cache_in, plugins, rtx_targets, libs)
    if plan.timing_cache_status == "rejected":
        _log.warning("%s rejected the timing cache %s (written by another TensorRT version or GPU): built without it "
                     "and left the file unchanged; delete it or pass another --timing-cache to start a new one",
                     rt.label, cache_path)
    seconds = time.perf_counter() - started

    manifest = make_manifest(
        engine_path=out,
        engine_sha256=hashlib.sha256(plan.data).hexdigest(),
        engine_bytes=len(plan.data),
        runtime=rt,
        target=plan.target,
        precision=precision,
        recipe=recipe,
        onnx=summary,
        inputs=(inputs := [_io_entry(t, plan.profile.get(t.name)) for t in plan.inputs]),
        outputs=[_io_entry(t, None) for t in plan.outputs],
        contract=None if summary.contract is None else engine_contract(summary.contract, inputs),
        build={
            "workspace_mib": workspace_mib,
            "timing_cache": str(cache_path) if plan.timing_cache_status in ("created", "loaded") else None,
            "timing_cache_status": plan.timing_cache_status or ("unsupported" if cache_path is not None else None),
            "plugins_initialised": plan.plugins_initialised,
            **typing.to_dict(),
            "seconds": round(seconds, 3),
        },
        plugin_libraries=[plugin_library_record(lib) for lib in libs],
        cuda_runtime=trt_api.cuda_runtime_version(),
    )
    # Nothing is renamed into place before the build succeeded. The manifest goes first, then the
    # plan: a crash in between leaves a manifest whose engine hash check fails (read_manifest says
    # to rebuild), never a plan described by a stale manifest that still looks valid.
    with atomic_path(out) as tmp_plan:
        tmp_plan.write_bytes(plan.data)
        write_json_atomic(manifest_path(out), manifest)
    if cache_path is not None and cache_out:
        write_bytes_atomic(cache_path, cache_out)
    _log.info("built %s (%s, %s) in %.1f s", out, rt.label, precision, seconds)
    return manifest


def check_precision(summary: OnnxSummary, precision: str, rt: RuntimeInfo) -> None:
    """Refuse a requested precision that the ONNX cannot give on ``rt``.

    int8 always needs Q/DQ nodes (no calibrator). A Q/DQ ONNX is only built as int8. On strongly
    typed runtimes the ONNX's own precision must equal the request; TensorRT 10 may also build an
    fp32 ONNX as fp16 (BuilderFlag.FP16).
    """
    name = summary.path.name
    detected = summary.detected_precision
    if precision == "int8" and detected != "int8":
        raise UserError(
            f"precision int8 needs Q/DQ (QuantizeLinear/DequantizeLinear) nodes, and {name} has none: "
            f"run `gflv2-deploy quantize` first and build its output"
        )
    if detected == "int8" and precision != "int8":
        raise UserError(
            f"{name} is quantized ({summary.num_qdq_nodes} Q/DQ nodes): build it with --precision int8, "
            f"or pass the un-quantized ONNX for {precision}"
        )
    if precision == detected:
        return
    if precision == "fp16" and detected == "fp32":
        if rt.has_precision_flags:
            _refuse_weak_fp16_plugins(summary, rt)
            return  # TensorRT 10: BuilderFlag.FP16 lowers the fp32 graph
        raise UserError(
            f"{rt.label} builds strongly typed networks, so precision comes from the ONNX, and {name} "
            f"is fp32 throughout: pass the fp16 ONNX (converted by the export stage) or use --precision fp32"
        )
    # precision == "fp32", detected == "fp16"
    raise UserError(f"{name} contains fp16 tensors: build it with --precision fp16, or pass the fp32 ONNX")


# Plugins a weakly typed fp16 build may run in fp16: TensorRT picks the plugin's fp16 format when
# BuilderFlag.FP16 is set, and EfficientNMS_TRT then snaps boxes to the fp16 grid and can emit negative
# scores (NVIDIA/TensorRT#1758, #2903). A strongly typed build of the converted fp16 ONNX keeps its
# inputs float32 (explicit Casts), so that is the way out.
_FP32_ONLY_PLUGINS: frozenset[str] = frozenset({"EfficientNMS_TRT"})


def _refuse_weak_fp16_plugins(summary: OnnxSummary, rt: RuntimeInfo) -> None:
    if DEFORM_CONV_OP in summary.op_types:  # parsed into a plugin with an fp16 format (see _check_deform_conv)
        raise UserError(
            f"a weakly typed fp16 build ({rt.label}, BuilderFlag.FP16) of {summary.path.name} may run its deformable "
            f"convolutions ({DEFORM_CONV_PLUGIN} plugin) in fp16, where sampling positions in a 1333-pixel picture are "
            f"0.5-1 px apart: convert it with `gflv2-deploy quantize --fp16`, which keeps them float32, and build that ONNX"
        )
    ops = sorted({p.op_type for p in summary.plugin_nodes} & _FP32_ONLY_PLUGINS)
    if ops:
        raise UserError(
            f"a weakly typed fp16 build ({rt.label}, BuilderFlag.FP16) of {summary.path.name} may run "
            f"{', '.join(ops)} in fp16, which corrupts boxes and scores (TensorRT #1758, #2903): convert it with "
            f"`gflv2-deploy quantize --fp16 --nms trt` and build that fp16 ONNX (strongly typed, NMS inputs float32)"
        )


def _check_plugin_request(summary: OnnxSummary, plugins: bool) -> None:
    if summary.plugin_nodes and not plugins:
        ops = ", ".join(sorted({p.op_type for p in summary.plugin_nodes}))
        raise UserError(f"{summary.path.name} uses plugin ops ({ops}) but plugins were disabled: enable plugins")


def _check_shapes(
    inputs: list[NetworkTensor], shapes: Mapping[str, ShapeRange] | None
) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """Validate ``shapes`` against the network inputs; return the profile to set (lists of ints)."""
    given = dict(shapes or {})
    by_name = {t.name: t for t in inputs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise UserError(f"shapes given for unknown input(s) {', '.join(unknown)}; inputs are {', '.join(by_name)}")
    profile: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for tensor in inputs:
        dynamic = any(d < 0 for d in tensor.shape)
        if tensor.name not in given:
            if dynamic:
                raise UserError(
                    f"input '{tensor.name}' has dynamic shape {_fmt(tensor.shape)}: give its min, opt and max "
                    f"shapes for the optimisation profile"
                )
            continue
        try:
            lo, opt, hi = (list(int(d) for d in s) for s in given[tensor.name])
        except (TypeError, ValueError) as exc:
            raise UserError(f"shapes for '{tensor.name}' must be three shapes (min, opt, max): {exc}") from exc
        for label, shape in (("min", lo), ("opt", opt), ("max", hi)):
            if len(shape) != len(tensor.shape):
                raise UserError(
                    f"{label} shape {_fmt(shape)} of '{tensor.name}' has rank {len(shape)}, "
                    f"the input has rank {len(tensor.shape)} {_fmt(tensor.shape)}"
                )
            for got, want in zip(shape, tensor.shape):
                if want >= 0 and got != want:
                    raise UserError(
                        f"{label} shape {_fmt(shape)} of '{tensor.name}' contradicts its fixed shape {_fmt(tensor.shape)}"
                    )
        if not all(0 < a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise UserError(
                f"shapes of '{tensor.name}' must satisfy 0 < min <= opt <= max in every dimension: "
                f"{_fmt(lo)}, {_fmt(opt)}, {_fmt(hi)}"
            )
        profile[tensor.name] = (lo, opt, hi)
    return profile


def _build_plan(
    summary: OnnxSummary,
    rt: RuntimeInfo,
    typing: trt_api.TypingPlan,
    shapes: Mapping[str, ShapeRange] | None,
    workspace_mib: int | None,
    timing_cache: bytes | None,
    plugins: bool,
    rtx_targets: Sequence[str] | None,
    plugin_libs: Sequence[Path] = (),
) -> tuple[_Plan, bytes | None]:
    """Parse and build with TensorRT; the only function here that calls the TensorRT API."""
    trt = rt.module
    logger, captured = trt_api.shared_logger(rt)
    mark = captured.mark()
    plugins_initialised = trt_api.init_standard_plugins(rt, logger) if plugins else False
    handles = [trt_api.load_plugin_library(rt, lib) for lib in plugin_libs]  # noqa: F841 - kept alive for the build
    _check_plugins_available(summary, rt)
    _check_deform_conv(summary, rt, plugins_initialised)

    builder = trt.Builder(logger)
    network = builder.create_network(trt_api.network_flag_bits(rt, typing.network_flags))
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored beside the model are found.
    if not parser.parse_from_file(str(summary.path)):
        errors = trt_api.parser_errors(parser) or captured.since(mark) or ["no details reported"]
        raise UserError(f"{rt.label} cannot parse {summary.path.name}: " + "; ".join(errors))
    inputs, outputs = trt_api.network_io(network)
    profile_shapes = _check_shapes(inputs, shapes)

    config = builder.create_builder_config()
    for flag in trt_api.builder_flags(rt, typing.builder_flags):
        config.set_flag(flag)
    if workspace_mib is not None:
        trt_api.set_workspace(rt, config, workspace_mib)
    if any(any(d < 0 for d in t.shape) for t in inputs):
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profile_shapes.items():
            profile.set_shape(name, lo, opt, hi)
        trt_api.add_optimization_profile(config, profile, profile_shapes, captured)
    cache_status = trt_api.load_timing_cache(rt, config, timing_cache) if timing_cache is not None else None
    if rt.builds_ahead_of_time:
        targets = trt_api.set_rtx_targets(rt, config, rtx_targets)
        target: dict[str, Any] = {"kind": "aot", "compute_capabilities": targets, "default": not rtx_targets}
        if targets == ["current"]:
            target["built_on_compute_capability"] = _current_cc()
    else:
        device = trt_api.query_device()
        if device is None:
            raise UserError(f"{rt.label} builds for the GPU it runs on, and no CUDA GPU is visible here")
        target = {"kind": "gpu", "gpu_name": device.name, "compute_capability": device.compute_capability}

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(_build_failure_message(summary, rt, captured.since(mark)))
    cache_out = trt_api.dump_timing_cache(rt, config) if cache_status in ("created", "loaded") else None
    plan = _Plan(
        data=bytes(serialized),
        inputs=inputs,
        outputs=outputs,
        profile=profile_shapes,
        target=target,
        plugins_initialised=plugins_initialised,
        timing_cache_status=cache_status,
    )
    return plan, cache_out


def _plugin_libraries(summary: OnnxSummary, rt: RuntimeInfo,
                      plugin_libs: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    """The plugin libraries to load: the given ones (which must exist), else ours when the ONNX has our NMS node."""
    from gflv2_deploy import nms_plugin

    libs = [Path(p) for p in plugin_libs or []]
    for lib in libs:
        if not lib.is_file():
            raise UserError(f"plugin library not found: {lib}")
    uses_ours = any(n.op_type == nms_plugin.OP_TYPE for n in summary.plugin_nodes)
    if (libs or uses_ours) and rt.flavour == "tensorrt-rtx":
        raise UserError(
            "plugin libraries (our GFLV2NMS_TRT included) are built against TensorRT's headers, not TensorRT-RTX's "
            "ABI: build the pre-NMS ONNX for TensorRT-RTX, or use --runtime tensorrt"
        )
    if uses_ours and not libs:
        libs = [nms_plugin.trt_library_path(rt.major)]
    return libs


def _check_plugins_available(summary: OnnxSummary, rt: RuntimeInfo) -> None:
    """Refuse plugin nodes the runtime's registry cannot create, before the parser's terse error.

    The parser looks a plugin up by (op type, ``plugin_version`` attribute, ``plugin_namespace``
    attribute); since TensorRT 10.10 it also takes the namespace from the node's domain.
    """
    for node in summary.plugin_nodes:
        namespaces = {node.plugin_namespace}
        if node.domain not in ("", "ai.onnx"):
            namespaces.add(node.domain)
        if any(trt_api.has_plugin(rt, node.op_type, node.plugin_version, ns) for ns in namespaces):
            continue
        available = ", ".join(f"{n} v{v}" for n, v, _ in trt_api.plugin_creators(rt)) or "none"
        advice = (
            "build the pre-NMS ONNX (exported without NMS) for TensorRT-RTX, or build for --runtime tensorrt"
            if rt.flavour == "tensorrt-rtx"
            else "load the plugin library that provides it, or export without this node"
        )
        raise UserError(
            f"{summary.path.name} needs plugin {node.op_type} (version {node.plugin_version}, node '{node.name}'), "
            f"which {rt.label} does not provide (its plugins: {available}): {advice}"
        )


# ONNX DeformConv (deformable convolutions, opset 19): TensorRT's ONNX parser (>= 10.1, onnx-tensorrt
# importerUtils modulatedDeformableConvPluginHelper) maps it onto the ModulatedDeformConv2d plugin of the standard
# plugin library (version 2, IPluginV3, in 10.15's parser; version 1 before), with a mask of ones. TensorRT-RTX 1.7
# has neither an importer nor that plugin: its parser fails with "Plugin not found".
DEFORM_CONV_OP = "DeformConv"
DEFORM_CONV_PLUGIN = "ModulatedDeformConv2d"


def _check_deform_conv(summary: OnnxSummary, rt: RuntimeInfo, plugins_initialised: bool) -> None:
    """Refuse a DeformConv graph before parsing when the runtime's registry has no plugin to run it."""
    if DEFORM_CONV_OP not in summary.op_types:
        return
    if any(trt_api.has_plugin(rt, DEFORM_CONV_PLUGIN, version) for version in ("2", "1")):
        return
    if rt.flavour == "tensorrt-rtx":
        why = f"{rt.label} has no importer for it and no {DEFORM_CONV_PLUGIN} plugin"
    elif not plugins_initialised:
        why = f"TensorRT runs it with the {DEFORM_CONV_PLUGIN} plugin of its standard plugin library, and plugins were disabled"
    else:
        why = f"{rt.label}'s plugin registry has no {DEFORM_CONV_PLUGIN} plugin (TensorRT >= 10.1 ships it)"
    raise UserError(f"{summary.path.name} has deformable convolutions (ONNX DeformConv), but {why}: build it with "
                    f"TensorRT >= 10.1 and its standard plugins, or run the ONNX with onnxruntime (docs/models.md)")


def _build_failure_message(summary: OnnxSummary, rt: RuntimeInfo, errors: list[str]) -> str:
    detail = "; ".join(errors[-5:]) or "no details reported"
    message = f"{rt.label} could not build an engine from {summary.path.name}: {detail}"
    if "NonMaxSuppression" in summary.op_types:
        # TensorRT-RTX 1.7 parses ONNX NonMaxSuppression but has no runner for it (INMSLayer).
        message += (
            f" (the graph has an ONNX NonMaxSuppression node, which {rt.label} may not run: "
            f"build the pre-NMS ONNX and run NMS outside the engine)"
        )
    return message


def _current_cc() -> str | None:
    try:
        device = trt_api.query_device()
    except MissingDependencyError:
        return None
    return device.compute_capability if device else None


def _io_entry(tensor: NetworkTensor, profile: tuple[list[int], list[int], list[int]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": tensor.name, "dtype": tensor.dtype, "shape": list(tensor.shape)}
    if profile is not None:
        entry["profile"] = {"min": profile[0], "opt": profile[1], "max": profile[2]}
    return entry


def _fmt(shape: Sequence[int]) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape)
