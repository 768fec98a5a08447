"""``infer``: detect on every picture of a SOURCE, resumably, each picture exactly once; Ray Data or this process.

The job: list SOURCE (sorted), cut the listing into shards (``shards.ShardPlan``), skip the shards whose
files are complete from an earlier run, send the pictures of the others through the engine (Ray Data, or a
loop in this process when Ray is not installed or ``ray="off"``), and write each shard the moment all its
pictures are back. The driver keeps one result per listing position and writes a shard only when its slice
is exactly complete, so a batch Ray retries after an actor died cannot appear twice, and a killed run loses
only the shards in flight. Last, the complete shards are read back into ``results.json`` (COCO results that
``gflv2-deploy eval --results`` scores) and ``summary.json``.

Fault injection for tests: ``GFLV2_INFER_KILL_AFTER_SHARDS=K`` makes the driver kill itself (SIGKILL) right
after writing its K-th shard, as an operator's ``kill -9`` or a lost head node would (see also
``worker.FAULT_ENV`` for a dying actor).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gflv2_deploy.atomic import check_writable, write_json_atomic
from gflv2_deploy.batch import shards as shard_io
from gflv2_deploy.batch.results import coco_id_maps, write_results_json
from gflv2_deploy.batch.source import list_pictures
from gflv2_deploy.batch.worker import FAULT_ENV, BatchDetector, ModelRef, decode_batch, parse_fault
from gflv2_deploy.errors import MissingDependencyError, UserError

KILL_ENV = "GFLV2_INFER_KILL_AFTER_SHARDS"
RESULTS_NAME = "results.json"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".infer.lock"
WRITER_THREADS = 4


@dataclasses.dataclass(frozen=True)
class InferSettings:
    """One ``infer`` job. ``ray``: auto | local | off | a cluster address; ``threads``: per detector (default 1 on
    Ray, the library's choice in process); ``gt``: a COCO instances JSON whose image and category ids the
    results JSON then uses."""

    source: str
    out: Path
    backend: str
    model: str
    config: str | None = None
    ray: str = "auto"
    actors: int = 1
    batch_size: int = 4
    gpus_per_actor: float = 0.0
    threads: int | None = None
    shard_size: int = 1000
    gt: Path | None = None
    allow_unsafe_pickle: bool = False
    progress: bool = True


def check_settings(s: InferSettings) -> None:
    """UserError for a count out of range (before anything is listed or started)."""
    for option, value, low in (("--actors", s.actors, 1), ("--batch-size", s.batch_size, 1), ("--shard-size", s.shard_size, 1),
                               ("--threads", s.threads, 1)):
        if value is not None and value < low:
            raise UserError(f"{option} must be at least {low}, got {value}")
    if s.gpus_per_actor < 0:
        raise UserError(f"--gpus-per-actor must be 0 or more, got {s.gpus_per_actor:g}")
    if not s.ray.strip():
        raise UserError("--ray must be auto, local, off or a cluster address")


def choose_engine(ray_option: str) -> tuple[str, str | None]:
    """("ray" | "process", note): the note (one line) says why a job asking for Ray runs in this process."""
    from gflv2_deploy.batch.ray_engine import prepare_local_cluster, ray_problem

    if ray_option == "off":
        return "process", None
    if ray_option == "local":
        prepare_local_cluster()
    problem = ray_problem()
    if problem is None:
        return "ray", None
    if ray_option not in ("auto", "local"):
        raise MissingDependencyError("ray", "ray", f"running on the Ray cluster at {ray_option}")
    return "process", f"{problem}: running in this process with one detector (pip install 'gflv2-deploy[ray]' to run on Ray)"


def model_sha256(backend: str, model: str) -> str:
    """SHA-256 of the model file (of the ``HOST:PORT/MODEL`` text for triton); UserError when the file is missing."""
    import hashlib

    from gflv2_deploy.hashing import file_sha256

    if backend == "triton":
        return hashlib.sha256(model.encode()).hexdigest()
    if not Path(model).is_file():
        raise UserError(f"model file not found: {model}")
    return file_sha256(model)


def run_infer(s: InferSettings, say: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the job ``s`` (module docstring) and return its summary (also written to ``OUT/summary.json``).

    ``say`` prints progress and result lines, ``warn`` one-line notes (the in-process fallback, GPUs missing).
    Raises UserError for bad input, an output folder holding another job, or a cluster that cannot be reached.
    """
    started = time.perf_counter()
    check_settings(s)
    out = check_writable(s.out, folder=True)
    shard_io.import_pyarrow()
    engine, note = choose_engine(s.ray)
    if note:
        warn(note)
    id_maps = coco_id_maps(s.gt) if s.gt is not None else None
    locations = list_pictures(s.source)
    plan = shard_io.ShardPlan(tuple(locations), s.shard_size)
    sha = model_sha256(s.backend, s.model)
    if s.backend != "triton":  # workers (on other nodes, in other folders) open it by this path
        s = dataclasses.replace(s, model=os.path.abspath(s.model))
    identity = shard_io.JobIdentity(source=s.source, pictures=len(locations), listing_sha256=shard_io.listing_sha256(locations),
                                    shard_size=s.shard_size, backend=s.backend, model=s.model, model_sha256=sha)
    threads = s.threads if s.threads is not None else (1 if engine == "ray" else None)
    model = ModelRef(s.backend, s.model, sha, s.config, "cuda" if s.gpus_per_actor > 0 else "cpu", threads,
                     s.allow_unsafe_pickle)
    fault = parse_fault(os.environ.get(FAULT_ENV))
    if engine == "ray" and model.device == "cpu":
        # load it here once: a model the backend refuses is one error line now, not an actor failing on every node
        BatchDetector(model)
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        shard_io.claim_output(out, identity)
        shard_io.remove_stale_temporaries(out)
        reused = shard_io.complete_shards(out, plan, sha)
        pending = [i for i in range(plan.count) if i not in reused]
        rows = shard_io.pending_pictures(plan, pending)
        say(f"{len(locations)} pictures in {plan.count} shards of {s.shard_size}: {len(reused)} complete already, "
            f"{len(pending)} to compute")
        run: dict[str, Any] = {"engine": engine, "shards_computed": len(pending), "shards_reused": len(reused),
                               "pictures_computed": rows.num_rows}
        if rows.num_rows:
            collector = ShardCollector(plan, pending)
            kill_after = int(os.environ.get(KILL_ENV) or 0)
            with _engine_stream(engine, s, rows, model, fault, warn, run) as stream:
                written = 0
                for _ in _progress(collector.shards_written(stream, out, sha), len(pending), s.progress):
                    written += 1
                    if written == kill_after:
                        os.kill(os.getpid(), signal.SIGKILL)
            run.update(collector.stats())
            run["engine_done_at"] = time.perf_counter()
        summary = assemble(out, plan, identity, id_maps, s.gt)
    wall = time.perf_counter() - started
    first, done = run.pop("first_result_at", None), run.pop("engine_done_at", None)
    computed = run["pictures_computed"]
    run.update({"wall_s": round(wall, 3), "pictures_per_s": round(computed / wall, 3) if computed else None,
                "startup_s": round(first - started, 3) if first is not None else None,
                "steady_pictures_per_s": _steady(run.get("pictures_after_first", 0), first, done)})
    summary["run"] = run
    write_json_atomic(out / SUMMARY_NAME, summary)
    say(f"{summary['pictures']} pictures, {summary['detections']} detections, {summary['failures']} failures; "
        f"this run: {computed} pictures in {wall:.1f} s ({engine}) -> {out}")
    return summary


def _steady(later: int, first: float | None, done: float | None) -> float | None:
    """Pictures per second from the first result to the last shard (start-up and the final results.json excluded)."""
    if first is None or done is None or not later or done <= first:
        return None
    return round(later / (done - first), 3)


class ShardCollector:
    """Gathers result rows by shard and writes each shard once its pictures are all back (each exactly once).

    Works on Arrow columns: at thousands of pictures per second the driver must not build a Python object per box.
    """

    def __init__(self, plan: shard_io.ShardPlan, pending: Sequence[int]) -> None:
        self.plan = plan
        self.open: dict[int, _OpenShard] = {shard: _OpenShard(plan.indices(shard)) for shard in pending}
        self.duplicates = 0
        self.rows = 0
        self.first_batch_rows: int | None = None

    def shards_written(self, tables: Iterator[Any], out: Path, sha: str) -> Iterator[int]:
        """Consume result tables (``shards.detection_schema``); yield each shard index right after its file was written.

        Files are written by ``WRITER_THREADS`` threads (Parquet encoding releases the GIL): at cluster speed one
        thread encoding every shard would hold the whole job back.
        """
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        import numpy as np

        with ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="shard-writer") as pool:
            writing: dict[Any, int] = {}
            for table in tables:
                shard_of = table.column("shard").to_numpy()
                index_of = table.column("index").to_numpy()
                for shard in np.unique(shard_of).tolist():
                    rows = np.flatnonzero(shard_of == shard)
                    state = self.open.get(shard)
                    if state is None:  # a retried batch's second copy of a shard already complete
                        self.duplicates += len(rows)
                        continue
                    keep = state.add(index_of[rows])
                    self.duplicates += len(rows) - len(keep)
                    self.rows += len(keep)
                    whole = len(keep) == table.num_rows  # the usual case: no copy needed
                    state.parts.append(table if whole else table.take(rows[keep]))
                    if state.complete:
                        del self.open[shard]
                        writing[pool.submit(shard_io.write_shard, out, self.plan, shard, _concat(state.parts), sha)] = shard
                if self.first_batch_rows is None:
                    self.first_batch_rows = self.rows
                done, _ = wait(list(writing), timeout=0, return_when=FIRST_COMPLETED) if writing else (set(), None)
                for future in done:
                    future.result()  # a failed write (disk full) stops the job here
                    yield writing.pop(future)
            for future in list(writing):
                future.result()
                yield writing.pop(future)
        if self.open:
            missing = sum(len(state.seen) - int(state.seen.sum()) for state in self.open.values())
            raise UserError(f"{missing} pictures of {len(self.open)} shards never came back from the engine; the complete "
                            "shards are kept: rerun the same command to finish")

    def stats(self) -> dict[str, Any]:
        return {"duplicates_dropped": self.duplicates,
                "pictures_after_first": self.rows - (self.first_batch_rows or 0)}


