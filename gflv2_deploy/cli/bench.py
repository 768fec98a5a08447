"""``gflv2-deploy bench``: latency and throughput per backend, with speed-ups over torch and (``--peak``) this CPU's peak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import (DeviceOpt, HtmlOpt, OutFileOpt, Tf32Opt, ThreadsOpt, UnsafeOpt, cell, check_html,
                                      parse_hw, print_wide, say, say_error, write_html)
from gflv2_deploy.runtime.factory import backends_help


def bench(
    config: Annotated[Optional[list[str]], typer.Option("--config", "-c", help="Configuration(s) to time with random weights "
                                                        "(default gflv2_tiny), or the configuration of an official --model.")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help=f"Comma-separated backends timed in one run: {backends_help()}; "
                                         "onnxruntime, openvino, triton and cpp get the --model ONNX or an export "
                                         "of it; tensorrt and tensorrt-rtx need an engine as --model.")] = "torch",
    model: Annotated[Optional[Path], typer.Option("--model", "--checkpoint", help="Checkpoint (.pth; exported on the fly for onnxruntime) "
                                                  "or ONNX (.onnx; torch then times random weights of its architecture).")] = None,
    shape: Annotated[list[str], typer.Option(help="Input HxW, multiples of 32; repeatable.")] = ["800x1344"],
    batch: Annotated[list[int], typer.Option(help="Batch size; repeatable.")] = [1],
    iterations: Annotated[int, typer.Option(help="Timed iterations per case and backend.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up iterations per case and backend.")] = 2,
    rounds: Annotated[int, typer.Option(help="Backends alternate in this many blocks of iterations (fairness on a busy machine).")] = 2,
    threads: ThreadsOpt = None,
    image: Annotated[Optional[Path], typer.Option(help="Picture for the end-to-end timing (default: a generated scene).")] = None,
    onnx_nms: Annotated[str, typer.Option(help="NMS of on-the-fly ONNX exports: none (host NMS) or onnx (in the graph).")] = "none",
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where on-the-fly ONNX exports are kept "
                                                      "(default: $XDG_CACHE_HOME or ~/.cache, /gflv2-deploy/bench).")] = None,
    no_e2e: Annotated[bool, typer.Option("--no-e2e", help="Time only the network, not preprocessing + network + NMS.")] = False,
    device: DeviceOpt = "cpu",
    peak: Annotated[bool, typer.Option("--peak", help="Also measure this CPU's FP32 rate on the network's dominant layer: "
                                       "% of peak per backend and the ceiling on any speed-up over torch.")] = False,
    out: OutFileOpt = None,
    html: HtmlOpt = None,
    tf32: Tf32Opt = False,
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Latency p50/p90/p99 and throughput per backend (network, and end to end with preprocessing and NMS), with speed-ups over torch."""
    from gflv2_deploy.bench.backends import default_cache_dir, run_backend_benchmark

    names = [b.strip() for b in backend.split(",") if b.strip()]
    shapes = [parse_hw(s) for s in shape]
    if out is not None:
        check_writable(out)
    check_html(html)
    if "onnxruntime" in names and (model is None or model.suffix != ".onnx"):  # exports go to the cache
        check_writable(cache_dir or default_cache_dir(), folder=True)
    configs = config or [None if model is not None else "gflv2_tiny"]
    report = run_backend_benchmark(backends=names, model=model, config=configs, shapes=shapes, batches=batch,
                                   iterations=iterations, warmup=warmup, rounds=rounds, threads=threads, device=device,
                                   cache_dir=cache_dir, image=image, onnx_nms=onnx_nms, e2e=not no_e2e, peak=peak,
                                   allow_unsafe_pickle=allow_unsafe_pickle, progress=True, tf32=tf32)
    m = report["machine"]
    if report["load_warning"]:
        say_error("warning:", report["load_warning"])
    print_wide(_bench_table(report, f"latency ms ({m['processor']}, {m['cpu_count']} cores, torch threads {m['torch_threads']}, "
                                    f"onnxruntime threads {m['onnxruntime_intra_op_threads']})"))
    say(f"CPU: {m['processor']}; flags: {', '.join(m['cpu_flags']) or 'none of avx2/avx512/vnni/amx'}; "
        f"load average {m.get('load_average_at_start_1_5_15min')} at start, {m.get('load_average_1_5_15min')} at end")
    for r in report["results"]:
        for note in r["consistency"]:
            say(f"! {r['backend']} {r['model']} {r['shape']} batch {r['batch']}: {note}")
    for note in report["notes"]:
        say(f"note: {note}")
    if "peak" in report:
        rates = ", ".join(f"{b} {v:.0f}" for b, v in report["peak"]["gflop_s"].items())
        say(f"peak FP32 GFLOP/s (3x3 conv 256->256 on 80x80 alone): {rates}; "
            "'max x torch' = peak / torch's GFLOP/s, a bound on FP32 speed-ups on this machine")
    if out is not None:
        from gflv2_deploy.atomic import write_json_atomic

        write_json_atomic(out, report)
        say(f"report written to {out}")
    write_html(html, report, out.name if out is not None else "bench", out)


def _bench_table(report: dict, title: str) -> Table:
    table = Table(title=cell(title))
    peak = "peak" in report
    for col in ("backend", "model", "shape", "batch", "p50", "p90", "p99", "img/s", "e2e p50", "e2e p99", "e2e img/s",
                "e2e/net", "x torch", "e2e x torch", "GFLOP/s") + (("% peak", "max x torch") if peak else ()):
        table.add_column(col, justify="right")
    speed = {(c["backend"], c["model"], c["shape"], c["batch"]): c for c in report["comparison"]}
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in report["results"]:
        s, e = r["infer"], r["e2e"] or {}
        c = speed[(r["backend"], r["model"], r["shape"], r["batch"])]
        flag = "" if c["consistent"] else " !"  # explained below the table
        table.add_row(cell(r["backend"] + flag), cell(r["model"]), r["shape"], str(r["batch"]), f"{s['p50_ms']:.1f}", f"{s['p90_ms']:.1f}",
                      f"{s['p99_ms']:.1f}", f"{s['throughput_img_s']:.2f}", fmt(e.get("p50_ms"), ".1f"), fmt(e.get("p99_ms"), ".1f"),
                      fmt(e.get("throughput_img_s"), ".2f"), fmt(c["e2e_over_network"], ".2f"),
                      fmt(c["infer_speedup_vs_torch"], ".2f"), fmt(c["e2e_speedup_vs_torch"], ".2f"),
                      fmt(r.get("infer_gflop_s"), ".0f"),
                      *((fmt(c["fraction_of_peak"] and 100 * c["fraction_of_peak"], ".0f"), fmt(c["speedup_ceiling_vs_torch"], ".2f"))
                        if peak else ()))
    return table


def register(app: typer.Typer) -> None:
    """Add ``bench`` to ``app``."""
    app.command("bench")(bench)
