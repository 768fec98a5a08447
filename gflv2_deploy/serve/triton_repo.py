"""Plan a Triton Inference Server model repository for an exported ONNX or a built engine (nothing written here).

Layout (``name`` = "gflv2" by default; ``serve.triton_write`` writes it, ``serve.triton_options`` checks the options)::

    REPO/<network>/config.pbtxt          the network: onnxruntime backend (model.onnx), TensorRT plan
    REPO/<network>/<version>/...         (model.plan + engine_manifest.json, plugins/ and README.md beside the
                                         versions), or the python backend running onnxruntime (model.py + model.onnx)
    with --ensemble, also:
    REPO/<name>_preprocess/1/model.py    encoded picture bytes -> images, img_shape, scale_factor
    REPO/<name>_postprocess/1/model.py   network outputs -> detections in picture pixels
    REPO/<name>/config.pbtxt             platform "ensemble": image -> preprocess -> network -> postprocess

The network model is ``<name>`` without an ensemble and ``<name>_network`` with one. Tensor names,
dtypes and dims come from the serving contract (the graph contract, its input size fixed for serving,
``triton_options.serving_contract``), which also travels in every config as the string parameter
``gflv2_deploy.contract`` (python models and the ``triton`` runner read it there). What an expert's config
has and why:

- dynamic batching on the network with the queue delay and no ``preferred_batch_size`` (Triton advises it
  only for TensorRT models with several optimisation profiles); the python pre/post models batch with no
  delay and no preferred sizes;
- ``instance_group`` per model (``--instances network=2,preprocess=4``): KIND_GPU for a plan and for
  onnxruntime on ``--device gpu`` (the CUDA execution provider; ``--accelerator tensorrt`` adds onnxruntime's
  TensorRT accelerator, FP16 and an engine cache optional), pinned input/output memory on the GPU;
- CUDA graphs for a plan whose profile fixes every dimension but the batch, one graph per batch size of a
  ladder, each serving the smaller batches above the previous one;
- ``model_warmup`` of the network at batch 1 and ``max_batch`` with the contract's shapes, so the first
  requests do not pay for lazy initialisation;
- ``version_policy`` latest ``--versions-served`` (1 by default).

Every config is parsed with tritonclient's ``model_config_pb2`` and checked (``triton_config.check_repository``)
before anything is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import triton_config as tc
from gflv2_deploy.serve.model_contract import ENGINE_SUFFIXES, model_contract
from gflv2_deploy.serve.pipeline import DETECTION_OUTPUTS, PICTURE_INPUT, SCALE_FACTOR
from gflv2_deploy.serve.triton_options import (  # noqa: F401  (PLATFORMS and RepositoryOptions re-exported)
    PLATFORMS,
    RepositoryOptions,
    check_options,
    resolved_device,
    resolved_platform,
    serving_contract,
)

CONTRACT_PARAMETER = "gflv2_deploy.contract"
TEMPLATES = Path(__file__).resolve().parent / "triton_models"
ENV_MODULE = "gflv2_triton_env.py"
CUDA_GRAPH_BATCHES: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass
class RepositoryPlan:
    """Everything to write, relative to the repository root: texts, files to copy, empty folders.

    ``network`` names the network model and ``version_files`` the paths (relative) of its version folder;
    ``contract`` is the serving contract; ``notes`` what the command should tell the user.
    """

    texts: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    copies: dict[str, Path] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    configs: list[Any] = field(default_factory=list)  # ModelConfig messages, checked as a set
    network: str = ""
    version: int = 1
    platform: str = ""
    device: str = ""
    contract: GraphContract | None = None
    options: RepositoryOptions | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return [c.name for c in self.configs]

    def version_paths(self) -> list[str]:
        """The files of the network's version folder (what ``--version N`` adds)."""
        prefix = f"{self.network}/{self.version}/"
        return sorted(p for p in [*self.texts, *self.blobs, *self.copies] if p.startswith(prefix))


