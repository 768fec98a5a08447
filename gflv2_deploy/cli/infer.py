"""``gflv2-deploy infer``: detection over a picture archive on Ray Data (or in this process), resumable, each picture once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.cli.options import BatchSizeOpt, ConfigOpt, UnsafeOpt, say, say_error


def infer(
    source: Annotated[str, typer.Argument(help="Pictures: a folder (searched recursively), a text file of paths, a glob "
                                          "('photos/**/*.jpg'), local or a URI (s3://, gs://, file://).")],
    model: Annotated[str, typer.Option("--model", "-m", help="BACKEND:PATH (onnxruntime:model.onnx, tensorrt:model.engine, "
                                       "torch:model.pth, openvino:, cpp:), or a PATH whose kind implies the backend.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: part-*.parquet shards, results.json, summary.json. "
                                      "Rerunning the same command there resumes.")],
    ray: Annotated[str, typer.Option("--ray", help="auto (RAY_ADDRESS, a cluster on this machine, else a local one), local "
                                     "(a new one on this machine), off (this process), or a cluster address.")] = "auto",
    actors: Annotated[int, typer.Option(help="Ray actors, each holding one detector.")] = 1,
    batch_size: BatchSizeOpt = 4,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per actor (fractions share a GPU); 0 runs on CPUs.")] = 0.0,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads of each detector (default: 1 per Ray actor, "
                                                   "the library's choice in this process).")] = None,
    shard_size: Annotated[int, typer.Option(help="Pictures per output shard (the unit of resumption).")] = 1000,
    gt: Annotated[Optional[Path], typer.Option(help="COCO instances JSON: results.json then uses its image and category ids.")] = None,
    config: ConfigOpt = None,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Detect objects in every picture of SOURCE: Parquet shards, a COCO results JSON and a summary; reruns resume."""
    from dataclasses import replace

    from gflv2_deploy.atomic import check_writable
    from gflv2_deploy.batch.run import InferSettings, check_settings, run_infer
    from gflv2_deploy.runtime.factory import resolve_model

    settings = InferSettings(source=source, out=out, backend="", model="", config=config, ray=ray, actors=actors,
                             batch_size=batch_size, gpus_per_actor=gpus_per_actor, threads=threads, shard_size=shard_size,
                             gt=gt, allow_unsafe_pickle=allow_unsafe_pickle)
    check_writable(out, folder=True)
    check_settings(settings)
    backend, path = resolve_model(model)
    summary = run_infer(replace(settings, backend=backend, model=str(path)), say=say,
                        warn=lambda text: say_error("note:", text))
    for failure in summary["failed"][:10]:
        say(f"failed: {failure['path']}: {failure['error']}")
    if summary["failures"] > 10:
        say(f"... {summary['failures'] - 10} more failures listed in {out / 'summary.json'}")


def register(app: typer.Typer) -> None:
    """Add ``infer`` to ``app``."""
    app.command("infer")(infer)
