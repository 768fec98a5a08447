"""Write a Triton Inference Server model repository for an exported ONNX or a built engine.

Layout (``name`` = "gflv2" by default)::

    REPO/<network>/config.pbtxt          the network: onnxruntime backend (model.onnx), TensorRT plan
    REPO/<network>/1/model.onnx|plan     (model.plan, plus README.md on its plugins), or the python
                                         backend running onnxruntime (model.py + model.onnx)
    with --ensemble, also:
    REPO/<name>_preprocess/1/model.py    encoded picture bytes -> images, img_shape, scale_factor
    REPO/<name>_postprocess/1/model.py   network outputs -> detections in picture pixels
    REPO/<name>/config.pbtxt             platform "ensemble": image -> preprocess -> network -> postprocess

The network model is ``<name>`` without an ensemble and ``<name>_network`` with one. Tensor names,
dtypes and dims come from the graph contract (``model_contract``), which also travels in every
config as the string parameter ``gflv2_deploy.contract`` (python models and the ``triton`` runner read
it there). Every config is parsed with tritonclient's ``model_config_pb2`` and checked
(``triton_config.check_repository``) before anything is written; the repository is assembled in a
temporary folder beside REPO and renamed into place, so a failure leaves no partial repository.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import triton_config as tc
from gflv2_deploy.serve.model_contract import ENGINE_SUFFIXES, model_contract
from gflv2_deploy.serve.pipeline import DETECTION_OUTPUTS, MAX_PICTURE_PIXELS, PICTURE_INPUT, SCALE_FACTOR

PLATFORMS: tuple[str, ...] = ("onnxruntime", "tensorrt", "python")
CONTRACT_PARAMETER = "gflv2_deploy.contract"
TEMPLATES = Path(__file__).resolve().parent / "triton_models"
ENV_MODULE = "gflv2_triton_env.py"


@dataclass(frozen=True)
class RepositoryOptions:
    """What ``gflv2-deploy triton`` was asked for (defaults: the CLI's)."""

    platform: str | None = None  # None: onnxruntime for .onnx, tensorrt for an engine
    name: str = "gflv2"
    max_batch: int = 8
    instances: int = 1
    queue_delay_us: int = 1000
    ensemble: bool = False
    onnxruntime_threads: int = 0  # python variant: onnxruntime intra-op threads per instance (0: its default)
    max_pixels: int = MAX_PICTURE_PIXELS


@dataclass
class RepositoryPlan:
    """Everything to write, relative to the repository root: texts, files to copy, empty folders."""

    texts: dict[str, str] = field(default_factory=dict)
    copies: dict[str, Path] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    configs: list[Any] = field(default_factory=list)  # ModelConfig messages, checked as a set

    @property
    def models(self) -> list[str]:
        return [c.name for c in self.configs]


def plan_repository(model_path: str | os.PathLike[str], options: RepositoryOptions) -> RepositoryPlan:
    """Build and check every config and file of the repository in memory (nothing is written)."""
    path = Path(model_path)
    contract = model_contract(path)
    platform = options.platform or ("tensorrt" if path.suffix in ENGINE_SUFFIXES else "onnxruntime")
    _check_options(path, contract, platform, options)
    plan = RepositoryPlan()
    network = f"{options.name}_network" if options.ensemble else options.name
    _add_network(plan, network, path, contract, platform, options)
    if options.ensemble:
        _add_python(plan, f"{options.name}_preprocess", "preprocess.py", _preprocess_config(
            f"{options.name}_preprocess", contract, options))
        _add_python(plan, f"{options.name}_postprocess", "postprocess.py", _postprocess_config(
            f"{options.name}_postprocess", contract, options))
        ensemble = tc.parse_config(_ensemble_config(options.name, network, contract, options))
        plan.configs.append(ensemble)
        plan.texts[f"{options.name}/config.pbtxt"] = tc.render_config(ensemble)
        plan.folders.append(f"{options.name}/1")  # Triton wants a version folder even for an ensemble
    tc.check_repository(plan.configs)
    return plan


def write_triton_repository(model_path: str | os.PathLike[str], repo: str | os.PathLike[str],
                            options: RepositoryOptions = RepositoryOptions(), overwrite: bool = False) -> RepositoryPlan:
    """Write the repository for ``model_path`` to ``repo``; returns the plan written.

    Refuses (UserError) a ``repo`` that is a file, or a non-empty folder unless ``overwrite``; checks all
    configs first; assembles the repository in a temporary folder beside ``repo`` and renames it into place.
    """
    target = Path(repo)
    if target.exists() and not target.is_dir():
        raise UserError(f"--repo {target} is a file; give a folder for the model repository")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UserError(f"--repo {target} is not empty: give an empty or new folder, or --overwrite to replace it")
    plan = plan_repository(model_path, options)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for rel in plan.folders:
            (staging / rel).mkdir(parents=True, exist_ok=True)
        for rel, text in plan.texts.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_text(text)
        for rel, source in plan.copies.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / rel)
        staging.chmod(0o777 & ~_umask())
        old = None
        if target.is_dir():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return plan


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_options(path: Path, contract: GraphContract, platform: str, options: RepositoryOptions) -> None:
    if platform not in PLATFORMS:
        raise UserError(f"unknown --platform '{platform}': choose one of {', '.join(PLATFORMS)}")
    is_engine = path.suffix in ENGINE_SUFFIXES
    if is_engine and platform != "tensorrt":
        raise UserError(f"{path.name} is a TensorRT engine: it runs only with --platform tensorrt")
    if not is_engine and platform == "tensorrt":
        raise UserError(f"{path.name} is an ONNX: build an engine first (gflv2-deploy build {path.name} ...) "
                        "or choose --platform onnxruntime / python")
    if platform == "python" and contract.postprocessing.nms == "trt":
        raise UserError(f"{path.name} ends in EfficientNMS_TRT, which onnxruntime cannot run: "
                        "export with --nms onnx or --nms none for the python platform")
    if not options.name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--name '{options.name}' must be letters, digits, '_' or '-'")
    if options.instances < 1:
        raise UserError(f"--instances must be at least 1, got {options.instances}")
    if options.queue_delay_us < 0:
        raise UserError(f"--queue-delay-us must be >= 0, got {options.queue_delay_us}")
    if options.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, got {options.max_batch}")
    if not contract.dynamic_batch:
        fixed = contract.tensor(spec.INPUT_IMAGES).shape[0]
        raise UserError(f"{path.name} has a fixed batch of {fixed}: Triton batching needs a dynamic batch axis; "
                        "re-export it without --static-batch")
    if is_engine:
        limit = _engine_max_batch(path)
        if limit is not None and options.max_batch > limit:
            raise UserError(f"--max-batch {options.max_batch} exceeds the engine's optimisation profile "
                            f"(max batch {limit}): lower it or rebuild the engine with a larger profile")