class _OpenShard:
    """The rows of one shard received so far, and which of its listing positions they cover."""

    def __init__(self, positions: range) -> None:
        import numpy as np

        self.start = positions.start
        self.seen = np.zeros(len(positions), dtype=bool)
        self.parts: list[Any] = []

    def add(self, indices: Any) -> Any:
        """Positions (into ``indices``) of the rows to keep: the first copy of each picture not seen before."""
        import numpy as np

        local = np.asarray(indices, dtype=np.int64) - self.start
        if local.size and (local.min() < 0 or local.max() >= len(self.seen)):
            raise ValueError("a result row does not belong to its shard")
        _, first = np.unique(local, return_index=True)
        first = first[~self.seen[local[first]]]
        self.seen[local[first]] = True
        return np.sort(first)

    @property
    def complete(self) -> bool:
        return bool(self.seen.all())


def _concat(parts: list[Any]) -> Any:
    import pyarrow as pa

    return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]


@contextlib.contextmanager
def _engine_stream(engine: str, s: InferSettings, rows: Any, model: ModelRef,
                   fault: tuple[int, str | None] | None, warn: Callable[[str], None], run: dict[str, Any]) -> Iterator[Iterator[Any]]:
    """The engine's result tables, timed: ``run["first_result_at"]`` is when the first arrived (``perf_counter``)."""
    if engine == "process":
        run.update({"actors": 1, "threads": model.threads, "batch_size": s.batch_size})
        yield _timed(detect_in_process(rows, model, s.batch_size, fault), run)
        return
    from gflv2_deploy.batch.ray_engine import actor_cpus, check_gpus, detect_on_ray, ray_session

    with ray_session(s.ray) as session:
        cpus = actor_cpus(session["cpus"], s.actors, model.threads or 1)
        gpu_note = check_gpus(session, s.actors, s.gpus_per_actor)
        if gpu_note:
            warn(gpu_note)
        run.update({"ray_version": session["version"], "ray_address": s.ray, "cluster_cpus": session["cpus"],
                    "cluster_gpus": session["gpus"], "actors": s.actors, "cpus_per_actor": cpus,
                    "gpus_per_actor": s.gpus_per_actor, "threads": model.threads, "batch_size": s.batch_size})
        yield _timed(detect_on_ray(rows, model, actors=s.actors, batch_size=s.batch_size, gpus_per_actor=s.gpus_per_actor,
                                   cpus_per_actor=cpus, fault=fault), run)


