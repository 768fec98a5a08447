"""The sidecar manifest written beside every engine, and the checks a loader runs on it.

An engine file is TensorRT's plan, byte for byte (no header, so trtexec and C++ loaders read it
as is). Everything else lives in ``<engine path>.json`` (``model.plan`` -> ``model.plan.json``):

```
format, format_version       "gflv2-deploy/engine-manifest", 1
tool                         {"name": "gflv2-deploy", "version"}
created                      UTC time, ISO 8601
engine                       {"file", "sha256", "bytes"}
runtime                      {"flavour": "tensorrt" | "tensorrt-rtx", "version", "major"}
cuda                         {"runtime_version": "13.0"}: the CUDA runtime of the build (cuda-python); null when
                             unknown. The C++ runtime refuses the engine under another CUDA major or an older driver
target                       TensorRT: {"kind": "gpu", "gpu_name", "compute_capability": "8.6"}
                             RTX: {"kind": "aot", "compute_capabilities": ["8.6", ...], "default": bool}
precision                    "fp32" | "fp16" | "int8"
recipe                       caller's dict (excluded nodes, calibration method, calib set hash, ...)
onnx                         {"file" (relative to the manifest's folder), "sha256", "external_data": {file: sha256}, "opset",
                              "detected_precision", "plugin_ops": [...]}
inputs                       [{"name", "dtype", "shape" (-1 = dynamic), "profile": {"min","opt","max"}}]
outputs                      [{"name", "dtype", "shape"}]
build                        {"workspace_mib", "timing_cache", "timing_cache_status" (created / loaded /
                              rejected / unsupported, null without a cache file), "plugins_initialised",
                              "strongly_typed", "network_flags", "builder_flags", "seconds"}
plugin_libraries             [{"path" (absolute), "sha256", "bytes"}]: plugin libraries loaded before parsing; a
                             runner loads them before deserialising (``check_plugin_libraries``)
contract                     the graph contract (docs/contract.md) of the engine: the ONNX's, with
                             preprocessing.input_hw set when the engine has a fixed input size;
                             null for a foreign ONNX
```
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

from gflv2_deploy.contract import GraphContract, check_schema
from gflv2_deploy.engine.onnx_info import OnnxSummary
from gflv2_deploy.engine.trt_api import DeviceInfo, RuntimeInfo
from gflv2_deploy.errors import UserError
from gflv2_deploy.hashing import file_sha256

MANIFEST_FORMAT = "gflv2-deploy/engine-manifest"
MANIFEST_VERSION = 2  # 2: the typed graph contract replaced "spec", "nms", "preprocessing"


def manifest_path(engine_path: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``engine_path`` lives: the engine path with ``.json`` appended."""
    return Path(os.fspath(engine_path) + ".json")


