"""The two per-batch steps of ``infer``, the same in a Ray Data pipeline and in this process.

``decode_batch`` (a stateless map over rows ``index``/``path``/``shard``) reads and decodes each picture and adds
``image`` (H x W x 3 uint8 BGR; 0 x 0 x 3 when unreadable) and ``error`` ("" or why it could not be read).
``BatchDetector`` (a callable class: Ray Data keeps one per actor) holds one ``Detector`` of any backend the
factory knows and turns a decoded batch into result rows (``shards.result_schema`` without ``model_sha256``).
A failure stays with its picture: an unreadable file, or a picture the detector cannot take, becomes a row with
its error, and the job goes on.

Fault injection for tests (``FAULT_ENV``): ``GFLV2_INFER_EXIT_AT_BATCH=N[:MARKER]`` makes the worker holding the
detector end its process with ``os._exit`` at its N-th batch (a crash Ray sees as a dead actor). With a MARKER
path it happens once over the whole job: the worker that first creates MARKER exits, later ones go on.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from gflv2_deploy.batch.source import read_picture
from gflv2_deploy.errors import UserError

FAULT_ENV = "GFLV2_INFER_EXIT_AT_BATCH"
FAULT_EXIT_STATUS = 70
_EMPTY = np.zeros((0, 0, 3), np.uint8)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """How a worker builds its detector: ``make_detector(backend, path, config, device, threads)``.

    ``sha256``: the model file's SHA-256 as the driver hashed it; a worker whose copy differs refuses to run
    (on a cluster each node reads its own copy of the file). Empty for a model that is not a file (triton).
    """

    backend: str
    path: str
    sha256: str
    config: str | None = None
    device: str = "cpu"
    threads: int | None = None
    allow_unsafe_pickle: bool = False


def parse_fault(value: str | None) -> tuple[int, str | None] | None:
    """``"3"`` -> (3, None); ``"3:/tmp/once"`` -> (3, "/tmp/once"); None or "" -> None. ValueError when malformed."""
    if not value:
        return None
    count, _, marker = value.partition(":")
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{FAULT_ENV} must be N or N:MARKER_PATH with N >= 1, got '{value}'")
    return int(count), marker or None


def decode_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Rows ``index`` / ``path`` / ``shard`` -> the same rows with ``image`` (object array of arrays) and ``error``."""
    paths = [str(p) for p in batch["path"]]
    images = np.empty(len(paths), dtype=object)
    errors = []
    for k, location in enumerate(paths):
        try:
            images[k] = read_picture(location)
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - any failure to read one picture is that picture's outcome
            images[k] = _EMPTY
            errors.append(describe_error(exc))
    return {"index": np.asarray(batch["index"], dtype=np.int64), "path": np.asarray(paths, dtype=object),
            "shard": np.asarray(batch["shard"], dtype=np.int64), "image": images, "error": np.asarray(errors, dtype=object)}


def describe_error(exc: BaseException) -> str:
    """One line for a picture's failure: a UserError's own message, else ``Type: message``."""
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


class BatchDetector:
    """One detector, called on decoded batches; returns a pyarrow Table of result rows.

    Built once per Ray actor (or once in process). ``fault``: the parsed ``FAULT_ENV`` value, passed from the
    driver so that it reaches workers on any cluster.
    """

    def __init__(self, model: ModelRef, fault: tuple[int, str | None] | None = None) -> None:
        from gflv2_deploy.runtime.factory import make_detector

        if model.sha256 and model.backend != "triton":
            from gflv2_deploy.hashing import file_sha256

            if os.path.isfile(model.path) and file_sha256(model.path) != model.sha256:
                raise UserError(f"the model file {model.path} on this worker differs from the driver's "
                                f"(SHA-256 {model.sha256[:12]}...): give every node the same file")
        self.detector = make_detector(model.backend, model.path, model.config, model.device, model.threads,
                                      allow_unsafe_pickle=model.allow_unsafe_pickle)
        self.class_names = self.detector.class_names
        self.fault = fault
        self.batches = 0

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Decoded rows (``decode_batch``'s output) -> a pyarrow Table with ``shards.result_schema`` minus model_sha256."""
        self.batches += 1
        self._maybe_crash()
        images, errors = list(batch["image"]), [str(e) for e in batch["error"]]
        readable = [k for k, e in enumerate(errors) if not e]
        detections: dict[int, Any] = {}
        try:
            detections = dict(zip(readable, self.detector.detect([images[k] for k in readable]))) if readable else {}
        except Exception:  # noqa: BLE001 - one bad picture must not fail its batch: retry them one by one
            for k in readable:
                try:
                    detections[k] = self.detector.detect([images[k]])[0]
                except Exception as exc:  # noqa: BLE001
                    errors[k] = f"detection failed: {describe_error(exc)}"
        return self._table(batch, images, errors, detections)

    def _maybe_crash(self) -> None:
        if self.fault is None or self.batches != self.fault[0]:
            return
        marker = self.fault[1]
        if marker is not None:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another worker (or this one before a restart) has crashed already
        os._exit(FAULT_EXIT_STATUS)

    def _table(self, batch: dict[str, Any], images: list[np.ndarray], errors: list[str], detections: dict[int, Any]) -> Any:
        """Result rows built column by column from the detection arrays (no Python object per box)."""
        from gflv2_deploy.batch.shards import detection_schema, import_pyarrow

        pa = import_pyarrow()
        n = len(errors)
        ok = [k in detections and not errors[k] for k in range(n)]
        dets = [detections[k] if ok[k] else None for k in range(n)]
        counts = np.array([len(d.scores) if d is not None else 0 for d in dets], np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        kept = [d for d in dets if d is not None]
        flat = lambda get, dtype: np.concatenate([np.asarray(get(d), dtype).reshape(-1) for d in kept]) if kept else np.zeros(0, dtype)  # noqa: E731
        boxes, scores, labels = flat(lambda d: d.boxes, np.float32), flat(lambda d: d.scores, np.float32), flat(lambda d: d.labels, np.int32)
        names = np.asarray(self.class_names, dtype=object)[labels] if labels.size else np.zeros(0, dtype=object)
        columns = {
            "index": pa.array(np.asarray(batch["index"], np.int64)),
            "path": pa.array([str(p) for p in batch["path"]], pa.string()),
            "height": pa.array([images[k].shape[0] if ok[k] else 0 for k in range(n)], pa.int32()),
            "width": pa.array([images[k].shape[1] if ok[k] else 0 for k in range(n)], pa.int32()),
            "boxes": pa.ListArray.from_arrays(offsets, pa.FixedSizeListArray.from_arrays(pa.array(boxes), 4)),
            "scores": pa.ListArray.from_arrays(offsets, pa.array(scores)),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
            "class_names": pa.ListArray.from_arrays(offsets, pa.array(names.tolist(), pa.string())),
            "error": pa.array([errors[k] or (None if ok[k] else "no detections returned") for k in range(n)], pa.string()),
            "shard": pa.array(np.asarray(batch["shard"], np.int64)),
        }
        schema = detection_schema()
        return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
