"""The training record: ``log.jsonl`` (one JSON object per line) and the loss-curve picture.

Record types (key ``"type"``):

- ``"run"``: written when a run starts or resumes: configuration name, recipe, world size, seed;
- ``"train"``: every ``log_interval`` iterations: ``iteration`` (completed iterations, global),
  ``epoch`` (1-based), ``lr``, ``loss`` and each term (``loss_qfl``, ``loss_bbox``, ``loss_dfl``) averaged
  over the interval and over processes, ``time_per_iter`` and ``data_time`` (seconds), ``images_per_s``;
- ``"eval"``: after each evaluation: ``iteration``, ``epoch``, ``stats`` (the 12 COCOeval numbers) and
  ``AP`` / ``AP50``.

On resume the records after the checkpoint's iteration (written by the interrupted run past its
last checkpoint) are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gflv2_deploy.atomic import atomic_path, write_text_atomic

__all__ = ["TrainingLog", "read_log", "plot_loss_curve"]

LOSS_KEYS = ("loss_qfl", "loss_bbox", "loss_dfl")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a ``log.jsonl`` (a torn last line, from a killed process, is skipped)."""
    p = Path(path)
    if not p.exists():
        return []
    records = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class TrainingLog:
    """Appends records to ``path``; a fresh run starts an empty file, a resumed one keeps its past."""

    def __init__(self, path: str | os.PathLike[str], resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_iteration is None:
            write_text_atomic(self.path, "")
        else:
            kept = [r for r in read_log(self.path) if r.get("type") == "run" or r.get("iteration", 0) <= resume_iteration]
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def plot_loss_curve(log_path: str | os.PathLike[str], out_path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw the loss terms and lr against the iteration (top) and AP / AP50 against it (bottom), atomically as PNG."""
    # A bare Figure renders with the Agg canvas and leaves pyplot's global backend alone.
    from matplotlib.figure import Figure

    records = read_log(log_path)
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig = Figure(figsize=(8, 7))
    ax_loss, ax_ap = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    its = [r["iteration"] for r in train]
    ax_loss.plot(its, [r["loss"] for r in train], color="black", linewidth=1.6, label="total")
    for key, colour in zip(LOSS_KEYS, ("tab:blue", "tab:orange", "tab:green")):
        ax_loss.plot(its, [r[key] for r in train], color=colour, linewidth=1.0, label=key)
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_lr = ax_loss.twinx()
    ax_lr.plot(its, [r["lr"] for r in train], color="tab:gray", linestyle="--", linewidth=0.8, label="lr")
    ax_lr.set_ylabel("lr")
    if train and min(r["lr"] for r in train) > 0:
        ax_lr.set_yscale("log")  # warmup and the x0.1 steps read as straight lines and equal drops
    lines = ax_loss.get_legend_handles_labels()
    lr_lines = ax_lr.get_legend_handles_labels()
    ax_loss.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right", fontsize=8)
    ax_loss.set_title(title or "training loss")
    if evals:
        eval_its = [r["iteration"] for r in evals]
        ax_ap.plot(eval_its, [r["AP50"] for r in evals], marker="o", label="AP50 (val)")
        ax_ap.plot(eval_its, [r["AP"] for r in evals], marker="s", label="AP (val)")
        for x, y in zip(eval_its, [r["AP50"] for r in evals]):
            ax_ap.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
        ax_ap.set_ylim(0, 1)
        ax_ap.legend(loc="lower right", fontsize=8)
    else:
        ax_ap.text(0.5, 0.5, "no evaluation", ha="center", va="center", transform=ax_ap.transAxes)
    ax_ap.set_xlabel("iteration")
    ax_ap.set_ylabel("COCO bbox")
    ax_ap.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out
