"""Throughput and latency through Triton (python-variant ensemble) vs in process, at several concurrencies.

    .venv/bin/python scripts/bench_triton.py [--onnx M.e2e.onnx] [--concurrency 1,4,8] [--requests 40]
        [--threads 2] [--max-batch 8] [--queue-delay-us 2000] [--out out/bench_triton.json]

Both sides take the same encoded pictures (the 50 photos of tests/data/coco_val2017_tiny50) and return
detections in picture pixels:
- in process: ``decode_image`` + ``Detector.detect`` on one shared onnxruntime session, called from
  N client threads (what a threaded Python service would do);
- Triton: N gRPC clients (one channel each) send the bytes to the generated ensemble (python
  preprocessing -> python-backend onnxruntime network, dynamic batching -> python postprocessing) of a
  local tritonserver (.venv-triton, 127.0.0.1 only).
Per concurrency N each side gets an untimed warm-up of 2N requests, then N x ``--requests`` timed ones;
the sides alternate (in-process first at N=1, Triton first at N=4, ...). Reported: pictures per second
over the run, p50/p99 latency per request, the batch sizes Triton's dynamic batcher formed for the
network (statistics API), the mean queue and compute milliseconds per request of each Triton model, and
the machine's load average around each run. The network's onnxruntime
uses ``--threads`` intra-op threads on both sides.

Without ``--onnx`` a gflv2_tiny with 80 classes is exported once (end-to-end NMS, fixed 384 x 384,
dynamic batch; random weights with the class bias raised so that NMS has candidates) into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gflv2_deploy.bench.timing import machine_info  # noqa: E402
from gflv2_deploy.data.image_io import decode_image  # noqa: E402
from gflv2_deploy.runtime.factory import make_detector  # noqa: E402
from gflv2_deploy.serve.load import (batch_size_counts, ensemble_detections, ensemble_inputs, run_load,  # noqa: E402
                                     stage_ms)
from gflv2_deploy.serve.triton_options import RepositoryOptions  # noqa: E402
from gflv2_deploy.serve.triton_write import write_triton_repository  # noqa: E402
from gflv2_deploy.serve.triton_server import TritonServer  # noqa: E402

TINY50 = ROOT / "tests" / "data" / "coco_val2017_tiny50" / "val2017"
MODELS = ("gflv2_preprocess", "gflv2_network", "gflv2_postprocess")


def default_onnx(work: Path) -> Path:
    """gflv2_tiny (80 classes, seed 0) exported end to end at 384 x 384 with candidates for NMS."""
    path = work / "gflv2_tiny.e2e384.onnx"
    if path.is_file():
        return path
    import torch

    from gflv2_deploy import build_model
    from gflv2_deploy.export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_model("gflv2_tiny", num_classes=80).eval()
    with torch.no_grad():
        model.bbox_head.gfl_cls.bias.fill_(-2.5)  # joint scores around 0.04-0.1: real NMS work
    export_onnx(model, path, nms="onnx", input_hw=(384, 384))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=None)
    parser.add_argument("--images", type=Path, default=TINY50)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per client")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--instances", type=int, default=1, help="instances of each Triton model")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench_triton")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    onnx_path = args.onnx or default_onnx(args.work)
    pictures = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not pictures:
        raise SystemExit(f"no .jpg pictures in {args.images}")
    levels = [int(c) for c in args.concurrency.split(",")]
    detector = make_detector("onnxruntime", onnx_path, threads=args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gflv2-bench-triton-") as tmp:
        options = RepositoryOptions(platform="python", ensemble=True, max_batch=args.max_batch, instances=args.instances,
                                    queue_delay_us=args.queue_delay_us, onnxruntime_threads=args.threads)
        write_triton_repository(onnx_path, Path(tmp) / "repo", options)
        with TritonServer(Path(tmp) / "repo") as server:
            import tritonclient.grpc as grpcclient

            stats_client = grpcclient.InferenceServerClient(server.grpc_url)
            for level_index, clients in enumerate(levels):
                channels = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(clients)]

                def in_process(i: int, j: int) -> None:
                    detector.detect([decode_image(pictures[(i * 7 + j) % len(pictures)])])

                def triton(i: int, j: int, ch: list = channels) -> None:
                    ensemble_detections(ch[i].infer("gflv2", ensemble_inputs(pictures[(i * 7 + j) % len(pictures)]),
                                                    client_timeout=300))

                order = [("in-process", in_process), ("triton", triton)]
                for mode, send in order if level_index % 2 == 0 else order[::-1]:
                    run_load(send, clients, 2)  # warm-up
                    before = {m: stats_client.get_inference_statistics(m, as_json=True)["model_stats"][0] for m in MODELS}
                    load_before = os.getloadavg()[0]
                    result = run_load(send, clients, args.requests)
                    after = {m: stats_client.get_inference_statistics(m, as_json=True)["model_stats"][0] for m in MODELS}
                    row = {"mode": mode, **result.summary(), "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                           "batches": batch_size_counts(after["gflv2_network"], before["gflv2_network"]) if mode == "triton" else None}
                    if mode == "triton":  # where a request's time went: mean queue / compute ms per model
                        row["stages_ms"] = {m: stage_ms(after[m], before[m]) for m in MODELS}
                    if result.failures:
                        row["first_failures"] = result.failures[:3]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                for ch in channels:
                    ch.close()
    report = {"machine": machine_info(), "onnx": str(onnx_path), "pictures": len(pictures), "settings": vars(args) | {
        "onnx": str(onnx_path), "images": str(args.images), "work": str(args.work), "out": str(args.out)}, "rows": rows}
    print("\n| mode | clients | requests | img/s | p50 ms | p99 ms | Triton batches {size: executions} | "
          "pre / network / post ms (queue + compute) | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = " / ".join(f"{v['queue'] + v['compute']:.0f}" for v in r["stages_ms"].values()) if "stages_ms" in r else "-"
        print(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['img_per_s']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['batches'] if r['batches'] is not None else '-'} | {stages} | "
              f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.out}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f} s")
