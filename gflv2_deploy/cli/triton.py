"""``gflv2-deploy triton``: an exported ONNX or a built engine -> a Triton Inference Server model repository.

The command checks the output locations, parses options and calls ``serve.triton_write.write_triton_repository``
(or ``add_version`` with ``--version``), then, with ``--k8s``, ``serve.k8s.write_manifests``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import say, say_error


def triton_command(
    model: Annotated[Path, typer.Argument(help="Exported ONNX (.onnx) or TensorRT engine (.engine/.plan with its .json manifest).")],
    repo: Annotated[Path, typer.Option("--repo", help="Folder for the model repository (new or empty; see --overwrite, --version).")],
    platform: Annotated[Optional[str], typer.Option(help="Network model kind: onnxruntime (backend onnxruntime), tensorrt "
                                                    "(platform tensorrt_plan, engines built with TensorRT), python (python "
                                                    "backend running onnxruntime on the CPU: the only kind the pip-installed "
                                                    "server loads). Default: onnxruntime for .onnx, tensorrt for an engine.")] = None,
    device: Annotated[Optional[str], typer.Option(help="Where the network runs: gpu (KIND_GPU; onnxruntime's CUDA execution "
                                                  "provider) or cpu. Default: gpu, cpu for --platform python.")] = None,
    accelerator: Annotated[str, typer.Option(help="onnxruntime on a GPU: none, or tensorrt (onnxruntime's TensorRT execution "
                                             "accelerator; it builds its engine at load).")] = "none",
    accelerator_fp16: Annotated[bool, typer.Option("--accelerator-fp16", help="The TensorRT accelerator in FP16.")] = False,
    engine_cache: Annotated[Optional[str], typer.Option("--engine-cache", help="Absolute path in the server's container "
                                                        "where the TensorRT accelerator caches its engines.")] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Add python pre/postprocessing models and an ensemble: "
                                           "encoded picture bytes in, detections in picture pixels out.")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="max_batch_size of every model (dynamic batching), 1..256.")] = 8,
    instances: Annotated[str, typer.Option("--instances", help="Model instances: a count for every model (2) or per model "
                                           "(network=2,preprocess=4,postprocess=1), 1..64.")] = "1",
    queue_delay_us: Annotated[int, typer.Option("--queue-delay-us", help="Dynamic batcher's max queue delay for the network, "
                                                "microseconds (0..10000000).")] = 1000,
    serve_size: Annotated[Optional[str], typer.Option("--serve-size", help="Size Triton serves a graph with a dynamic input size at: "
                                                      "HxW letterboxes every picture into it (default: the test scale's), "
                                                      "'dynamic' keeps per-picture sizes (defeats batching).")] = None,
    name: Annotated[str, typer.Option("--name", help="Model name (the ensemble's with --ensemble; the network is then NAME_network).")] = "gflv2",
    threads: Annotated[int, typer.Option("--threads", help="python platform: onnxruntime intra-op threads per instance "
                                         "(0: its default), 0..256.")] = 0,
    version: Annotated[Optional[int], typer.Option("--version", help="Add this version of the network to an existing "
                                                   "repository, leaving the other versions and models as they are.")] = None,
    versions_served: Annotated[int, typer.Option("--versions-served", help="version_policy: serve the latest N versions, 1..16.")] = 1,
    warmup: Annotated[bool, typer.Option("--warmup/--no-warmup", help="model_warmup of the network with the contract's shapes.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --repo folder whole.")] = False,
    k8s: Annotated[Optional[Path], typer.Option("--k8s", help="Also write Kubernetes manifests (Deployment, Service, HPA, "
                                                "NetworkPolicy, kustomization, Dockerfile) into this folder.")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="--k8s: the container image (built from the Dockerfile written there).")] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="--k8s: the namespace.")] = "default",
    allow_namespace: Annotated[Optional[list[str]], typer.Option("--allow-namespace", help="--k8s: a namespace whose pods may "
                                                                 "reach the inference ports (repeat; default: --namespace).")] = None,
    model_store: Annotated[Optional[str], typer.Option("--model-store", help="--k8s: pvc:CLAIM (read-only volume; default "
                                                       "pvc:NAME-triton-models) or an s3://, gs://, as:// repository path.")] = None,
    max_replicas: Annotated[int, typer.Option("--max-replicas", help="--k8s: the autoscaler's maximum.")] = 4,
) -> None:
    """Write a Triton model repository: configs from the graph contract, validated before anything is written."""
    from gflv2_deploy.serve.shm import shm_budget
    from gflv2_deploy.serve.triton_options import RepositoryOptions, parse_instances, parse_serve_size
    from gflv2_deploy.serve.triton_repo import plugin_backend_config
    from gflv2_deploy.serve.triton_write import add_version, write_triton_repository

    if version is None:
        check_writable(repo, folder=True)
    if k8s is not None:
        check_writable(k8s, folder=True)
    options = RepositoryOptions(platform=platform, name=name, max_batch=max_batch, instances=parse_instances(instances),
                                queue_delay_us=queue_delay_us, ensemble=ensemble, onnxruntime_threads=threads,
                                device=device, accelerator=accelerator, accelerator_fp16=accelerator_fp16,
                                engine_cache=engine_cache, serve_size=parse_serve_size(serve_size),
                                version=version or 1, versions_served=versions_served, warmup=warmup)
    k8s_options = None
    if k8s is not None:  # checked before the repository is written: a bad option writes nothing
        from gflv2_deploy.serve.k8s import K8sOptions, app_name, check_k8s_options

        kwargs = {"image": image} if image else {}
        k8s_options = K8sOptions(namespace=namespace, allow_namespaces=tuple(allow_namespace or ()),
                                 model_store=model_store, max_replicas=max_replicas, **kwargs)
        check_k8s_options(k8s_options, app_name(name))
    if version is not None:
        plan = add_version(model, repo, options)
        say(f"added version {version} of {plan.network} to {repo}")
    else:
        plan = write_triton_repository(model, repo, options, overwrite=overwrite)
        say(f"wrote {repo}: models {', '.join(plan.models)}")
    for note in plan.notes:
        say_error("note:", note)
    plugins = [rel.split("/") for rel in plan.copies if rel.split("/")[1:2] == ["plugins"]]
    backend_config = plugin_backend_config(plugins[0][0], [p[-1] for p in plugins]) if plugins else None
    if backend_config:
        say(f"  start the server with {backend_config} (repository mounted at /models; see {plugins[0][0]}/README.md)")
    budget = shm_budget(plan.contract, max_batch=options.max_batch, instances=dict(options.instances),  # type: ignore[arg-type]
                        python_network=plan.platform == "python", ensemble=ensemble)
    say(f"  /dev/shm for the python models: {budget.total_bytes // 2**20} MiB (docker run {budget.docker_option}); "
        f"network input {budget.picture_bytes} bytes per picture")
    if ensemble:
        say(f"  send encoded pictures (TYPE_STRING 'image', one per row) to '{name}'")
    if k8s is not None and k8s_options is not None:
        import dataclasses

        from gflv2_deploy.serve.k8s import write_manifests

        if backend_config:  # the plugin libraries of the engine, loaded by the TensorRT backend
            k8s_options = dataclasses.replace(k8s_options, extra_args=(backend_config.replace('"', ""),))
        written = write_manifests(plan, budget, k8s, k8s_options)
        say(f"wrote {k8s}: {', '.join(p.name for p in written)} (not applied: kubectl apply -k {k8s})")


def register(app: typer.Typer) -> None:
    """Add the ``triton`` command to ``app``."""
    app.command("triton")(triton_command)
