"""``infer`` on Ray Data: decode tasks feeding a pool of detector actors, results streamed back to the driver.

The pipeline is ``from_arrow(pictures)`` -> ``map_batches(decode_batch)`` (stateless CPU tasks, any number at once)
-> ``map_batches(BatchDetector)`` (an actor pool of ``actors`` actors, each holding one detector, with
``gpus_per_actor`` GPUs) -> ``iter_batches`` on the driver, which writes the shards (``run.py``). Ray Data's
defaults restart a dead actor and retry its batches; the driver keeps one result per picture, so a retried
batch cannot count twice.

CPU reservations: each actor asks for ``threads`` CPUs, but never so many that the actors together leave less
than ``READ_CPUS`` of the cluster's CPUs for the decode tasks (which ask for ``READ_CPUS`` each): on a
2-core machine two 1-CPU actors would starve the decoding and the job would hang.

Ray is imported inside functions; ``ray_problem`` says, without starting anything, whether it can be used.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import Any, Iterator

from gflv2_deploy.batch.worker import BatchDetector, ModelRef, decode_batch
from gflv2_deploy.errors import UserError

READ_CPUS = 0.5
MAX_BLOCKS = 2000
# Read by Ray when it is imported: its node address becomes 127.0.0.1 instead of this machine's network address,
# so a single-machine cluster (``--ray local``) listens on the loopback interface only (ray/_private/services.py).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def prepare_local_cluster() -> None:
    """Make a cluster this process starts listen on 127.0.0.1 only; call before Ray is first imported."""
    os.environ.setdefault(LOOPBACK_ENV, "0")


def ray_problem() -> str | None:
    """None when Ray Data can be imported, else a one-line reason (Ray, or a part Ray Data needs, is missing)."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        if exc.name in ("ray", None):
            return "Ray is not installed"
        return f"Ray Data cannot be imported (module '{exc.name}' is missing)"
    return None


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[dict[str, Any]]:
    """Connect to Ray for the block; yields ``{"address", "started", "cpus", "gpus", "version"}``.

    address: ``local`` starts a new single-machine cluster (stopped afterwards); ``auto`` uses ``RAY_ADDRESS`` or
    a cluster already running on this machine, else starts a local one; anything else is a cluster address
    (``ray://head:10001``, ``head:6379``). A session this process had already opened is used as it is.
    """
    import ray

    started = False
    if not ray.is_initialized():
        # Ray's own notices (token authentication, execution finished) would drown the job's lines
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address == "local":
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=None if address == "auto" else address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"cannot connect to Ray at '{address}': {' '.join(str(exc).split())}") from None
        started = True
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # the driver prints its own progress (shards written)
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled", "execution finished"
        resources = ray.cluster_resources()
        yield {"address": address, "started": started, "cpus": float(resources.get("CPU", 0.0)),
               "gpus": float(resources.get("GPU", 0.0)), "version": ray.__version__}
    finally:
        if started:
            ray.shutdown()


def actor_cpus(cluster_cpus: float, actors: int, threads: int) -> float:
    """CPUs each actor reserves: ``threads``, lowered so that ``READ_CPUS`` stay free for decoding.

    Raises UserError when the cluster cannot hold ``actors`` actors and one decode task at all.
    """
    budget = (cluster_cpus - READ_CPUS) / actors
    if budget < 0.05:
        raise UserError(f"the Ray cluster has {cluster_cpus:g} CPUs: too few for {actors} actors and the picture "
                        f"decoding ({READ_CPUS:g} CPU); use fewer --actors")
    return round(min(float(threads), budget), 2)


def check_gpus(session: dict[str, Any], actors: int, gpus_per_actor: float) -> str | None:
    """A warning when the cluster shows fewer GPUs than the actors ask for (an autoscaler may still add them);
    UserError for a local cluster, which would wait forever."""
    need = actors * gpus_per_actor
    if need <= session["gpus"]:
        return None
    message = f"{actors} actors x {gpus_per_actor:g} GPUs need {need:g} GPUs; the Ray cluster shows {session['gpus']:g}"
    if session["address"] == "local":
        raise UserError(message)
    return message + " (waiting for them: an autoscaling cluster adds nodes)"


def detect_on_ray(rows: Any, model: ModelRef, *, actors: int, batch_size: int,
                  gpus_per_actor: float, cpus_per_actor: float,
                  fault: tuple[int, str | None] | None = None) -> Iterator[Any]:
    """Run the pipeline over ``rows`` (``shards.pending_pictures``); yields pyarrow Tables of result rows
    (``worker.BatchDetector``'s) as they arrive, in no particular order. Needs an open ``ray_session``."""
    import ray.data

    per_block = max(batch_size, math.ceil(rows.num_rows / MAX_BLOCKS))  # a block per batch: every actor gets work
    ds = ray.data.from_arrow([rows.slice(start, per_block) for start in range(0, rows.num_rows, per_block)])
    ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=READ_CPUS)
    ds = ds.map_batches(BatchDetector, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
                        num_gpus=gpus_per_actor or None, fn_constructor_kwargs={"model": model, "fault": fault})
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
    except Exception as exc:  # noqa: BLE001 - a user mistake inside a worker arrives wrapped in Ray's errors
        cause = user_error_inside(exc)
        if cause is None:
            raise
        raise UserError(str(cause)) from None


def user_error_inside(exc: BaseException) -> UserError | None:
    """The UserError a Ray error carries (a worker's ``cause``, chained or in its text), else None."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError):
            return e
        if "UserError: " in str(e):  # a cause Ray could only keep as text
            line = next(t for t in str(e).splitlines() if "UserError: " in t)
            return UserError(line.split("UserError: ", 1)[1].strip())
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None