def _timed(tables: Iterator[Any], run: dict[str, Any]) -> Iterator[Any]:
    for table in tables:
        run.setdefault("first_result_at", time.perf_counter())
        yield table


def detect_in_process(rows: Any, model: ModelRef, batch_size: int,
                      fault: tuple[int, str | None] | None = None) -> Iterator[Any]:
    """The same two steps as the Ray pipeline over ``rows`` (``shards.pending_pictures``), one batch after the
    other in this process, one detector."""
    detector = BatchDetector(model, fault)
    for start in range(0, rows.num_rows, batch_size):
        yield detector(decode_batch(rows.slice(start, batch_size).to_pydict()))


def assemble(out: Path, plan: shard_io.ShardPlan, identity: shard_io.JobIdentity, id_maps: Any,
             gt: Path | None) -> dict[str, Any]:
    """Read the complete shards back: write ``results.json``; return the summary's totals and failures."""
    paths = [out / shard_io.shard_name(i) for i in range(plan.count)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} shards are missing in {out} (first {missing[0]}): rerun the same command")
    totals = write_results_json(out / RESULTS_NAME, paths, id_maps)
    return {"source": identity.source, "out": str(out), "pictures": identity.pictures, "shards": plan.count,
            "shard_size": plan.shard_size, "model": {"backend": identity.backend, "path": identity.model,
                                                    "sha256": identity.model_sha256},
            "results_file": RESULTS_NAME, "results_ids": "from " + str(gt) if gt is not None else "listing positions and class labels",
            **totals}


def _progress(items: Iterator[int], total: int, enabled: bool) -> Iterator[int]:
    from gflv2_deploy.progress import progress_iter

    return progress_iter(items, total, "infer (shards)", enabled)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the job: two runs writing the same shards would fight."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another infer is writing to {out}: wait for it, or give another --out") from None
        yield
