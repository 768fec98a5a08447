"""C++ runtime vs the Python Detector, end to end, on one ONNX with the same thread count, in one run.

    python cpp/tools/speed_breakdown.py MODEL.onnx [--shape 800x1344] [--batch 1 --batch 8] [--threads 2]
        [--iterations 10] [--image PHOTO]

The picture (a photo, default the first tiny50 one) is resized to H/2 x W/2 and both detectors resize it
back to H x W (test scale (max, min) of the shape), as ``gflv2-deploy bench`` does. The two detectors are
timed alternately, iteration by iteration. For C++ it also reports its own split (preprocessing, inference,
post-processing, measured inside the library) and pre+post as a share of its end-to-end time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> None:
    import cv2

    from gflv2_deploy.data.image_io import read_image
    from gflv2_deploy.runtime.factory import make_detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--shape", default="800x1344")
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image", default=str(REPO / "tests/data/coco_val2017_tiny50/val2017/000000006818.jpg"))
    args = ap.parse_args()
    h, w = (int(v) for v in args.shape.split("x"))
    picture = cv2.resize(read_image(args.image), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    scale = (max(h, w), min(h, w))
    py = make_detector("onnxruntime", args.model, threads=args.threads).with_test_config(scale=scale)
    cpp = make_detector("cpp", args.model, threads=args.threads).with_test_config(scale=scale)
    rows = []
    for n in args.batch or [1, 8]:
        pictures = [picture] * n
        times: dict[str, list[float]] = {"python": [], "cpp": [], "cpp_pre": [], "cpp_infer": [], "cpp_post": []}
        for i in range(args.warmup + args.iterations):
            for name, det in (("python", py), ("cpp", cpp)) if i % 2 == 0 else (("cpp", cpp), ("python", py)):
                start = time.perf_counter()
                det.detect(pictures)
                elapsed = (time.perf_counter() - start) * 1000
                if i < args.warmup:
                    continue
                times[name].append(elapsed)
                if name == "cpp":
                    t = cpp.runner.last_timings()
                    times["cpp_pre"].append(t["preprocess_ms"])
                    times["cpp_infer"].append(t["inference_ms"])
                    times["cpp_post"].append(t["postprocess_ms"])
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"shape": args.shape, "batch": n, "threads": args.threads, "iterations": args.iterations,
               "python_e2e_ms": med["python"], "cpp_e2e_ms": med["cpp"], "cpp_pre_ms": med["cpp_pre"],
               "cpp_infer_ms": med["cpp_infer"], "cpp_post_ms": med["cpp_post"],
               "cpp_pre_post_share": (med["cpp_pre"] + med["cpp_post"]) / med["cpp"],
               "cpp_vs_python": med["cpp"] / med["python"]}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
