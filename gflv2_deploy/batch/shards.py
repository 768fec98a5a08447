"""Deterministic shards of an ``infer`` job and their Parquet files.

The sorted listing (``source.list_pictures``) is cut into consecutive slices of ``shard_size`` pictures:
shard ``i`` holds listing positions ``[i * shard_size, (i + 1) * shard_size)`` and is written, complete, to
``part-<i, 6 digits>.parquet`` in the output folder, atomically (a temporary name renamed into place), or not
at all. A shard file therefore means "every picture of this slice has its outcome"; a rerun of the same job
trusts it and recomputes only the missing ones. Each file's Parquet metadata names its slice (a SHA-256 of its
locations) and the model (the SHA-256 of its file), and ``infer.json`` beside them names the whole job, so a
file from another listing or model is never mistaken for a complete shard.

One row per picture (``SCHEMA``): ``index`` (int64, position in the listing), ``path`` (string, the location),
``height`` / ``width`` (int32 pixels; 0 when unreadable), ``boxes`` (list of [x1, y1, x2, y2] float32,
original-picture pixels), ``scores`` (list of float32), ``labels`` (list of int32 class indices),
``class_names`` (list of string, one per detection), ``model_sha256`` (string) and ``error`` (string; null
for a picture that was read and detected, else why it could not be).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from gflv2_deploy.atomic import atomic_path, write_json_atomic
from gflv2_deploy.errors import MissingDependencyError, UserError

SHARD_GLOB = "part-*.parquet"
MANIFEST_NAME = "infer.json"
METADATA_KEY = b"gflv2_deploy.shard"
FORMAT_VERSION = 1


def shard_name(index: int) -> str:
    """File name of shard ``index``: ``part-000042.parquet``."""
    return f"part-{index:06d}.parquet"


def import_pyarrow() -> Any:
    """The pyarrow module (with its Parquet part), or MissingDependencyError naming the ``parquet`` extra."""
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401  (loads pyarrow.compute and pyarrow.parquet)
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependencyError("pyarrow", "parquet", "infer's Parquet output") from None
    return pyarrow


def result_schema() -> Any:
    """The Arrow schema of a shard's rows (module docstring), without the file metadata."""
    pa = import_pyarrow()
    return pa.schema([
        ("index", pa.int64()), ("path", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))), ("scores", pa.list_(pa.float32())),
        ("labels", pa.list_(pa.int32())), ("class_names", pa.list_(pa.string())),
        ("model_sha256", pa.string()), ("error", pa.string()),
    ])


def detection_schema() -> Any:
    """The schema of the rows workers return: ``result_schema`` without ``model_sha256``, with ``shard`` (int64)."""
    pa = import_pyarrow()
    schema = result_schema()
    return schema.remove(schema.get_field_index("model_sha256")).append(pa.field("shard", pa.int64()))


