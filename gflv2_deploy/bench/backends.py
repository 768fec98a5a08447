"""Latency of several backends on the same model, shapes and batches, measured in one run.

Per (shape, batch) case and backend two timings (host wall clock, p50/p90/p99 over many iterations
after an untimed warm-up):
- ``infer``: the network on a preprocessed batch, up to the pre-NMS outputs as numpy arrays. torch runs
  the head and the decode of ``TorchRunner.infer``, onnxruntime the exported pre-NMS graph (decode and
  DGQP in it): the same work on both sides.
- ``e2e``: ``Detector.detect(images)``: the shared numpy preprocessing (resize, normalise, pad), the
  network, NMS (torch: the reference post-processing with per-level top-``nms_pre``; onnxruntime: host
  NMS after a pre-NMS graph, or the graph's own NMS for an end-to-end one) and the mapping of boxes to
  the original picture. The picture is a real one (``image`` or a generated synthetic scene) resized,
  untimed, to HALF the case's height and width, so that the timed preprocessing upsamples it x2 to
  exactly H x W (the usual direction for COCO pictures, 480 x 640 -> 800 x 1067).
  Each e2e iteration also times its own stages (``e2e_stages``: preprocessing, the runner's network
  call, the rest), so e2e >= network holds within the same iterations. The separately timed ``infer``
  can still exceed e2e on a busy machine; ``consistency_notes`` flags such rows with the explanation.
  The ``cpp`` backend runs its own whole pipeline in C++ (``CppRunner.detect_pictures``), and its stages are
  the ones the C++ runtime measured inside each call.

Fairness: the backends alternate in ``rounds`` (A B A B ...) so a slow spell of a shared machine hits
all of them, and within a backend's block its network and e2e calls alternate call by call;
``threads`` sets torch's intra-op threads, onnxruntime's ``intra_op_num_threads`` AND OpenVINO's
``INFERENCE_NUM_THREADS``. The report records the load average at the start and the end
and warns (``load_warning``) when it exceeded half the usable cores: such figures are not comparable.
Random weights (no ``model``) give the same latency as trained ones for the network, but almost no
NMS candidates (scores ~0.005 < 0.05): e2e then understates the NMS cost of a trained model.

Arithmetic rate: every row carries the network's GFLOP (bench/flops.py) and the GFLOP/s its p50
achieves. With ``peak`` the sustained FP32 rate of the dominant layer alone is measured per backend
first; each comparison row then gives the fraction of that machine peak reached, and the ceiling it
puts on any speed-up over torch (peak / torch's achieved rate).

ONNX files for onnxruntime and OpenVINO are exported on the fly when not given (pre-NMS graph, fixed
H x W of the case, dynamic batch) into ``cache_dir`` (default: the user cache folder, never the current
one) and reused by later runs (the key holds the weights' origin).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from gflv2_deploy.bench.flops import PEAK_LAYER, count_gflop, measure_conv_peak, peak_layer_gflop
from gflv2_deploy.bench.timing import load_warning, machine_info, stats_from_samples, usable_cores
from gflv2_deploy.errors import UserError
from gflv2_deploy.progress import progress_iter

_RANDOM_SEED = 0  # random-weight models are built under this torch seed (same weights in torch and ONNX)


def default_cache_dir() -> Path:
    """Where on-the-fly exports are kept: ``$XDG_CACHE_HOME/gflv2-deploy/bench``, else ``~/.cache/gflv2-deploy/bench``.

    Never the current folder (a benchmark run from a source tree must not leave files in it). A relative
    XDG_CACHE_HOME is ignored, as the XDG base-directory specification asks.
    """
    root = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(root) if root and Path(root).is_absolute() else Path.home() / ".cache"
    return base / "gflv2-deploy" / "bench"


def source_image(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The picture timed in e2e: ``path`` read with ``read_image``, else synthetic scene 1 of seed 0 (BGR uint8)."""
    if path is not None:
        from gflv2_deploy.data.image_io import read_image

        return read_image(path)
    from gflv2_deploy.data.synth import render_synthetic_image

    return render_synthetic_image(0, 1, image_size=(480, 640))[0]


