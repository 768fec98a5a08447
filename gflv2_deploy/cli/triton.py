"""``gflv2-deploy triton``: an exported ONNX or a built engine -> a Triton Inference Server model repository.

The command checks the repository folder, parses options and calls ``serve.triton_repo.write_triton_repository``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import say


def triton_command(
    model: Annotated[Path, typer.Argument(help="Exported ONNX (.onnx) or TensorRT engine (.engine/.plan with its .json manifest).")],
    repo: Annotated[Path, typer.Option("--repo", help="Folder for the model repository (new or empty; see --overwrite).")],
    platform: Annotated[Optional[str], typer.Option(help="Network model kind: onnxruntime (backend onnxruntime), tensorrt "
                                                    "(platform tensorrt_plan, engines), python (python backend running "
                                                    "onnxruntime: the only kind the pip-installed server loads). "
                                                    "Default: onnxruntime for .onnx, tensorrt for an engine.")] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Add python pre/postprocessing models and an ensemble: "
                                           "encoded picture bytes in, detections in picture pixels out.")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="max_batch_size of every model (dynamic batching).")] = 8,
    instances: Annotated[int, typer.Option("--instances", help="Model instances (instance_group count) per model.")] = 1,
    queue_delay_us: Annotated[int, typer.Option("--queue-delay-us", help="Dynamic batcher's max queue delay for the network, microseconds.")] = 1000,
    name: Annotated[str, typer.Option("--name", help="Model name (the ensemble's with --ensemble; the network is then NAME_network).")] = "gflv2",
    threads: Annotated[int, typer.Option("--threads", help="python platform: onnxruntime intra-op threads per instance (0: its default).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --repo folder.")] = False,
) -> None:
    """Write a Triton model repository: configs from the graph contract, validated before anything is written."""
    check_writable(repo, folder=True)
    from gflv2_deploy.serve.triton_repo import RepositoryOptions, plugin_backend_config, write_triton_repository

    options = RepositoryOptions(platform=platform, name=name, max_batch=max_batch, instances=instances,
                                queue_delay_us=queue_delay_us, ensemble=ensemble, onnxruntime_threads=threads)
    plan = write_triton_repository(model, repo, options, overwrite=overwrite)
    say(f"wrote {repo}: models {', '.join(plan.models)}")
    plugins = [rel.split("/") for rel in plan.copies if rel.split("/")[1:2] == ["plugins"]]
    if plugins:
        say(f"  start the server with {plugin_backend_config(plugins[0][0], [p[-1] for p in plugins])} "
            f"(repository mounted at /models; see {plugins[0][0]}/README.md)")
    if ensemble:
        say(f"  send encoded pictures (TYPE_STRING 'image', one per row) to '{name}'")


def register(app: typer.Typer) -> None:
    """Add the ``triton`` command to ``app``."""
    app.command("triton")(triton_command)