def tool_version() -> str:
    """The installed gflv2-deploy version (``"0+unknown"`` when running from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gflv2-deploy")
    except PackageNotFoundError:
        return "0+unknown"


def make_manifest(
    *,
    engine_path: str | os.PathLike[str],
    engine_sha256: str,
    engine_bytes: int,
    runtime: RuntimeInfo,
    target: Mapping[str, Any],
    precision: str,
    recipe: Mapping[str, Any] | None,
    onnx: OnnxSummary,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    build: Mapping[str, Any],
    contract: GraphContract | None = None,
    plugin_libraries: list[dict[str, Any]] | None = None,
    cuda_runtime: str | None = None,
) -> dict[str, Any]:
    """Assemble the manifest dict (layout in the module docstring); JSON-serialisable.

    cuda_runtime: the CUDA runtime version of the build (``trt_api.cuda_runtime_version()``), None when unknown.

    Raises UserError when ``recipe`` is not JSON-serialisable.
    """
    recipe_dict = dict(recipe or {})
    try:
        json.dumps(recipe_dict)
    except (TypeError, ValueError) as exc:
        raise UserError(f"the precision recipe must be JSON-serialisable: {exc}") from exc
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "tool": {"name": "gflv2-deploy", "version": tool_version()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "engine": {"file": Path(engine_path).name, "sha256": engine_sha256, "bytes": int(engine_bytes)},
        "runtime": {"flavour": runtime.flavour, "version": runtime.version, "major": runtime.major},
        "cuda": {"runtime_version": cuda_runtime} if cuda_runtime else None,
        "target": dict(target),
        "precision": precision,
        "recipe": recipe_dict,
        "onnx": {
            "file": onnx_path_from(engine_path, onnx.path),
            "sha256": onnx.sha256,
            "external_data": dict(onnx.external_data),
            "opset": onnx.opset,
            "detected_precision": onnx.detected_precision,
            "plugin_ops": sorted({p.op_type for p in onnx.plugin_nodes}),
        },
        "inputs": inputs,
        "outputs": outputs,
        "build": dict(build),
        "plugin_libraries": list(plugin_libraries or []),
        "contract": _checked(contract.to_dict()) if contract is not None else None,
    }


def _checked(contract: dict[str, Any]) -> dict[str, Any]:
    check_schema(contract)
    return contract


def manifest_contract(manifest: Mapping[str, Any], source: str = "manifest") -> GraphContract | None:
    """The engine's graph contract from its manifest, None for an engine of a foreign ONNX."""
    data = manifest.get("contract")
    return None if data is None else GraphContract.from_dict(data, source)


def engine_contract(contract: GraphContract, inputs: list[dict[str, Any]]) -> GraphContract:
    """``contract`` for an engine built with ``inputs`` (manifest entries): a fixed images H x W (the profile's
    min == max) becomes ``preprocessing.input_hw``, so pictures are letterboxed into it."""
    import dataclasses

    images = next((i for i in inputs if i["name"] == "images"), None)
    if images is None:
        return contract
    profile = images.get("profile") or {}
    lo, hi = profile.get("min"), profile.get("max")
    axes = contract.preprocessing.hw_axes  # (2, 3) for N x 3 x H x W, (1, 2) for uint8 N x H x W x 3
    if lo and hi and all(lo[a] == hi[a] for a in axes):
        hw = (int(lo[axes[0]]), int(lo[axes[1]]))
    elif all(int(images["shape"][a]) > 0 for a in axes):
        hw = (int(images["shape"][axes[0]]), int(images["shape"][axes[1]]))
    else:
        return contract
    return dataclasses.replace(contract, preprocessing=dataclasses.replace(contract.preprocessing, input_hw=hw))


def read_manifest(engine_path: str | os.PathLike[str], *, verify_engine: bool = True) -> dict[str, Any]:
    """Load the manifest beside ``engine_path``.

    With ``verify_engine`` the engine file's SHA-256 must equal the recorded one (an engine
    replaced without its manifest is refused). Raises UserError with what to do on any problem.
    """
    engine = Path(engine_path)
    path = manifest_path(engine)
    if not path.is_file():
        raise UserError(
            f"no manifest beside {engine} (expected {path}): rebuild the engine with `gflv2-deploy build`, "
            f"which writes both"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable manifest ({exc}): rebuild the engine") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a gflv2-deploy engine manifest: rebuild the engine")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise UserError(
            f"{path} has manifest format {manifest.get('format_version')}, this gflv2-deploy reads "
            f"{MANIFEST_VERSION}: rebuild the engine with this version"
        )
    if verify_engine:
        if not engine.is_file():
            raise UserError(f"engine file not found: {engine}")
        recorded = manifest.get("engine", {}).get("sha256")
        if file_sha256(engine) != recorded:
            raise UserError(
                f"{engine} does not match its manifest {path.name} (the engine was replaced or changed): "
                f"rebuild the engine with `gflv2-deploy build`"
            )
    return manifest


