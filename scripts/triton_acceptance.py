#!/usr/bin/env python3
"""Triton serving acceptance figures, against the real local server (.venv-triton; the 64 MB part needs root).

    PYTHONPATH=$PWD .venv/bin/python scripts/triton_acceptance.py [--requests 50] [--out out/triton_acceptance.json]

Four measurements, each on its own server, with the narrower gflv2_tiny of tests/integration/gflv2_micro.toml
(random weights, 6 classes; its cost at 800 x 1344 bounds the run time) and the tiny50 photos:

1. bytes per picture through shared memory: the network input per picture at 800 x 1344 (float32 vs uint8
   graph) and the python stubs' /dev/shm regions after an 8-client load (their sizes: regions only grow);
2. a 64 MB /dev/shm (``unshare -m``, as Docker's default): sent / answered / failed at 8 clients, float32
   pictures (before) and uint8 pictures (after);
3. batches Triton formed at 8 clients ({size: executions}, statistics API) for a dynamic-size graph served at
   per-picture sizes (--serve-size dynamic) and letterboxed into one size (the default);
4. stopping under an 8-client load: SIGTERM alone (before) and drain then SIGTERM (after): sent / answered /
   refused / lost.

Prints one JSON object (also written to --out) with the load average before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gflv2_deploy.serve.load import batch_size_counts, drain_under_load, ensemble_inputs, run_load  # noqa: E402
from gflv2_deploy.serve.shm import shm_budget  # noqa: E402
from gflv2_deploy.serve.triton_options import SERVE_DYNAMIC, RepositoryOptions  # noqa: E402
from gflv2_deploy.serve.triton_server import TritonServer  # noqa: E402
from gflv2_deploy.serve.triton_write import write_triton_repository  # noqa: E402

MICRO = ROOT / "tests" / "integration" / "gflv2_micro.toml"
TINY50 = ROOT / "tests" / "data" / "coco_val2017_tiny50" / "val2017"
CLIENTS = 8


def export(work: Path, input_dtype: str) -> Path:
    """The micro model (seed 0) exported end to end with a dynamic input size."""
    path = work / f"micro.{input_dtype}.onnx"
    if not path.is_file():
        import torch

        from gflv2_deploy import build_model
        from gflv2_deploy.export.onnx import export_onnx

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(str(MICRO), num_classes=6).eval()
            with torch.no_grad():
                model.bbox_head.gfl_cls.bias.fill_(-2.0)
        export_onnx(model, path, nms="onnx", dynamic_hw=True, input_hw=(64, 64), input_dtype=input_dtype)
    return path


def serve(work: Path, onnx: Path, label: str, **server_kwargs: Any) -> tuple[TritonServer, Any]:
    options = RepositoryOptions(platform="python", ensemble=True, max_batch=8, queue_delay_us=2000, onnxruntime_threads=2,
                                serve_size=server_kwargs.pop("serve_size", None), warmup=server_kwargs.pop("warmup", True))
    plan = write_triton_repository(onnx, work / f"repo-{label}", options, overwrite=True)
    server = TritonServer(work / f"repo-{label}", **server_kwargs)
    server.start()
    return server, plan


def sender(server: TritonServer, photos: list[bytes]) -> Callable[[int, int], str | None]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    channels = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(CLIENTS)]

    def send(index: int, j: int) -> str | None:
        try:
            channels[index].infer("gflv2", ensemble_inputs(photos[(index * 7 + j) % len(photos)]), client_timeout=600)
        except InferenceServerException as exc:
            return exc.message()
        return None

    return send


def loaded(fn: Callable[[], dict]) -> dict:
    before = os.getloadavg()[0]
    out = fn()
    out["load_average"] = [round(before, 1), round(os.getloadavg()[0], 1)]
    return out


def shm_bytes(work: Path, photos: list[bytes], requests: int) -> dict:
    out = {}
    for dtype in ("float32", "uint8"):
        server, plan = serve(work, export(work, dtype), f"shm-{dtype}")
        try:
            run_load(sender(server, photos), CLIENTS, requests)
            regions = {p.name: p.stat().st_size for p in server.shm_regions()}
        finally:
            server.stop()
        budget = shm_budget(plan.contract, max_batch=8, instances={}, python_network=True, ensemble=True)
        out[dtype] = {"network_input_bytes_per_picture": budget.picture_bytes, "stub_regions_bytes": sorted(regions.values()),
                      "stub_regions_total_bytes": sum(regions.values()), "budget_docker": budget.docker_option}
    return out


def shm_64mb(work: Path, photos: list[bytes], requests: int) -> dict:
    """float32 pictures: with warm-up (at batch 8, 103 MB) the server does not even start; without, the load runs."""
    from gflv2_deploy.errors import UserError

    out: dict[str, Any] = {}
    for label, dtype, warmup in (("float32_warmup", "float32", True), ("float32", "float32", False),
                                 ("uint8", "uint8", True)):
        try:
            server, _ = serve(work, export(work, dtype), f"64mb-{label}", shm_limit_bytes=64 * 2**20, warmup=warmup)
        except UserError as exc:
            out[label] = {"started": False, "reason": " ".join(str(exc).splitlines()[:3])}
            continue
        try:
            result = run_load(sender(server, photos), CLIENTS, requests)
        finally:
            server.stop()
        out[label] = {"started": True, "sent": CLIENTS * requests, "answered": result.answered - len(result.failures),
                      "failed": len(result.failures), "first_failure": result.failures[:1], **result.summary()}
    return out


def batches(work: Path, photos: list[bytes], requests: int) -> dict:
    import tritonclient.grpc as grpcclient

    out = {}
    for label, size in (("dynamic_size", SERVE_DYNAMIC), ("fixed_size", None)):
        server, plan = serve(work, export(work, "uint8"), f"batches-{label}", serve_size=size)
        try:
            stats = grpcclient.InferenceServerClient(server.grpc_url)
            before = stats.get_inference_statistics("gflv2_network", as_json=True)["model_stats"][0]
            result = run_load(sender(server, photos), CLIENTS, requests)
            after = stats.get_inference_statistics("gflv2_network", as_json=True)["model_stats"][0]
        finally:
            server.stop()
        sizes = batch_size_counts(after, before)
        out[label] = {"served_hw": plan.contract.preprocessing.input_hw, "requests": CLIENTS * requests,
                      "executions": sum(sizes.values()), "batches": sizes, **result.summary()}
    return out


def stopping(work: Path, photos: list[bytes], requests: int) -> dict:
    out = {}
    for label, drain in (("sigterm_only", False), ("drain_then_sigterm", True)):
        server, _ = serve(work, export(work, "uint8"), f"stop-{label}", serve_size=(256, 384))
        result = drain_under_load(sender(server, photos), CLIENTS, requests,
                                  stop=lambda s=server, d=drain: s.stop(drain=d), stop_after_answers=CLIENTS * requests // 4,
                                  model="gflv2")
        out[label] = {**result.summary(), "first_lost": result.lost[:1]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="requests per client in each load")
    parser.add_argument("--parts", default="shm_bytes,shm_64mb,batches,stopping")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "triton_acceptance.json")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(TINY50.glob("*.jpg"))]
    parts = {"shm_bytes": shm_bytes, "shm_64mb": shm_64mb, "batches": batches, "stopping": stopping}
    report: dict[str, Any] = {"cpus": os.cpu_count(), "clients": CLIENTS, "requests_per_client": args.requests,
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="gflv2-acceptance-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.parts.split(","):
            report[name] = loaded(lambda f=parts[name]: f(work, photos, args.requests))
            print(json.dumps({name: report[name]}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