def pending_pictures(plan: "ShardPlan", shards: Sequence[int]) -> Any:
    """The pictures of ``shards`` as a pyarrow Table: ``index`` (int64), ``path`` (string), ``shard`` (int64).

    Columnar, so a listing of millions costs the driver a few bytes per picture, not a Python dict each.
    """
    pa = import_pyarrow()
    index = [i for shard in shards for i in plan.indices(shard)]
    return pa.table({"index": pa.array(index, pa.int64()), "path": pa.array([plan.locations[i] for i in index], pa.string()),
                     "shard": pa.array([i // plan.shard_size for i in index], pa.int64())})


def listing_sha256(locations: Iterable[str]) -> str:
    """SHA-256 of locations joined by newlines (one line each): the identity of a listing or of a shard's slice."""
    digest = hashlib.sha256()
    for location in locations:
        digest.update(location.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """The job's sorted listing cut into shards of ``shard_size`` consecutive pictures."""

    locations: tuple[str, ...]
    shard_size: int

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UserError(f"--shard-size must be at least 1, got {self.shard_size}")

    @property
    def count(self) -> int:
        """Number of shards (the last one may be shorter)."""
        return -(-len(self.locations) // self.shard_size)

    def indices(self, shard: int) -> range:
        """Listing positions of shard ``shard``."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, len(self.locations)))

    def shard_sha256(self, shard: int) -> str:
        """SHA-256 of the locations of shard ``shard`` (stored in its file, checked on resume)."""
        return listing_sha256(self.locations[i] for i in self.indices(shard))


@dataclasses.dataclass(frozen=True)
class JobIdentity:
    """What makes two runs the same job: the listing, the shard size and the model (kept in ``infer.json``)."""

    source: str
    pictures: int
    listing_sha256: str
    shard_size: int
    backend: str
    model: str
    model_sha256: str

    def differences(self, other: "JobIdentity") -> list[str]:
        """Names of the fields that differ from ``other`` (the paths themselves may differ: same listing elsewhere)."""
        keys = ("pictures", "listing_sha256", "shard_size", "backend", "model_sha256")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]


def claim_output(out_dir: Path, identity: JobIdentity) -> None:
    """Record ``identity`` in ``out_dir/infer.json``, or check that the job already recorded there is this one.

    Raises UserError when ``out_dir`` holds another job's results (other pictures, shard size or model): mixing
    them would break "each picture exactly once, by one model".
    """
    manifest = out_dir / MANIFEST_NAME
    if manifest.is_file():
        try:
            recorded = JobIdentity(**{k: v for k, v in json.loads(manifest.read_text())["job"].items()})
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{manifest} is not an infer manifest: give another --out") from None
        diff = identity.differences(recorded)
        if diff:
            raise UserError(f"{out_dir} holds the results of another job (different {', '.join(diff)}): give a new --out, "
                            "or delete that folder to start over")
        return
    if any(out_dir.glob(SHARD_GLOB)):
        raise UserError(f"{out_dir} holds shard files but no {MANIFEST_NAME}: give a new --out")
    write_json_atomic(manifest, {"format": FORMAT_VERSION, "job": dataclasses.asdict(identity)})


def complete_shards(out_dir: Path, plan: ShardPlan, model_sha256: str) -> set[int]:
    """Shards of ``plan`` whose file exists, is readable Parquet and names this shard's slice and model."""
    pq = import_pyarrow().parquet
    done = set()
    for shard in range(plan.count):
        path = out_dir / shard_name(shard)
        if not path.is_file():
            continue
        try:
            meta = pq.read_schema(path).metadata or {}
            info = json.loads(meta.get(METADATA_KEY, b"{}"))
        except (OSError, ValueError):  # not Parquet, or damaged outside this program: recompute it
            continue
        if (info.get("shard_sha256") == plan.shard_sha256(shard) and info.get("model_sha256") == model_sha256
                and info.get("pictures") == len(plan.indices(shard))):
            done.add(shard)
    return done


def write_shard(out_dir: Path, plan: ShardPlan, shard: int, rows: Any, model_sha256: str) -> Path:
    """Write the rows of shard ``shard`` (a pyarrow Table with ``detection_schema``'s columns, one row per listing
    position, any order) to its file atomically.

    Raises ValueError unless the rows are exactly the shard's positions and locations: an incomplete or mixed
    shard is never written.
    """
    pa = import_pyarrow()
    table = rows.take(pa.compute.sort_indices(rows, [("index", "ascending")]))
    expected = plan.indices(shard)
    paths = table.column("path").to_pylist()
    if (table.column("index").to_pylist() != list(expected)
            or paths != list(plan.locations[expected.start:expected.stop])):
        raise ValueError(f"shard {shard}: rows do not match its {len(expected)} pictures")
    schema = result_schema()
    # cast: the types as written, whatever Ray Data made of them on the way (large_string, large_list, ...)
    columns = [pa.array([model_sha256] * table.num_rows, pa.string()) if name == "model_sha256"
               else table.column(name).cast(schema.field(name).type) for name in schema.names]
    info = {"format": FORMAT_VERSION, "shard": shard, "pictures": table.num_rows, "shard_sha256": plan.shard_sha256(shard),
            "model_sha256": model_sha256}
    table = pa.Table.from_arrays(columns, schema=schema.with_metadata({METADATA_KEY: json.dumps(info).encode()}))
    path = out_dir / shard_name(shard)
    with atomic_path(path) as tmp:
        pa.parquet.write_table(table, tmp, compression="zstd")
    return path


def read_shard(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Any:
    """The rows of one shard file as a pyarrow Table (all columns, or ``columns``)."""
    return import_pyarrow().parquet.read_table(path, columns=list(columns) if columns else None)


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete the temporary shard files a killed run left behind (``.part-*.parquet.*.tmp.parquet``); their count."""
    stale = list(out_dir.glob(".part-*.parquet.*.tmp.parquet"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