def plugin_library_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest entry of a plugin library: absolute path, SHA-256 and size."""
    lib = Path(path).resolve()
    return {"path": str(lib), "sha256": file_sha256(lib), "bytes": lib.stat().st_size}


def check_plugin_libraries(manifest: Mapping[str, Any]) -> list[Path]:
    """The plugin libraries an engine needs (load them before deserialising), each checked against the manifest.

    Raises UserError when one is missing or its SHA-256 differs from the one recorded at build time (a plugin
    rebuilt since may not match the serialised plugin fields, or the kernels the engine was timed with).
    """
    paths = []
    for entry in manifest.get("plugin_libraries") or []:
        lib = Path(entry.get("path", ""))
        if not lib.is_file():
            raise UserError(
                f"the engine needs the plugin library {lib}, which is missing: rebuild it (`bash scripts/build_cpp.sh`) "
                f"and then the engine (`gflv2-deploy build ... --plugin-lib {lib}`)"
            )
        if file_sha256(lib) != entry.get("sha256"):
            raise UserError(
                f"the plugin library {lib} changed since the engine was built (SHA-256 differs from the manifest): "
                f"rebuild the engine with `gflv2-deploy build ... --plugin-lib {lib}`"
            )
        paths.append(lib)
    return paths


def check_manifest(manifest: Mapping[str, Any], runtime_info: RuntimeInfo, device_info: DeviceInfo | None) -> None:
    """Refuse an engine that ``runtime_info`` on ``device_info`` cannot load.

    Checks the TensorRT flavour and exact version (plans are not portable across versions) and,
    when ``device_info`` is given, the GPU's compute capability against the build target. Raises
    UserError naming both sides and how to rebuild; returns None when the engine fits.
    """
    built = manifest.get("runtime", {})
    built_label = f"{_flavour_label(built.get('flavour'))} {built.get('version')}"
    hint = _rebuild_hint(manifest, runtime_info)
    if built.get("flavour") != runtime_info.flavour:
        raise UserError(f"engine was built with {built_label}, but this runtime is {runtime_info.label}: {hint}")
    if built.get("version") != runtime_info.version:
        raise UserError(
            f"engine was built with {built_label}, but this runtime is {runtime_info.label} "
            f"(TensorRT plans only load in the version that built them): {hint}"
        )
    if device_info is None:
        return
    target = manifest.get("target", {})
    cc = device_info.compute_capability
    if target.get("kind") == "gpu":
        if target.get("compute_capability") != cc:
            raise UserError(
                f"engine was built for {target.get('gpu_name')} (compute capability "
                f"{target.get('compute_capability')}), but this GPU is {device_info.name} ({cc}): {hint}"
            )
    elif target.get("kind") == "aot":
        ccs = list(target.get("compute_capabilities", []))
        if "current" in ccs:
            ccs = [target.get("built_on_compute_capability")] if target.get("built_on_compute_capability") else []
            if not ccs:
                return  # built for "the GPU it was built on", which was not recorded: nothing to compare
        if cc not in ccs:
            raise UserError(
                f"engine was built for compute capabilities {', '.join(map(str, ccs))}, but this GPU is "
                f"{device_info.name} ({cc}): {hint}"
            )
    else:
        raise UserError(f"manifest has an unknown build target {target!r}: {hint}")


def onnx_path_from(engine_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str]) -> str:
    """``onnx_path`` relative to the engine's (and manifest's) folder, so the record holds wherever both move
    together and whatever the current folder was at build time; absolute when no relative path exists."""
    try:
        return Path(os.path.relpath(Path(onnx_path).resolve(), Path(engine_path).resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(Path(onnx_path).resolve())


def _flavour_label(flavour: Any) -> str:
    return {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}.get(str(flavour), str(flavour))


def _rebuild_hint(manifest: Mapping[str, Any], runtime_info: RuntimeInfo) -> str:
    onnx_file = manifest.get("onnx", {}).get("file", "<model.onnx>")
    precision = manifest.get("precision", "fp32")
    return (
        f"rebuild the engine on this machine from {onnx_file} (relative to the engine's folder) "
        f"(`gflv2-deploy build {onnx_file} --runtime {runtime_info.flavour} --precision {precision}`)"
    )