def plan_repository(model_path: str | os.PathLike[str], options: RepositoryOptions) -> RepositoryPlan:
    """Build and check every config and file of the repository in memory (nothing is written)."""
    path = Path(model_path)
    contract = model_contract(path)
    is_engine = path.suffix in ENGINE_SUFFIXES
    manifest = _manifest(path) if is_engine else None
    check_options(path, contract, options, is_engine=is_engine,
                  engine_flavour=(manifest or {}).get("runtime", {}).get("flavour"))
    if manifest is not None:
        _check_engine_batch(manifest, options)
    served, notes = serving_contract(contract, options)
    platform = resolved_platform(options, is_engine)
    plan = RepositoryPlan(network=f"{options.name}_network" if options.ensemble else options.name,
                          version=options.version, platform=platform, device=resolved_device(platform, options),
                          contract=served, options=options, notes=notes)
    _add_network(plan, path, served, manifest, options)
    if options.ensemble:
        _add_python(plan, f"{options.name}_preprocess", "preprocess.py",
                    _preprocess_config(f"{options.name}_preprocess", served, options))
        _add_python(plan, f"{options.name}_postprocess", "postprocess.py",
                    _postprocess_config(f"{options.name}_postprocess", served, options))
        ensemble = tc.parse_config(_ensemble_config(options.name, plan.network, served, options))
        plan.configs.append(ensemble)
        plan.texts[f"{options.name}/config.pbtxt"] = tc.render_config(ensemble)
        plan.folders.append(f"{options.name}/1")  # Triton wants a version folder even for an ensemble
    tc.check_repository(plan.configs)
    return plan


def _manifest(path: Path) -> dict[str, Any]:
    from gflv2_deploy.engine.manifest import read_manifest

    return read_manifest(path)


def _images_profile(manifest: dict[str, Any]) -> dict[str, Any] | None:
    for tensor in manifest.get("inputs", []):
        if tensor.get("name") == spec.INPUT_IMAGES and tensor.get("profile"):
            return tensor["profile"]
    return None


def _check_engine_batch(manifest: dict[str, Any], options: RepositoryOptions) -> None:
    profile = _images_profile(manifest)
    if profile is not None and options.max_batch > int(profile["max"][0]):
        raise UserError(f"--max-batch {options.max_batch} exceeds the engine's optimisation profile "
                        f"(max batch {profile['max'][0]}): lower it or rebuild the engine with a larger profile")


def _cuda_graphs(manifest: dict[str, Any], options: RepositoryOptions) -> dict[str, Any] | None:
    """``optimization.cuda`` for a plan whose images profile fixes everything but the batch, else None.

    The TensorRT backend replays a graph only for the exact key it was captured for unless a lower bound is
    given: one graph per ladder size, each also serving the batches above the previous size.
    """
    profile = _images_profile(manifest)
    if profile is None or list(profile["min"][1:]) != list(profile["max"][1:]):
        return None
    sizes = sorted({b for b in CUDA_GRAPH_BATCHES if b <= options.max_batch} | {options.max_batch})
    specs, previous = [], 0
    for size in sizes:
        entry: dict[str, Any] = {"batch_size": size}
        if size - previous > 1:
            entry["graph_lower_bound"] = {"batch_size": previous + 1}
        specs.append(entry)
        previous = size
    return {"graphs": True, "graph_spec": specs}


def _batching(queue_delay_us: int) -> dict[str, Any]:
    return {"max_queue_delay_microseconds": int(queue_delay_us)}


def _common(name: str, options: RepositoryOptions, contract: GraphContract, *, role: str, kind: str = "KIND_CPU",
            queue_delay_us: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "max_batch_size": options.max_batch,
        "dynamic_batching": _batching(queue_delay_us),
        "instance_group": [{"kind": kind, "count": options.count(role)}],
        "parameters": {CONTRACT_PARAMETER: {"string_value": contract.to_json()}},
    }


def _network_io(contract: GraphContract) -> dict[str, list[dict[str, Any]]]:
    return {
        "input": [tc.tensor_entry(t.name, t.dtype, tc.contract_dims(t, contract)) for t in contract.inputs],
        "output": [tc.tensor_entry(t.name, t.dtype, tc.contract_dims(t, contract)) for t in contract.outputs],
    }


