"""The precision policy of ``gflv2-deploy build``: which ONNX an engine of a given precision is built from.

On strongly typed runtimes (TensorRT 11, TensorRT-RTX) the ONNX decides the engine's precision
(deploy_landscape §4), so ``build_from_onnx`` converts first when asked for more than the ONNX carries:
- fp16 from an fp32 ONNX: ``export.fp16.convert_fp16`` (deterministic, needs no data) to
  ``<engine stem>.fp16.onnx`` beside the engine, built instead; the manifest's recipe names the source
  ONNX. The same happens on TensorRT 10, so every FP16 engine keeps the head tail fp32.
- int8 from an fp32 ONNX: quantised first when calibration images are given (``target tensorrt``, to
  ``<engine stem>.int8.onnx``); without them it fails with the exact ``quantize`` command to run,
  because INT8 needs images and a choice of method that should not be silent.
- an INT8 ONNX quantised for onnxruntime (uint8 activations) is refused with the command that
  re-quantises it for TensorRT.
- a foreign ONNX (no gflv2-deploy contract in its metadata) cannot be converted, since both conversions
  keep the head tail of a gflv2-deploy graph in float: it builds at the precision it carries, and the
  log says the engine carries no I/O contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gflv2_deploy.engine.profiles import Profile, complete_shapes
from gflv2_deploy.errors import UserError

__all__ = ["PRECISION_CHOICES", "build_from_onnx", "converted_onnx_path"]

PRECISION_CHOICES = ("fp32", "fp16", "int8")


def converted_onnx_path(out: Path, precision: str) -> Path:
    """``run/m.engine`` -> ``run/m.int8.onnx``; an engine stem already ending in ``.int8`` is not doubled."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    stem = stem.removesuffix(f".{precision}")
    return out.with_name(f"{stem}.{precision}.onnx")


def build_from_onnx(onnx: Path, out: Path, *, precision: str | None, runtime: str, shapes: dict[str, Profile],
                    workspace_mib: int | None = None, timing_cache: Path | None = None,
                    rtx_targets: list[str] | None = None, calib_data: Path | None = None, calib_images: int = 256,
                    method: str = "max", log: Callable[[str], None] = lambda m: None,
                    plugin_libs: list[Path] | None = None) -> dict[str, Any]:
    """Resolve the precision policy of the module docstring, convert the ONNX if needed, build; returns the manifest.

    precision: fp32 | fp16 | int8, or None for what the ONNX carries. shapes: input name -> (min, opt, max),
    completed by ``profiles.complete_shapes`` before anything is converted or built. plugin_libs: plugin libraries
    loaded before parsing (``build_engine``).
    """
    from gflv2_deploy.engine import build_engine
    from gflv2_deploy.engine.onnx_info import inspect_onnx

    summary = inspect_onnx(onnx)
    detected = summary.detected_precision
    wanted = precision or detected
    if wanted not in PRECISION_CHOICES:
        raise UserError(f"unknown precision {wanted!r}: choose fp32, fp16 or int8")
    profiles = complete_shapes(summary, shapes)  # user mistakes in --shapes surface before any conversion
    recipe = summary.contract.precision.recipe if summary.contract else None
    record = dict(recipe or {"mode": detected})
    if summary.contract is None:
        _check_foreign(onnx, wanted, detected)
        log(f"note: {onnx.name} carries no gflv2-deploy contract, so neither does the engine: its manifest records the "
            "graph's inputs and outputs, but gflv2-deploy runners cannot tell how to preprocess or decode it")
    source = onnx
    if wanted == "int8" and detected == "int8" and record.get("target") == "onnxruntime":
        fp32_source = record.get("source_onnx", "<model>.prenms.onnx")
        raise UserError(
            f"{onnx.name} was quantised for onnxruntime (uint8 activations), which TensorRT cannot import: quantise the "
            f"fp32 ONNX for TensorRT with `gflv2-deploy quantize {fp32_source} --int8 --target tensorrt --calib-data DIR "
            f"--out {converted_onnx_path(Path(fp32_source), 'int8').name}` and build that"
        )
    if wanted != detected and detected == "fp32":
        converted = converted_onnx_path(out, wanted)
        if wanted == "fp16":
            from gflv2_deploy.export.fp16 import convert_fp16

            result = convert_fp16(onnx, converted)
        else:
            if calib_data is None:
                raise UserError(
                    f"--int8 needs a Q/DQ ONNX and {onnx.name} is fp32: quantise it first with `gflv2-deploy quantize "
                    f"{onnx} --int8 --target tensorrt --calib-data DIR --out {converted}` and build that, or give "
                    f"--calib-data DIR here to do both"
                )
            from gflv2_deploy.export.quantize import quantize_int8

            result = quantize_int8(onnx, converted, calib_data=calib_data, calib_images=calib_images, method=method,
                                   target="tensorrt")
        log(f"converted {onnx} to {wanted}: {converted} ({result.seconds:.1f} s)")
        record = {**result.precision, "auto_converted_by": "gflv2-deploy build"}
        source = converted
        summary = inspect_onnx(source)
    return build_engine(source, out, precision=wanted, runtime=runtime, shapes=profiles,
                        workspace_mib=workspace_mib, timing_cache=timing_cache, recipe=record, rtx_targets=rtx_targets,
                        plugin_libs=plugin_libs)


def _check_foreign(onnx: Path, wanted: str, detected: str) -> None:
    """A graph without our contract builds only at the precision it carries: say so, and what to do instead."""
    if wanted == detected:
        return
    raise UserError(
        f"{onnx.name} carries no gflv2-deploy contract (it was not written by `gflv2-deploy export`), so build cannot "
        f"convert it from {detected} to {wanted}: the conversion keeps the head tail of a gflv2-deploy graph in float and "
        f"cannot find it in a foreign graph; build it at its own precision (--{detected}), or convert it to {wanted} with "
        "the tools of its authors and build that file"
    )
