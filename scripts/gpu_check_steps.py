"""The steps of scripts/gpu_check.sh, one per call: ``python3 scripts/gpu_check_steps.py STEP --out DIR``.

Each step writes ``DIR/STEP.json``: {"step", "status": "passed" | "failed" | "skipped", "seconds", "reason",
"figures"}; ``summary`` gathers them into ``DIR/gpu_check.json``. Steps that need a GPU are skipped (with the
reason) where the environment step found none, and steps that need the build are skipped when it failed. Runs with
the system ``python3`` of a bare GPU machine: numpy and the standard library at least; torch, torchvision, pytest,
onnxruntime and OpenCV where the step needs them (a missing one skips or fails that step, saying which).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "plugins" / "gflv2_nms" / "tools"
KERNEL_TESTS = REPO / "tests" / "unit" / "nms_plugin" / "test_nms_plugin_cuda.py"
PHOTOS = REPO / "tests" / "data" / "coco_val2017_tiny50" / "val2017"
STEPS = ("environment", "build", "trt_plugin", "kernel_tests", "nms_bench", "sanitizers", "torch_parity")


class Skip(Exception):
    """The step cannot run here; the message says why."""


def record(out: Path, step: str, status: str, seconds: float, reason: str | None = None,
           figures: dict[str, Any] | None = None) -> None:
    data = {"step": step, "status": status, "seconds": round(seconds, 2), "reason": reason, "figures": figures or {}}
    (out / f"{step}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"[gpu_check] {step}: {status}" + (f" ({reason})" if reason else ""), flush=True)


def previous(out: Path, step: str) -> dict[str, Any]:
    path = out / f"{step}.json"
    return json.loads(path.read_text()) if path.is_file() else {"status": "missing"}


def require_gpu(out: Path) -> dict[str, Any]:
    env = previous(out, "environment")
    if not env.get("figures", {}).get("gpu"):
        raise Skip("no CUDA GPU: " + str(env.get("figures", {}).get("gpu_reason", "the environment step did not run")))
    return env["figures"]


def require_build(out: Path) -> dict[str, Any]:
    require_gpu(out)
    build = previous(out, "build")
    if build.get("status") != "passed":
        raise Skip("the build step did not pass")
    return build["figures"]


def run(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` with its output appended to ``log``; the output is also returned."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n[exit {done.returncode}]\n")
    return done


def library_env(build: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["GFLV2_NMS_CUDA_LIB"] = build["cuda_library"]
    env["GFLV2_NMS_ORT_LIBRARY"] = build["ort_library"]
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


# --- steps -----------------------------------------------------------------------------------------------------


def step_environment(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "gpu": False}
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        figures["nvidia_smi"] = (done.stdout or done.stderr).strip().splitlines()
    for name in ("numpy", "torch", "torchvision", "onnxruntime", "onnx", "cv2", "pytest"):
        try:
            module = importlib.import_module(name)
            figures[name] = str(getattr(module, "__version__", "present"))
        except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
            figures[name] = None
            figures[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:200]
    if figures.get("torch"):
        import torch

        figures["torch_cuda"] = torch.version.cuda
        figures["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        figures["gpu"] = bool(torch.cuda.is_available())
        if figures["gpu"]:
            figures["device"] = torch.cuda.get_device_name(0)
            figures["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        figures["tf32_defaults"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                                    "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    if not figures["gpu"]:
        figures["gpu_reason"] = ("torch sees no CUDA device" if figures.get("torch") else
                                 "torch is not installed" + ("" if smi else " and nvidia-smi is absent"))
    for tool in ("nvcc", "cmake", "ninja", "compute-sanitizer"):
        path = shutil.which(tool) or (f"/usr/local/cuda/bin/{tool}" if Path(f"/usr/local/cuda/bin/{tool}").is_file() else None)
        figures[tool] = path
        if path and tool in ("nvcc", "cmake"):
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
            figures[f"{tool}_version"] = next((line for line in version.splitlines() if "release" in line or "version" in line), "")
    return figures


def step_build(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = require_gpu(out)
    if not env.get("nvcc") or not env.get("cmake"):
        raise Skip("nvcc or cmake missing")
    build = Path(args.build)
    arch = os.environ.get("GFLV2_GPU_CHECK_ARCH", "native")  # e.g. 90 where CMake cannot detect the GPU itself
    log = out / "build.log"
    log.write_text("")
    configure = [env["cmake"], "-S", str(REPO / "plugins" / "gflv2_nms"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_CUDA_ARCHITECTURES={arch}", f"-DCMAKE_CUDA_COMPILER={env['nvcc']}",
                 "-DGFLV2_NMS_REQUIRE_GTEST=OFF", f"-DGFLV2_PYTHON={sys.executable}"]
    if env.get("ninja"):
        configure += ["-G", "Ninja"]
    started = time.perf_counter()
    done = run(configure, log, args.limit)
    if done.returncode != 0:
        raise RuntimeError("cmake configure failed: " + " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:]))
    targets = ["gflv2_nms_cuda", "gflv2_nms_ort", "test_trt_plugin10", "test_trt_plugin11"]
    done = run([env["cmake"], "--build", str(build), "-j", str(os.cpu_count() or 4), "--target", *targets], log,
               max(10.0, args.limit - (time.perf_counter() - started)))
    if done.returncode != 0:
        raise RuntimeError("build failed: " + " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:]))
    return {"build_dir": str(build), "cuda_library": str(build / "libgflv2_nms_cuda.so"),
            "ort_library": str(build / "libgflv2_nms_ort.so"), "targets": targets, "architecture": arch,
            "log": str(log)}


def step_trt_plugin(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    build = require_build(out)
    figures, failed = {}, []
    for major in (10, 11):
        exe = Path(build["build_dir"]) / f"test_trt_plugin{major}"
        done = run([str(exe)], out / "trt_plugin.log", args.limit / 2)
        figures[f"tensorrt{major}"] = {"exit": done.returncode, "output": done.stdout.strip().splitlines()[-3:]}
        if done.returncode != 0:
            failed.append(f"test_trt_plugin{major}")
    if failed:
        raise RuntimeError(", ".join(failed) + " failed (see trt_plugin.log)")
    return figures


def step_kernel_tests(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    build = require_build(out)
    env = library_env(build)
    if importlib.util.find_spec("pytest") is not None:
        xml = out / "kernel_tests.xml"
        done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(KERNEL_TESTS),
                    f"--junitxml={xml}"], out / "kernel_tests.log", args.limit, env=env)
        if not xml.is_file():
            raise RuntimeError("pytest wrote no report: " + " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:]))
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed_names = [case.get("name") for case in suite.iter("testcase")
                        if case.find("failure") is not None or case.find("error") is not None]
        figures = {"runner": "pytest", **counts, "passed": counts["tests"] - counts["failures"] - counts["errors"]
                   - counts["skipped"], "failed_tests": failed_names}
    else:
        os.environ.update({k: env[k] for k in ("GFLV2_NMS_CUDA_LIB", "GFLV2_NMS_ORT_LIBRARY")})
        figures = {"runner": "plain (pytest is not installed)", **plain_run(KERNEL_TESTS)}
    if figures.get("failures") or figures.get("errors") or figures.get("failed_tests") or not figures.get("passed"):
        raise RuntimeError(f"kernel tests: {figures}")
    return figures


def step_nms_bench(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    build = require_build(out)
    os.environ["GFLV2_NMS_CUDA_LIB"] = build["cuda_library"]
    sys.path.insert(0, str(TOOLS))
    cuda_nms = importlib.import_module("cuda_nms")
    figures = cuda_nms.bench()
    if not figures["identical_kept_sets"]:
        raise RuntimeError("the kept sets differ from torchvision's on some images: " + json.dumps(figures["batches"]))
    return figures


SANITIZED_RUN = """import sys; sys.path.insert(0, {tools!r}); import numpy as np
from cuda_nms import CudaNms, detections_like
boxes, scores = detections_like(np.random.default_rng(0), 2, 1000, 20)
out, _ = CudaNms().run(boxes, scores, max_dets=50); print("num_dets", out[0].ravel())"""


def step_sanitizers(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    build = require_build(out)
    env = previous(out, "environment")["figures"]
    sanitizer = env.get("compute-sanitizer")
    if not sanitizer:
        raise Skip("compute-sanitizer not found")
    figures: dict[str, Any] = {}
    for tool in ("memcheck", "racecheck"):
        cmd = [sanitizer, "--tool", tool, "--error-exitcode", "99", sys.executable, "-c", SANITIZED_RUN.format(tools=str(TOOLS))]
        try:
            done = run(cmd, out / "sanitizers.log", args.limit / 2 - 2, env=library_env(build))
        except subprocess.TimeoutExpired:
            figures[tool] = {"status": "failed", "reason": f"timed out after {args.limit / 2 - 2:.0f} s"}
            continue
        text = done.stdout + done.stderr
        summary = re.search(r"ERROR SUMMARY: (\d+) error", text)
        if summary is None:  # the tool never attached: this GPU runtime refuses it
            figures[tool] = {"status": "skipped", "reason": "compute-sanitizer did not run: " +
                             " | ".join(text.strip().splitlines()[-3:])[:300]}
        else:
            errors = int(summary.group(1))
            ok = errors == 0 and done.returncode == 0
            figures[tool] = {"status": "passed" if ok else "failed", "errors": errors, "exit": done.returncode}
    states = {f["status"] for f in figures.values()}
    if "failed" in states:
        raise RuntimeError(json.dumps(figures))
    if states == {"skipped"}:
        raise Skip(figures["memcheck"]["reason"])
    return figures


def step_torch_parity(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    require_gpu(out)
    for module in ("torch", "cv2"):
        if importlib.util.find_spec(module) is None:
            raise Skip(f"{module} is not installed (the torch reference and the package's preprocessing need it)")
    import torch

    sys.path.insert(0, str(REPO))
    from gflv2_deploy.data.image_io import read_image
    from gflv2_deploy.eval.compare import DetectionAgreement
    from gflv2_deploy.runtime.factory import make_detector

    checkpoint = os.environ.get("GFLV2_GPU_CHECK_CHECKPOINT")
    if checkpoint:
        model_note = f"checkpoint {checkpoint}"
    else:  # the detecting tiny model of the tests (random weights that detect), saved as the product loads it
        from gflv2_deploy.model.checkpoint import save_checkpoint

        model = load_conftest()._detecting_tiny(0)
        checkpoint = str(Path(args.build).parent / "detecting_tiny.pth")
        save_checkpoint(checkpoint, model, model.config)
        model_note = "detecting tiny model of tests/conftest.py (random weights, seed 0); set GFLV2_GPU_CHECK_CHECKPOINT for a trained one"
    photos = [read_image(p) for p in sorted(PHOTOS.glob("*.jpg"))[:20]]
    cpu = make_detector("torch", checkpoint, device="cpu")
    reference = [cpu.detect([p])[0] for p in photos]

    def compare(**options: Any) -> dict[str, Any]:
        cuda = make_detector("torch", checkpoint, device="cuda", **options)
        agreement = DetectionAgreement(iou_thr=0.99, max_score_delta=1e-4)
        for i, (photo, ref) in enumerate(zip(photos, reference)):
            agreement.update(i, ref, cuda.detect([photo])[0])
        r = agreement.result()
        return {k: r[k] for k in ("num_ref", "num_test", "matched", "matched_fraction", "matched_within_score_fraction",
                                  "score_delta_max", "min_matched_iou")} | {
            "tf32_flags_after": {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                                 "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}}

    figures: dict[str, Any] = {"model": model_note, "photos": len(photos), "match": "IoU >= 0.99, |d score| <= 1e-4",
                               "default": compare()}
    tf32_option = next((name for name in ("tf32", "allow_tf32") if name in inspect.signature(make_detector).parameters), None)
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    figures["tf32_on"] = compare(**({tf32_option: True} if tf32_option else {}))
    figures["tf32_on"]["how"] = f"make_detector({tf32_option}=True)" if tf32_option else "torch.backends flags set to True"
    default = figures["default"]
    if default["matched_fraction"] < 1.0 or default["num_test"] != default["num_ref"] or default["score_delta_max"] > 1e-4:
        raise RuntimeError("the product's default CUDA run differs from the CPU: " + json.dumps(default))
    return figures


# --- running tests without pytest -------------------------------------------------------------------------------


def pytest_stub() -> types.ModuleType:
    """Enough of pytest's API for the kernel tests' module to import and run: marks, parametrize, fixture, skip,
    fail, importorskip."""
    stub = types.ModuleType("pytest")

    class Skipped(Exception):
        pass

    class Mark:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def mark(*margs: Any, **mkwargs: Any) -> Any:
                def decorate(fn: Any) -> Any:
                    fn.__dict__.setdefault("plain_marks", []).append((name, margs, mkwargs))
                    return fn
                return decorate
            return mark

    def fixture(*fargs: Any, **fkwargs: Any) -> Any:
        return fargs[0] if fargs and callable(fargs[0]) else (lambda fn: fn)

    def skip(reason: str = "") -> None:
        raise Skipped(reason)

    def fail(reason: str = "") -> None:
        raise AssertionError(reason)

    def importorskip(name: str, *a: Any, **k: Any) -> Any:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise Skipped(f"{name}: {exc}") from None

    stub.mark, stub.fixture, stub.skip, stub.fail, stub.importorskip = Mark(), fixture, skip, fail, importorskip
    stub.Skipped = Skipped  # type: ignore[attr-defined]
    stub.raises = None  # type: ignore[attr-defined]  # not used by the kernel tests
    return stub


def load_conftest() -> types.ModuleType:
    """tests/conftest.py (the detecting tiny model), imported with the stub when pytest is absent."""
    if importlib.util.find_spec("pytest") is None:
        sys.modules.setdefault("pytest", pytest_stub())
    spec = importlib.util.spec_from_file_location("gflv2_gpu_check_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def plain_run(path: Path) -> dict[str, Any]:
    """Every test function of ``path`` with its parametrize cases; fixtures are the module's own fixture functions
    and ``nms_ort_lib`` (the ONNX Runtime op library of $GFLV2_NMS_ORT_LIBRARY)."""
    stub = sys.modules.setdefault("pytest", pytest_stub())
    sys.path[:0] = [str(REPO), str(path.parent)]
    module = importlib.import_module(path.stem)
    fixtures: dict[str, Any] = {"nms_ort_lib": Path(os.environ["GFLV2_NMS_ORT_LIBRARY"])}
    counts = {"tests": 0, "passed": 0, "failures": 0, "skipped": 0}
    failed: list[str] = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if not name.startswith("test_") or fn.__module__ != module.__name__:
            continue
        cases: list[dict[str, Any]] = [{}]
        for mark, margs, _ in reversed(getattr(fn, "plain_marks", [])):
            if mark == "parametrize":
                names = [n.strip() for n in margs[0].split(",")]
                values = [v if len(names) > 1 else (v,) for v in margs[1]]
                cases = [dict(c, **dict(zip(names, v))) for c, v in itertools.product(cases, values)]
        for case in cases:
            counts["tests"] += 1
            label = f"{name}[{'-'.join(map(str, case.values()))}]" if case else name
            try:
                kwargs = dict(case)
                for param in inspect.signature(fn).parameters:
                    if param not in kwargs:
                        if param not in fixtures:
                            fixtures[param] = getattr(module, param)()
                        kwargs[param] = fixtures[param]
                fn(**kwargs)
                counts["passed"] += 1
            except stub.Skipped:  # type: ignore[attr-defined]
                counts["skipped"] += 1
            except Exception as exc:  # noqa: BLE001 - a failing test is reported, the others still run
                counts["failures"] += 1
                failed.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
    return {**counts, "failed_tests": failed}


# --- summary ----------------------------------------------------------------------------------------------------


def summary(out: Path, total_seconds: float) -> dict[str, Any]:
    steps = [previous(out, s) | {"step": s} for s in STEPS]
    env = previous(out, "environment").get("figures", {})
    data = {"format": "gflv2-deploy/gpu-check", "version": 1, "seconds": round(total_seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "gpu": bool(env.get("gpu")),
            "device": env.get("device"), "passed": all(s.get("status") in ("passed", "skipped") for s in steps),
            "steps": steps}
    (out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    for s in steps:
        print(f"  {s['step']:<14} {s.get('status', 'missing'):<8} {s.get('seconds', 0):>7} s  {s.get('reason') or ''}")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=(*STEPS, "summary"))
    parser.add_argument("--out", required=True, help="folder of the step JSON files")
    parser.add_argument("--build", default=str(REPO / "build" / "gpu_check_build" / "gflv2_nms"), help="CMake build folder")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds this step may take (its subprocesses' bound)")
    parser.add_argument("--total-seconds", type=float, default=0.0, help="summary: the whole run's duration")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step == "summary":
        summary(out, args.total_seconds)
        return 0
    started = time.perf_counter()
    try:
        figures = globals()[f"step_{args.step}"](out, args)
        record(out, args.step, "passed", time.perf_counter() - started, figures=figures)
    except Skip as why:
        record(out, args.step, "skipped", time.perf_counter() - started, reason=str(why))
    except subprocess.TimeoutExpired as exc:
        record(out, args.step, "failed", time.perf_counter() - started, reason=f"timed out: {' '.join(map(str, exc.cmd))[:200]}")
    except Exception as exc:  # noqa: BLE001 - the step failed; the JSON says how, the next step runs
        record(out, args.step, "failed", time.perf_counter() - started, reason=f"{type(exc).__name__}: {str(exc)[:1500]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