def _engine_max_batch(path: Path) -> int | None:
    """Largest batch of the engine's ``images`` profile, from its manifest (None when not recorded)."""
    from gflv2_deploy.engine.manifest import read_manifest

    for tensor in read_manifest(path).get("inputs", []):
        if tensor.get("name") == spec.INPUT_IMAGES and tensor.get("profile"):
            return int(tensor["profile"]["max"][0])
    return None


def _common(name: str, options: RepositoryOptions, contract: GraphContract, *, kind: str = "KIND_CPU",
            queue_delay_us: int | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "max_batch_size": options.max_batch,
        "dynamic_batching": tc.batching(options.max_batch, options.queue_delay_us if queue_delay_us is None
                                        else queue_delay_us),
        "instance_group": [{"kind": kind, "count": options.instances}],
        "parameters": {CONTRACT_PARAMETER: {"string_value": contract.to_json()}},
    }


def _network_io(contract: GraphContract) -> dict[str, list[dict[str, Any]]]:
    return {
        "input": [tc.tensor_entry(t.name, t.dtype, tc.contract_dims(t, contract)) for t in contract.inputs],
        "output": [tc.tensor_entry(t.name, t.dtype, tc.contract_dims(t, contract)) for t in contract.outputs],
    }


def _add_network(plan: RepositoryPlan, name: str, path: Path, contract: GraphContract, platform: str,
                 options: RepositoryOptions) -> None:
    if platform == "onnxruntime":
        config = {**_common(name, options, contract), "backend": "onnxruntime", **_network_io(contract)}
        plan.copies[f"{name}/1/model.onnx"] = path
    elif platform == "tensorrt":
        config = {**_common(name, options, contract, kind="KIND_GPU"), "platform": "tensorrt_plan",
                  **_network_io(contract)}
        plan.copies[f"{name}/1/model.plan"] = path
        plan.copies[f"{name}/engine_manifest.json"] = Path(os.fspath(path) + ".json")
        libraries = _plugin_libraries(path)
        for lib in libraries:
            plan.copies[f"{name}/plugins/{lib.name}"] = lib
        plan.texts[f"{name}/README.md"] = _engine_readme(name, path, contract, [lib.name for lib in libraries])
    else:
        config = {**_common(name, options, contract), "backend": "python", **_network_io(contract)}
        config["parameters"]["onnxruntime_threads"] = {"string_value": str(options.onnxruntime_threads)}
        plan.copies[f"{name}/1/model.onnx"] = path
        plan.texts[f"{name}/1/model.py"] = (TEMPLATES / "network_onnx.py").read_text()
        plan.texts[f"{name}/1/{ENV_MODULE}"] = (TEMPLATES / ENV_MODULE).read_text()
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
    config = {**_common(name, options, contract, queue_delay_us=0), "backend": "python",
              "input": [tc.tensor_entry(PICTURE_INPUT, "bytes", [1])],
              "output": [tc.tensor_entry(spec.INPUT_IMAGES, "float32", _image_dims(contract)),
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
    return {**_common(name, options, contract, queue_delay_us=0), "backend": "python",
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
            "`1/model.plan` is the engine byte for byte; `engine_manifest.json` is its gflv2-deploy manifest "
            "(TensorRT version, GPU, precision, graph contract). A plan runs only with the TensorRT version and "
            "GPU it was built for: use the NGC Triton container whose TensorRT matches the manifest, or rebuild.\n\n"
            f"{plugin}\n\nPlugin libraries are executable code: load only ones you built or trust.\n")
