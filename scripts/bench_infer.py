"""Pictures per second of ``infer`` on Ray Data (1 and 2 actors) vs the in-process ``predict`` loop, in one run.

    .venv/bin/python scripts/bench_infer.py [--model BACKEND:PATH] [--pictures 200] [--actors 1,2] [--batch-size 1]
        [--shard-size 50] [--gpu-img-s 924] [--gpus 16] [--out out/bench_infer.json]

The same N pictures (the 50 photos of tests/data/coco_val2017_tiny50, linked under N distinct names) go through:
- ``predict loop``: ``read_image`` + ``Detector.detect([picture])``, one picture after the other, in this process,
  one onnxruntime thread (what ``gflv2-deploy predict`` does per picture, without writing its JSON and drawing);
  timed twice, before and after the Ray runs, to bracket a change of load;
- ``in process``: ``infer --ray off`` (the same engine loop without Ray: shards, Parquet, results JSON);
- ``ray xN``: ``infer --ray local --actors N --threads 1`` (a local cluster started and stopped by each run).
Reported per run: wall time (everything: cluster start, actors loading the model, listing, shards, results),
start-up (until the first result reached the driver), pictures/s over the wall time and after the first result
(steady), the ratios to the predict loop, Ray's overhead per picture with and without start-up, and the load
average. Last, on paper: what a cluster of ``--gpus`` GPUs needs for ``--gpu-img-s`` pictures/s per GPU (actors,
GPUs per actor, CPUs), from the CPU time a picture's decoding and preprocessing (at ``--paper-hw``) take here.

Without ``--model``, a gflv2_tiny with 80 classes is exported once at a fixed 320 x 320 (random weights; host NMS)
into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gflv2_deploy.batch.run import InferSettings, run_infer  # noqa: E402
from gflv2_deploy.bench.timing import machine_info  # noqa: E402
from gflv2_deploy.data.image_io import read_image  # noqa: E402
from gflv2_deploy.runtime.factory import make_detector, resolve_model  # noqa: E402

TINY50 = ROOT / "tests" / "data" / "coco_val2017_tiny50" / "val2017"


def default_model(work: Path) -> str:
    """gflv2_tiny, 80 classes, seed 0, exported at 320 x 320 with host NMS (onnxruntime:PATH)."""
    path = work / "gflv2_tiny.320.onnx"
    if not path.is_file():
        import torch

        from gflv2_deploy import build_model
        from gflv2_deploy.export.onnx import export_onnx

        torch.manual_seed(0)
        model = build_model("gflv2_tiny", num_classes=80).eval()
        with torch.no_grad():
            model.bbox_head.gfl_cls.bias.fill_(-2.5)  # candidates for NMS, as a trained model has
        export_onnx(model, path, dynamic_hw=False, input_hw=(320, 320))
    return f"onnxruntime:{path}"


def link_pictures(images: Path, n: int, folder: Path) -> list[Path]:
    """``n`` distinct names (symbolic links) cycling over the photos in ``images``."""
    photos = sorted(images.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no .jpg pictures in {images}")
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        link = folder / f"{i:06d}_{photos[i % len(photos)].name}"
        link.symlink_to(photos[i % len(photos)].resolve())
        out.append(link)
    return out


def predict_loop(backend: str, path: str, pictures: list[Path]) -> dict:
    detector = make_detector(backend, path, threads=1)
    detector.detect([read_image(pictures[0])])  # warm-up: the first run allocates
    start = time.perf_counter()
    for picture in pictures:
        detector.detect([read_image(picture)])
    wall = time.perf_counter() - start
    return {"mode": "predict loop", "wall_s": wall, "startup_s": 0.0, "pictures_per_s": len(pictures) / wall,
            "steady_pictures_per_s": len(pictures) / wall, "load": os.getloadavg()}


def infer_run(label: str, source: Path, backend: str, path: str, out: Path, args: argparse.Namespace, **changes) -> dict:
    settings = InferSettings(source=str(source), out=out, backend=backend, model=path, batch_size=args.batch_size,
                             shard_size=args.shard_size, threads=1, progress=False, **changes)
    summary = run_infer(settings, say=lambda _: None, warn=lambda text: print(f"note: {text}"))
    run = summary["run"]
    return {"mode": label, "wall_s": run["wall_s"], "startup_s": run["startup_s"], "pictures_per_s": run["pictures_per_s"],
            "steady_pictures_per_s": run["steady_pictures_per_s"], "load": os.getloadavg(),
            "cpus_per_actor": run.get("cpus_per_actor")}


def cpu_ms_per_picture(pictures: list[Path], paper_hw: tuple[int, int]) -> tuple[float, float]:
    """(read + decode, preprocess at ``paper_hw`` with a reused buffer): mean CPU milliseconds per picture, one core.

    CPU time (``process_time``), not wall time: what a core must spend, less distorted by a busy machine.
    """
    import dataclasses

    from gflv2_deploy.contract import Preprocessing
    from gflv2_deploy.data.preprocess import preprocess_for

    sample = pictures[:50]
    start = time.process_time()
    images = [read_image(p) for p in sample]
    decode = 1000 * (time.process_time() - start) / len(sample)
    pre = dataclasses.replace(Preprocessing(), test_scale=(max(paper_hw), min(paper_hw)), input_hw=paper_hw)
    buffer, _ = preprocess_for(images[:1], pre)  # the first call allocates the batch buffer; an actor reuses it
    start = time.process_time()
    for image in images:
        buffer, _ = preprocess_for([image], pre, out=buffer)
    return decode, 1000 * (time.process_time() - start) / len(sample)


def cluster_on_paper(gpus: int, gpu_img_s: float, decode_ms: float, preprocess_ms: float) -> dict:
    """Actors, GPUs per actor and expected pictures/s of a ``gpus``-GPU cluster.

    An actor preprocesses a batch on its CPU, then waits for the GPU: with ``preprocess_ms`` per picture next to
    the GPU's ``1000 / gpu_img_s``, ``ceil((gpu + pre) / gpu)`` actors per GPU keep it busy. Decode tasks need
    ``gpu_img_s * decode_ms`` CPU-milliseconds per second per GPU.
    """
    import math

    gpu_ms = 1000 / gpu_img_s
    per_gpu = math.ceil((gpu_ms + preprocess_ms) / gpu_ms)
    one_actor = min(gpu_img_s, 1000 / (gpu_ms + preprocess_ms))
    decode_cpus = gpu_img_s * decode_ms / 1000
    return {"gpus": gpus, "actors": gpus * per_gpu, "gpus_per_actor": round(1 / per_gpu, 3),
            "expected_pictures_per_s": gpus * gpu_img_s, "one_actor_per_gpu_pictures_per_s": round(gpus * one_actor),
            "decode_cpus_per_gpu": round(decode_cpus, 1), "cpus_per_gpu": round(decode_cpus + per_gpu, 1),
            "cpus_total": round(gpus * (decode_cpus + per_gpu)), "pictures_per_hour": round(gpus * gpu_img_s * 3600)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="BACKEND:PATH (default: the tiny 320 x 320 export)")
    parser.add_argument("--images", type=Path, default=TINY50)
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--gpu-img-s", type=float, default=924.0,
                        help="pictures/s of one GPU (docs/benchmarks.md: H200, R-50 640x640, fp16 + CUDA graph, batch 32)")
    parser.add_argument("--gpus", type=int, default=16)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench_infer")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--paper-hw", default="640x640", help="input size of the GPU figure (preprocessing is timed at it)")
    args = parser.parse_args()
    paper_hw = tuple(int(v) for v in args.paper_hw.lower().split("x"))

    args.work.mkdir(parents=True, exist_ok=True)
    backend, path = resolve_model(args.model or default_model(args.work))
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gflv2-bench-infer-") as tmp:
        pictures = link_pictures(args.images, args.pictures, Path(tmp) / "pictures")
        source = Path(tmp) / "pictures"
        rows.append(predict_loop(backend, str(path), pictures))
        rows.append(infer_run("in process", source, backend, str(path), Path(tmp) / "off", args, ray="off"))
        for n in (int(a) for a in args.actors.split(",")):
            rows.append(infer_run(f"ray x{n}", source, backend, str(path), Path(tmp) / f"ray{n}", args, ray="local", actors=n))
            shutil.rmtree(Path(tmp) / f"ray{n}")
        rows.append(predict_loop(backend, str(path), pictures))
        decode, preprocess = cpu_ms_per_picture(pictures, paper_hw)
    base = (rows[0]["pictures_per_s"] + rows[-1]["pictures_per_s"]) / 2  # the loop before and after, averaged
    n = args.pictures
    print(f"{n} pictures, {backend}:{path}, batch {args.batch_size}, 1 thread per detector; load average at start "
          f"{tuple(round(v, 2) for v in load_start)}")
    print(f"{'mode':14} {'wall s':>8} {'start-up s':>10} {'pic/s':>8} {'steady':>8} {'x loop':>7} {'steady x loop':>14} {'load 1m':>8}")
    for r in rows:
        steady = r["steady_pictures_per_s"] or float("nan")
        r["ratio_to_loop"], r["steady_ratio_to_loop"] = r["pictures_per_s"] / base, steady / base
        print(f"{r['mode']:14} {r['wall_s']:8.2f} {r['startup_s'] or 0:10.2f} {r['pictures_per_s']:8.2f} {steady:8.2f} "
              f"{r['ratio_to_loop']:7.2f} {r['steady_ratio_to_loop']:14.2f} {r['load'][0]:8.2f}")
    one = next((r for r in rows if r["mode"] == "ray x1"), None)
    overhead = None
    if one is not None and one["steady_pictures_per_s"]:
        overhead = {"ms_per_picture_startup_excluded": 1000 * (1 / one["steady_pictures_per_s"] - 1 / base),
                    "ms_per_picture_startup_included": 1000 * (one["wall_s"] / n - 1 / base)}
        print(f"Ray overhead per picture (1 actor vs the loop): {overhead['ms_per_picture_startup_excluded']:.1f} ms "
              f"start-up excluded, {overhead['ms_per_picture_startup_included']:.1f} ms included "
              f"(start-up {one['startup_s']:.1f} s over {n} pictures)")
    paper = cluster_on_paper(args.gpus, args.gpu_img_s, decode, preprocess)
    print(f"CPU per picture on one core here: read + decode {decode:.1f} ms, preprocessing to {args.paper_hw} {preprocess:.1f} ms")
    print(f"on paper, {paper['gpus']} GPUs at {args.gpu_img_s:g} pictures/s each: {paper['actors']} actors at "
          f"--gpus-per-actor {paper['gpus_per_actor']:g} (one actor per GPU: ~{paper['one_actor_per_gpu_pictures_per_s']} "
          f"pictures/s), ~{paper['expected_pictures_per_s']:.0f} pictures/s ({paper['pictures_per_hour'] / 1e6:.1f} M/hour) "
          f"with {paper['decode_cpus_per_gpu']} decode CPUs + {paper['cpus_per_gpu'] - paper['decode_cpus_per_gpu']:.0f} actor "
          f"CPUs per GPU, {paper['cpus_total']} CPUs in all")
    print(f"load average at end {tuple(round(v, 2) for v in os.getloadavg())}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_info(), "pictures": n, "model": f"{backend}:{path}",
                                        "batch_size": args.batch_size, "rows": rows, "ray_overhead": overhead,
                                        "cluster_on_paper": paper, "decode_cpu_ms_per_picture": decode,
                                        "preprocess_cpu_ms_per_picture": preprocess,
                                        "load_average_start": load_start, "load_average_end": os.getloadavg()}, indent=2))
        print(f"report written to {args.out}")


if __name__ == "__main__":
    main()