def _time_interleaved(fns: dict[str, Callable[[], object]], *, iterations: int, warmup: int, rounds: int,
                      batch: int, progress: str | None = None) -> dict[str, dict[str, float]]:
    """Warm every callable up, then time them alternately in ``rounds`` blocks; stats per name.

    Names ``"<backend>/<what>"``: the backends take turns block by block (A B A B ...), and within a
    backend's block its callables alternate call by call (infer, e2e, infer, e2e, ...), so that a
    backend's network and e2e timings share the same moments of a busy machine. A callable may return
    ``{stage: milliseconds}`` measured inside the call: those samples give stats under
    ``"<name>.<stage>"``, from the same iterations as the call's own total. Each stats dict also holds
    its samples (``samples_ms``, in timing order, rounded to 0.1 microsecond). ``progress``: the description of
    progress lines on stderr (every few seconds, never inside a timed call), None for none.
    """
    total = (warmup + iterations) * len(fns)
    ticks = iter(progress_iter(range(total), total, progress or "", progress is not None, plain=True))
    for fn in fns.values():
        for _ in range(warmup):
            fn()
            next(ticks, None)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    groups: dict[str, list[str]] = {}
    for name in fns:
        groups.setdefault(name.split("/")[0], []).append(name)
    per_round = [iterations // rounds + (1 if r < iterations % rounds else 0) for r in range(rounds)]
    for count in per_round:
        for members in groups.values():
            for _ in range(count):
                for name in members:
                    t0 = time.perf_counter()
                    stages = fns[name]()
                    samples[name].append((time.perf_counter() - t0) * 1000.0)
                    for stage, ms in (stages.items() if isinstance(stages, dict) else ()):
                        samples.setdefault(f"{name}.{stage}", []).append(ms)
                    next(ticks, None)
    for _ in ticks:  # the closing line
        pass
    # the raw samples travel with their statistics: a report draws the distribution, not only its percentiles
    return {name: {**stats_from_samples(s, warmup, batch).to_dict(), "samples_ms": [round(v, 4) for v in s]}
            for name, s in samples.items()}


E2E_STAGES: tuple[str, ...] = ("preprocess", "network", "postprocess")


@contextlib.contextmanager
def clocked_network(runner: Any, spent: list[float]) -> Iterator[None]:
    """While the block runs, ``runner``'s network calls (``infer``, ``head_outputs``) append their milliseconds to
    ``spent``; a nested call (``TorchRunner.infer`` calls ``head_outputs``) counts once. Restored on exit.

    The runner itself is instrumented, not a copy of it: a copy of a runner that owns native resources (the C++
    runtime's detector, TensorRT's buffers) would be a second owner of them. Bound methods are shadowed by
    instance attributes for the block (``Detector`` picks its post-processing by the runner's attributes, and
    ``TorchRunner.reference_detections`` reaches ``head_outputs`` through ``self``, so a proxy would miss it).
    """
    depth = [0]

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent.append((time.perf_counter() - t0) * 1000.0)

        return timed

    own = vars(runner)
    saved: dict[str, Any] = {}
    for name in ("infer", "head_outputs"):
        fn = getattr(runner, name, None)
        if callable(fn):
            saved[name] = own.get(name, _ABSENT)
            setattr(runner, name, wrap(fn))
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is _ABSENT:
                delattr(runner, name)
            else:
                setattr(runner, name, previous)


_ABSENT = object()


def _staged_e2e(det: Any, pictures: list[np.ndarray]) -> Callable[[], dict[str, float]]:
    """``det.detect(pictures)`` as preprocess + the rest, with the network call timed inside it.

    Returns ``{"preprocess", "network", "postprocess"}`` ms of that one call: the three add up to the
    e2e time of the same iteration (less the call overhead), so e2e >= network holds per iteration and
    hence for every percentile. A runner with its own whole pipeline (the C++ runtime: ``detect_pictures``
    and ``last_timings``) runs it, and its stages are the ones it measured itself.
    """
    runner = det.runner
    if hasattr(runner, "detect_pictures") and hasattr(runner, "last_timings"):
        def run_native() -> dict[str, float]:
            det.detect(pictures)
            ms = runner.last_timings()
            return {"preprocess": ms["preprocess_ms"], "network": ms["inference_ms"], "postprocess": ms["postprocess_ms"]}

        return run_native
    spent: list[float] = []

    def run() -> dict[str, float]:
        spent.clear()
        t0 = time.perf_counter()
        batch, metas = det.preprocess(pictures)
        t1 = time.perf_counter()
        with clocked_network(runner, spent):
            det.detect_preprocessed(batch, metas)
        rest = (time.perf_counter() - t1) * 1000.0
        network = sum(spent)
        return {"preprocess": (t1 - t0) * 1000.0, "network": network, "postprocess": max(rest - network, 0.0)}

    return run


def consistency_notes(row: dict[str, Any]) -> list[str]:
    """Why a result row's figures contradict each other; empty when they do not.

    e2e must not be faster than the network it contains. Within the e2e iterations this holds by
    construction (``e2e_stages["network"]`` is timed inside them); the separately timed ``infer`` ran in
    other moments, and on a busy machine its p50 can exceed e2e's: such a row is flagged with the
    network time measured inside e2e, which is the one to compare with.
    """
    e2e, infer, stages = row.get("e2e"), row["infer"], row.get("e2e_stages") or {}
    if not e2e:
        return []
    notes = []
    inner = stages.get("network")
    if inner is not None and e2e["p50_ms"] < inner["p50_ms"]:
        notes.append(f"e2e p50 {e2e['p50_ms']:.2f} ms is below the network p50 {inner['p50_ms']:.2f} ms timed inside "
                     "the same iterations: a timing bug, discard the row")
    if e2e["p50_ms"] < infer["p50_ms"]:
        inside = f"; inside e2e the network took {inner['p50_ms']:.2f} ms (p50)" if inner is not None else ""
        notes.append(f"e2e p50 {e2e['p50_ms']:.2f} ms is below the separately timed network p50 {infer['p50_ms']:.2f} ms: "
                     f"the two ran at different moments of a busy machine{inside}; compare e2e with that")
    return notes


def _weights_key(model: Path | None, config: str, num_classes: int) -> str:
    if model is None:
        import torch

        return f"{config}-c{num_classes}-random{_RANDOM_SEED}-torch{torch.__version__}"
    from gflv2_deploy.model.checkpoint import file_sha256

    return f"{model.stem}-{file_sha256(model)[:12]}"


def _export_cached(torch_model: Any, source: Path | None, config: str, hw: tuple[int, int], nms: str,
                   cache_dir: Path) -> Path:
    """The ONNX of ``torch_model`` for a fixed ``hw`` (dynamic batch), exported once into ``cache_dir``."""
    from gflv2_deploy.export.onnx import export_onnx

    key = _weights_key(source, config, torch_model.num_classes)
    path = cache_dir / f"{key}-{hw[0]}x{hw[1]}-{nms}.onnx"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        export_onnx(torch_model, path, nms=nms, dynamic_batch=True, dynamic_hw=False, input_hw=hw)  # type: ignore[arg-type]
    return path


def _check_engine_backends(backends: Sequence[str], model: str | os.PathLike[str] | None, device: str) -> None:
    """Before anything is loaded: a TensorRT backend needs ``model`` to be an engine that can run here
    (one UserError line naming TensorRT, cuda-python or the GPU when not); onnxruntime and OpenVINO cannot share it."""
    from gflv2_deploy.runtime.factory import TRT_BACKENDS, cuda_device_index, infer_backend
    from gflv2_deploy.runtime.trt_runner import check_engine_loadable

    trt = [b for b in backends if b in TRT_BACKENDS]
    if model is None or infer_backend(model) not in TRT_BACKENDS:
        raise UserError(f"{trt[0]} times an engine: give --model <engine> written by `gflv2-deploy build`")
    onnx_backends = [b for b in backends if b in ("onnxruntime", "openvino")]
    if onnx_backends:
        raise UserError(f"{onnx_backends[0]} runs the ONNX, not the engine: time it in its own run with --model <model>.onnx")
    for backend in trt:
        check_engine_loadable(model, backend=backend, device=cuda_device_index(device))


def _load_models(model: Path | None, config: str | None, allow_unsafe_pickle: bool) -> tuple[Any, str, Path | None, list[str]]:
    """(torch model, config name, checkpoint or None, notes) for ``model`` (.pth / .onnx / engine / None) and ``config``."""
    import torch

    from gflv2_deploy.model.load import load_torch_model
    from gflv2_deploy.runtime.factory import check_model_file, infer_backend

    notes: list[str] = []
    if model is not None:
        check_model_file(model)
    if model is not None and infer_backend(model) == "torch":
        net = load_torch_model(model, config, allow_unsafe_pickle=allow_unsafe_pickle)
        return net, net.config.name, model, notes
    num_classes = None
    if model is not None:  # an ONNX or an engine: torch times random weights of the same architecture
        from gflv2_deploy.contract_io import read_onnx_contract
        from gflv2_deploy.engine.manifest import manifest_contract, read_manifest

        contract = (read_onnx_contract(model) if model.suffix == ".onnx"
                    else manifest_contract(read_manifest(model), str(model)))
        if contract is None:
            raise UserError(f"{model} carries no graph contract: build it from an ONNX written by `gflv2-deploy export`")
        config = config or contract.model.config_name
        num_classes = contract.num_classes
        notes.append(f"torch runs random weights of {config} ({num_classes} classes): the same architecture as {model.name}")
    name = config or "gflv2_tiny"
    with torch.random.fork_rng():
        torch.manual_seed(_RANDOM_SEED)
        net = load_torch_model(None, name, num_classes=num_classes)
    if model is None:
        notes.append(f"random weights ({name}, seed {_RANDOM_SEED}): e2e includes almost no NMS work")
    return net, name, None, notes


def run_backend_benchmark(
    *,
    backends: Sequence[str] = ("torch", "onnxruntime"),
    model: str | os.PathLike[str] | None = None,
    config: str | Sequence[str] | None = None,
    shapes: Sequence[tuple[int, int]] = ((640, 640),),
    batches: Sequence[int] = (1,),
    iterations: int = 20,
    warmup: int = 3,
    rounds: int = 2,
    threads: int | None = None,
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    image: str | os.PathLike[str] | None = None,
    onnx_nms: str = "none",
    e2e: bool = True,
    peak: bool = False,
    allow_unsafe_pickle: bool = False,
    progress: bool = False,
    tf32: bool = False,
) -> dict[str, Any]:
    """Time every backend on every (shape, batch); returns ``{"machine", "settings", "results", "comparison", "notes",
    "load_warning"}``.

    model: a checkpoint (.pth: torch loads it, onnxruntime gets its export), an exported ONNX (.onnx:
        onnxruntime runs it, torch random weights of its architecture), or None (random weights of ``config``).
    config: a configuration name, or several (random weights only): their rows share one report, one
        machine description and one peak measurement. With several, ``settings["config"]`` lists them
        and ``settings["onnx_files"]`` keys are ``"<config> <H>x<W>"`` instead of ``"<H>x<W>"``.
    shapes: network input (H, W), multiples of 32. iterations: timed calls per backend and timing.
    onnx_nms: NMS form of on-the-fly exports ("none": host NMS in e2e; "onnx": NMS in the graph).
    cache_dir: where on-the-fly exports are kept (default ``default_cache_dir()``, never the current folder).
    peak: also measure the machine's FP32 rate on the dominant layer (CPU only; adds ``"peak"``).
    tf32: torch on CUDA with TF32 convolutions and matmuls (default: true FP32, the reference; ``settings["torch_math"]``).
    progress: progress lines on stderr per case (``bench <config> HxW batch N: done/total ...``), every few seconds.
    results: one row per backend x shape x batch with ``infer`` and ``e2e`` latency statistics (ms),
        ``e2e_stages`` (preprocess / network / postprocess statistics timed inside the e2e iterations),
        ``gflop`` (whole batch), ``infer_gflop_s`` and ``consistency`` (``consistency_notes``: empty when
        e2e >= network holds).
    load_warning: one line when the 1-minute load average exceeded half the usable cores at the start or
        the end of the run (the load averages are in ``machine``), else None.
    comparison: per shape x batch and backend, ``speedup_vs_torch`` = torch p50 / backend p50, and with
        ``peak`` the fraction of the machine peak and the speed-up ceiling over torch.
    """
    import torch

    from gflv2_deploy.runtime.factory import BACKENDS, TRT_BACKENDS, check_backend

    if not backends:
        raise UserError(f"--backend names no backend: give one or more of {', '.join(BACKENDS)}, separated by commas")
    backends = [check_backend(b) for b in backends]
    if len(set(backends)) != len(backends):
        raise UserError(f"give each backend once, got {list(backends)}")
    if any(b in TRT_BACKENDS for b in backends):
        _check_engine_backends(backends, model, device)
    if iterations < 1 or warmup < 0 or rounds < 1:
        raise UserError("iterations and rounds must be at least 1, warm-up at least 0")
    if any(b < 1 for b in batches):
        raise UserError(f"batch sizes must be at least 1, got {list(batches)}")
    if onnx_nms not in ("none", "onnx"):
        raise UserError(f"onnx_nms must be none or onnx (onnxruntime cannot run trt), got '{onnx_nms}'")
    if threads is not None and threads < 1:
        raise UserError(f"threads must be at least 1, got {threads}")
    if peak and device != "cpu":
        raise UserError("--peak measures the CPU's FP32 rate: use it with --device cpu")
    configs = [config] if config is None or isinstance(config, str) else list(config)
    if model is not None and len(configs) > 1:
        raise UserError("--model times one model: give at most one --config with it")
    load_at_start = _load_average()
    previous_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        peak_report = None
        if peak:
            peak_report = {"layer": {**PEAK_LAYER, "gflop": peak_layer_gflop()}, "gflop_s": measure_conv_peak(backends, threads)}
        runs = [_run(backends, model, c, shapes, batches, iterations, warmup, min(rounds, iterations), threads, device,
                     Path(cache_dir) if cache_dir is not None else default_cache_dir(), image, onnx_nms, e2e,
                     allow_unsafe_pickle, progress, tf32) for c in configs]
        settings = runs[0]["settings"]
        if len(runs) > 1:
            settings = {**settings, "config": [r["settings"]["config"] for r in runs],
                        "onnx_files": {f"{r['settings']['config']} {k}": v for r in runs for k, v in r["settings"]["onnx_files"].items()}}
        results = [row for r in runs for row in r["results"]]
        machine = _machine(threads, backends)
        machine["load_average_at_start_1_5_15min"] = load_at_start
        worst = max([load_at_start[0] if load_at_start else 0.0,
                     *(machine.get("load_average_1_5_15min") or [0.0])[:1]])
        report = {"machine": machine, "settings": settings, "results": results,
                  "comparison": comparison_rows(results, max(peak_report["gflop_s"].values()) if peak_report else None),
                  "notes": [n for r in runs for n in r["notes"]],
                  "load_warning": load_warning(worst, usable_cores())}
        if peak_report is not None:
            report["peak"] = peak_report
        return report
    finally:
        torch.set_num_threads(previous_threads)  # the process's setting is not ours to keep


def _run(backends: list[str], model: str | os.PathLike[str] | None, config: str | None, shapes: Sequence[tuple[int, int]],
         batches: Sequence[int], iterations: int, warmup: int, rounds: int, threads: int | None, device: str, cache: Path,
         image: str | os.PathLike[str] | None, onnx_nms: str, e2e: bool, allow_unsafe_pickle: bool,
         progress: bool = False, tf32: bool = False) -> dict[str, Any]:
    """One configuration's ``{"settings", "results", "notes"}`` (run_backend_benchmark adds the rest)."""
    from gflv2_deploy.data.preprocess import stack_img_shapes
    from gflv2_deploy.runtime.detector import Detector
    from gflv2_deploy.runtime.factory import TRT_BACKENDS, make_detector
    from gflv2_deploy.runtime.torch_runner import TorchRunner

    src = Path(model) if model is not None else None
    net, cfg_name, ckpt, notes = _load_models(src, config, allow_unsafe_pickle)
    torch_runner = TorchRunner(net, device, tf32=tf32)
    torch_detector = Detector(torch_runner, net.config.test, net.config.class_names)
    picture = source_image(image)

    results: list[dict[str, Any]] = []
    onnx_files: dict[str, str] = {}
    engines = {b: make_detector(b, src, device=device) for b in backends if b in TRT_BACKENDS and src is not None}
    servers: list[Any] = []  # local Triton servers of the triton backend, one per shape
    for hw in shapes:
        h, w = hw
        gflop_per_image = count_gflop(net, hw)
        small = _resize(picture, (h // 2, w // 2))
        detectors: dict[str, Detector] = {}
        for backend in backends:
            if backend == "torch":
                detectors[backend] = torch_detector
            elif backend in engines:  # one engine for every case: a fixed-size one refuses other shapes clearly
                detectors[backend] = engines[backend]
            else:
                onnx_path = src if src is not None and src.suffix == ".onnx" else _export_cached(net, ckpt, cfg_name, hw, onnx_nms, cache)
                onnx_files[f"{h}x{w}"] = str(onnx_path)
                if backend == "triton":  # the same graph served by a local tritonserver (stopped at exit or GC)
                    from gflv2_deploy.serve.triton_server import serve_onnx_locally

                    servers.append(serve_onnx_locally(onnx_path, threads=threads))
                    detectors[backend] = make_detector(backend, f"{servers[-1].grpc_url}/gflv2")
                else:
                    detectors[backend] = make_detector(backend, onnx_path, device=device, threads=threads)
        for n in batches:
            pictures = [small] * n
            timed: dict[str, Callable[[], object]] = {}
            for backend, det in detectors.items():
                det = det.with_test_config(scale=(max(h, w), min(h, w)))
                batch, metas = det.preprocess(pictures)
                got = tuple(metas[0].pad_shape)
                if got != (h, w):
                    raise UserError(f"{backend}: preprocessing gave {got[0]}x{got[1]} for {h}x{w}")
                shapes_arr = stack_img_shapes(metas)
                # returns None: an outputs dict would read as stage timings (_time_interleaved)
                timed[f"{backend}/infer"] = (lambda d=det, b=batch, s=shapes_arr: (d.runner.infer(b, s), None)[1])
                if e2e:
                    timed[f"{backend}/e2e"] = _staged_e2e(det, pictures)
            stats = _time_interleaved(timed, iterations=iterations, warmup=warmup, rounds=rounds, batch=n,
                                      progress=f"bench {cfg_name} {h}x{w} batch {n}" if progress else None)
            for backend, det in detectors.items():
                row = {"backend": backend, "model": cfg_name, "shape": f"{h}x{w}", "batch": n,
                       "weights": str(ckpt) if ckpt else ("random" if src is None or backend == "torch" else str(src)),
                       "graph": (str(src) if backend in engines else onnx_files.get(f"{h}x{w}")) if backend != "torch" else None,
                       "infer": stats[f"{backend}/infer"], "e2e": stats.get(f"{backend}/e2e"),
                       "e2e_stages": {k: stats[f"{backend}/e2e.{k}"] for k in E2E_STAGES} if e2e else None,
                       "gflop": gflop_per_image * n,
                       "infer_gflop_s": gflop_per_image * n / (stats[f"{backend}/infer"]["p50_ms"] / 1000.0)}
                row["consistency"] = consistency_notes(row)
                results.append(row)
    return {"settings": {
        "backends": backends, "model": str(src) if src else None, "config": cfg_name, "shapes": [f"{h}x{w}" for h, w in shapes],
        "batches": list(batches), "iterations": iterations, "warmup": warmup, "rounds": rounds, "device": device,
        "threads": threads, "onnx_nms": onnx_nms, "image": str(image) if image else "synthetic (seed 0, index 1, 480x640)",
        "e2e_source": "picture resized to H/2 x W/2, upsampled x2 by the timed preprocessing", "onnx_files": onnx_files,
        "cache_dir": str(cache), "torch_math": torch_runner.math,
    }, "results": results, "notes": notes}  # fmt: skip


def comparison_rows(results: Sequence[dict[str, Any]], peak_gflop_s: float | None = None) -> list[dict[str, Any]]:
    """Per (model, shape, batch) and backend: p50 of infer and e2e, and the speed-up over torch (torch p50 / p50).

    ``e2e_over_network``: e2e p50 / p50 of the network timed inside the same e2e iterations (>= 1 by
    construction; the share of pre- and post-processing). ``consistent``: the row has no ``consistency`` note.

    With ``peak_gflop_s`` (the machine's measured FP32 rate on the dominant layer) also
    ``fraction_of_peak`` (achieved infer GFLOP/s / peak) and ``speedup_ceiling_vs_torch`` (peak /
    torch's achieved rate: what a backend running the whole network at that peak would reach).
    """
    rows = []
    base = {(r["model"], r["shape"], r["batch"]): r for r in results if r["backend"] == "torch"}
    for r in results:
        ref = base.get((r["model"], r["shape"], r["batch"]))
        row = {"backend": r["backend"], "model": r["model"], "shape": r["shape"], "batch": r["batch"],
               "infer_p50_ms": r["infer"]["p50_ms"], "e2e_p50_ms": r["e2e"]["p50_ms"] if r["e2e"] else None,
               "infer_speedup_vs_torch": None, "e2e_speedup_vs_torch": None, "infer_gflop_s": r.get("infer_gflop_s"),
               "fraction_of_peak": None, "speedup_ceiling_vs_torch": None, "e2e_over_network": None,
               "consistent": not r.get("consistency")}
        inner = (r.get("e2e_stages") or {}).get("network")
        if r["e2e"] and inner and inner["p50_ms"] > 0:
            row["e2e_over_network"] = r["e2e"]["p50_ms"] / inner["p50_ms"]
        if peak_gflop_s and r.get("infer_gflop_s"):
            row["fraction_of_peak"] = r["infer_gflop_s"] / peak_gflop_s
            if ref is not None:
                row["speedup_ceiling_vs_torch"] = peak_gflop_s / ref["infer_gflop_s"]
        if ref is not None:
            row["infer_speedup_vs_torch"] = ref["infer"]["p50_ms"] / r["infer"]["p50_ms"]
            if r["e2e"] and ref["e2e"]:
                row["e2e_speedup_vs_torch"] = ref["e2e"]["p50_ms"] / r["e2e"]["p50_ms"]
        rows.append(row)
    return rows


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (> cores: other work shared the CPU), or None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _machine(threads: int | None, backends: Sequence[str] = ()) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {**machine_info(), "torch_threads": torch.get_num_threads(),
                            "torch_interop_threads": torch.get_num_interop_threads(),
                            "onnxruntime_intra_op_threads": threads if threads is not None else "onnxruntime default (one per physical core)"}
    if "openvino" in backends:
        info["openvino_inference_num_threads"] = threads if threads is not None else "openvino default"
        from gflv2_deploy.runtime.openvino_runner import DEFAULT_PRECISION

        info["openvino_precision_hint"] = DEFAULT_PRECISION  # the factory's runners use the default
    info["affinity_cpus"] = usable_cores()
    info["load_average_1_5_15min"] = _load_average()
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info