def _warmup(plan: RepositoryPlan, contract: GraphContract, options: RepositoryOptions) -> list[dict[str, Any]]:
    """Requests at batch 1 and ``max_batch`` with the served shapes (dynamic sizes: the test scale's): zero pictures
    filling the whole input, their ``img_shape`` from ``warmup/img_shape`` (Triton reads it from the model folder)."""
    import numpy as np

    pre = contract.preprocessing
    hw = pre.input_hw or tuple(-(-v // pre.pad_divisor) * pre.pad_divisor for v in (min(pre.test_scale), max(pre.test_scale)))
    inputs = {}
    for tensor in contract.inputs:
        entry: dict[str, Any] = {"data_type": tc.DTYPES[tensor.dtype], "dims": tc.contract_dims(tensor, contract)}
        if tensor.name == spec.INPUT_IMAGES:
            entry.update(dims=list(pre.images_shape(1, int(hw[0]), int(hw[1]))[1:]), zero_data=True)
        elif tensor.name == spec.INPUT_IMAGE_SHAPE:
            plan.blobs[f"{plan.network}/warmup/{tensor.name}"] = np.array(hw, np.float32).tobytes()
            entry["input_data_file"] = tensor.name
        else:
            entry["zero_data"] = True
        inputs[tensor.name] = entry
    return [{"name": f"batch_{n}", "batch_size": n, "inputs": inputs} for n in sorted({1, options.max_batch})]


def _add_network(plan: RepositoryPlan, path: Path, contract: GraphContract, manifest: dict[str, Any] | None,
                 options: RepositoryOptions) -> None:
    name, version, platform = plan.network, plan.version, plan.platform
    kind = "KIND_GPU" if plan.device == "gpu" else "KIND_CPU"
    config = {**_common(name, options, contract, role="network", kind=kind, queue_delay_us=options.queue_delay_us),
              **_network_io(contract),
              "version_policy": {"latest": {"num_versions": options.versions_served}}}
    if options.warmup:
        config["model_warmup"] = _warmup(plan, contract, options)
    optimization: dict[str, Any] = {}
    if kind == "KIND_GPU":
        optimization.update(input_pinned_memory={"enable": True}, output_pinned_memory={"enable": True})
    if platform == "onnxruntime":
        config["backend"] = "onnxruntime"
        plan.copies[f"{name}/{version}/model.onnx"] = path
        if options.accelerator == "tensorrt":
            parameters = {"precision_mode": "FP16" if options.accelerator_fp16 else "FP32"}
            if options.engine_cache:
                parameters.update(trt_engine_cache_enable="1", trt_engine_cache_path=options.engine_cache)
            optimization["execution_accelerators"] = {"gpu_execution_accelerator": [
                {"name": "tensorrt", "parameters": parameters}]}
    elif platform == "tensorrt":
        assert manifest is not None
        config["platform"] = "tensorrt_plan"
        plan.copies[f"{name}/{version}/model.plan"] = path
        plan.copies[f"{name}/{version}/engine_manifest.json"] = Path(os.fspath(path) + ".json")
        libraries = _plugin_libraries(path)
        for lib in libraries:
            plan.copies[f"{name}/plugins/{lib.name}"] = lib
        plan.texts[f"{name}/README.md"] = _engine_readme(name, path, contract, [lib.name for lib in libraries])
        graphs = _cuda_graphs(manifest, options)
        if graphs is not None:
            optimization["cuda"] = graphs
        else:
            plan.notes.append("no CUDA graphs: the engine's profile leaves the picture size dynamic")
    else:
        config["backend"] = "python"
        config["parameters"]["onnxruntime_threads"] = {"string_value": str(options.onnxruntime_threads)}
        plan.copies[f"{name}/{version}/model.onnx"] = path
        plan.texts[f"{name}/{version}/model.py"] = (TEMPLATES / "network_onnx.py").read_text()
        plan.texts[f"{name}/{version}/{ENV_MODULE}"] = (TEMPLATES / ENV_MODULE).read_text()
    if optimization:
        config["optimization"] = optimization
    message = tc.parse_config(config)
    plan.configs.append(message)
    plan.texts[f"{name}/config.pbtxt"] = tc.render_config(message)


def _add_python(plan: RepositoryPlan, name: str, template: str, config: dict[str, Any]) -> None:
    message = tc.parse_config(config)
    plan.configs.append(message)
    plan.texts[f"{name}/config.pbtxt"] = tc.render_config(message)
    plan.texts[f"{name}/1/model.py"] = (TEMPLATES / template).read_text()
    plan.texts[f"{name}/1/{ENV_MODULE}"] = (TEMPLATES / ENV_MODULE).read_text()


def _image_dims(contract: GraphContract) -> list[int]:
    return tc.contract_dims(contract.tensor(spec.INPUT_IMAGES), contract)


def _preprocess_config(name: str, contract: GraphContract, options: RepositoryOptions) -> dict[str, Any]:
    images = contract.tensor(spec.INPUT_IMAGES)
    config = {**_common(name, options, contract, role="preprocess"), "backend": "python",
              "input": [tc.tensor_entry(PICTURE_INPUT, "bytes", [1])],
              "output": [tc.tensor_entry(spec.INPUT_IMAGES, images.dtype, _image_dims(contract)),
                         tc.tensor_entry(spec.INPUT_IMAGE_SHAPE, "float32", [2]),
                         tc.tensor_entry(SCALE_FACTOR, "float32", [4])]}
    config["parameters"]["max_pixels"] = {"string_value": str(options.max_pixels)}
    return config


def _detection_outputs() -> list[dict[str, Any]]:
    counts, boxes, scores, classes = DETECTION_OUTPUTS
    return [tc.tensor_entry(counts, "int32", [1]), tc.tensor_entry(boxes, "float32", [-1, 4]),
            tc.tensor_entry(scores, "float32", [-1]), tc.tensor_entry(classes, "int32", [-1])]


def _postprocess_config(name: str, contract: GraphContract, options: RepositoryOptions) -> dict[str, Any]:
    network_outputs = _network_io(contract)["output"]
    return {**_common(name, options, contract, role="postprocess"), "backend": "python",
            "input": network_outputs + [tc.tensor_entry(spec.INPUT_IMAGE_SHAPE, "float32", [2]),
                                        tc.tensor_entry(SCALE_FACTOR, "float32", [4])],
            "output": _detection_outputs()}


def _ensemble_config(name: str, network: str, contract: GraphContract, options: RepositoryOptions) -> dict[str, Any]:
    # Ensemble-internal tensor names; the network's outputs are prefixed so that they cannot clash.
    net_in = {t: t for t in contract.input_names}
    net_out = {t: f"network_{t}" for t in contract.output_names}
    geometry = {spec.INPUT_IMAGE_SHAPE: spec.INPUT_IMAGE_SHAPE, SCALE_FACTOR: SCALE_FACTOR}
    return {
        "name": name,
        "platform": "ensemble",
        "max_batch_size": options.max_batch,
        "input": [tc.tensor_entry(PICTURE_INPUT, "bytes", [1])],
        "output": _detection_outputs(),
        "ensemble_scheduling": {"step": [
            {"model_name": f"{name}_preprocess", "model_version": -1, "input_map": {PICTURE_INPUT: PICTURE_INPUT},
             "output_map": {spec.INPUT_IMAGES: spec.INPUT_IMAGES, **geometry}},
            {"model_name": network, "model_version": -1, "input_map": net_in, "output_map": net_out},
            {"model_name": f"{name}_postprocess", "model_version": -1,
             "input_map": {**{t: net_out[t] for t in contract.output_names}, **geometry},
             "output_map": {t: t for t in DETECTION_OUTPUTS}},
        ]},
        "parameters": {CONTRACT_PARAMETER: {"string_value": contract.to_json()}},
    }


def _plugin_libraries(engine: Path) -> list[Path]:
    """The plugin libraries the engine's manifest records, each checked to exist and match its SHA-256."""
    from gflv2_deploy.engine.manifest import check_plugin_libraries, read_manifest

    return check_plugin_libraries(read_manifest(engine))


def plugin_backend_config(network: str, libraries: list[str], models_dir: str = "/models") -> str:
    """The tritonserver option that loads ``libraries`` (copied to ``<network>/plugins/``) for the TensorRT backend."""
    paths = ";".join(f"{models_dir}/{network}/plugins/{lib}" for lib in libraries)
    return f'--backend-config=tensorrt,plugins="{paths}"'


def _engine_readme(name: str, path: Path, contract: GraphContract, libraries: list[str]) -> str:
    nms = contract.postprocessing.nms
    if libraries:
        plugin = ("This engine needs the plugin librar" + ("ies" if len(libraries) > 1 else "y") + " in `plugins/` "
                  f"({', '.join(libraries)}; built against the TensorRT of the engine). With the repository "
                  "mounted at /models, start the server with\n\n"
                  f"    tritonserver --model-repository=/models {plugin_backend_config(name, libraries)}\n\n"
                  "or preload the libraries with LD_PRELOAD.")
    elif nms == "plugin":
        plugin = ("This engine ends in the gflv2-deploy NMS plugin (plugins/README.md), but its manifest names no "
                  "plugin library. Build the plugin against the server's TensorRT and start the server with "
                  "`--backend-config=tensorrt,plugins=/path/to/the/plugin.so` (several: `plugins=\"/a.so;/b.so\"`), "
                  "or preload it with LD_PRELOAD.")
    elif nms == "trt":
        plugin = ("This engine ends in EfficientNMS_TRT, which ships in TensorRT's libnvinfer_plugin; the Triton "
                  "TensorRT backend registers those plugins itself, so no --backend-config is needed.")
    else:
        plugin = "This engine uses no plugin."
    return (f"# {name}: TensorRT plan from {path.name}\n\n"
            "`<version>/model.plan` is the engine byte for byte; `<version>/engine_manifest.json` is its gflv2-deploy manifest "
            "(TensorRT version, GPU, precision, graph contract). A plan runs only with the TensorRT version and "
            "GPU it was built for: use the NGC Triton container whose TensorRT matches the manifest, or rebuild.\n\n"
            f"{plugin}\n\nPlugin libraries are executable code: load only ones you built or trust.\n")
