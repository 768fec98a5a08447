"""Write a planned Triton repository: a whole new one, or one version added to an existing one; never half of either.

- ``write_triton_repository``: the repository is assembled in a temporary folder beside REPO and renamed into
  place (a non-empty REPO needs ``overwrite``, which replaces it whole);
- ``add_version``: version N of the network model of an existing repository. The other versions, the
  configs and the python models are not touched: the new version's planned config must equal the one in
  the repository (one ``config.pbtxt`` serves every version of a Triton model; only the graph's identity in
  the contract parameter, its checkpoint and producer, may differ), and the version folder is assembled
  beside REPO and renamed into ``REPO/<network>/N`` in one step.

Both hold ``repository_lock(REPO)``, an exclusive ``flock`` on ``.REPO.lock`` beside it, from before the
checks to after the rename: a second writer of the same repository fails at once, naming the holder,
instead of silently replacing the first one's work. The lock is advisory (other tools ignore it) and
local to one machine (NFS locks are not to be relied on).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from gflv2_deploy.errors import UserError
from gflv2_deploy.serve import triton_config as tc
from gflv2_deploy.serve.triton_repo import CONTRACT_PARAMETER, RepositoryOptions, RepositoryPlan, plan_repository

# Members of the contract that name the graph rather than how to serve it: they may differ between versions.
_IDENTITY = {"model": ("checkpoint", "checkpoint_sha256"), "producer": None}


@contextlib.contextmanager
def repository_lock(repo: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive write lock of ``repo`` (``.NAME.lock`` beside it); UserError when another process has it.

    The lock file is removed on release; a writer that opened it just before is told to try again (it
    finds the path no longer names the file it locked), so two writers never both hold a lock.
    """
    target = Path(repo).absolute()
    missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    written = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"another gflv2-deploy (pid {holder}) is writing {target} right now (lock {lock}): "
                            "wait for it to finish, then run again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise UserError(f"another gflv2-deploy has just written {target}: run again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield lock
            written = True
        finally:
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the flock
        if not written:  # a refused write leaves no folder it created for the repository either
            for folder in missing:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def write_triton_repository(model_path: str | os.PathLike[str], repo: str | os.PathLike[str],
                            options: RepositoryOptions = RepositoryOptions(), overwrite: bool = False) -> RepositoryPlan:
    """Write the repository for ``model_path`` to ``repo``; returns the plan written.

    Refuses (UserError) a ``repo`` that is a file, or a non-empty folder unless ``overwrite``; checks all
    configs first; assembles the repository in a temporary folder beside ``repo`` and renames it into place.
    """
    target = Path(repo)
    if target.exists() and not target.is_dir():
        raise UserError(f"--repo {target} is a file; give a folder for the model repository")
    with repository_lock(target):
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise UserError(f"--repo {target} is not empty: give an empty or new folder, --overwrite to replace it, "
                            "or --version N to add a version of the network to it")
        plan = plan_repository(model_path, options)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.absolute().parent))
        try:
            _materialise(plan, staging, [*plan.folders, *plan.texts, *plan.blobs, *plan.copies])
            staging.chmod(0o777 & ~_umask())
            old = None
            if target.is_dir():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
            staging.rename(target)
            if old is not None:
                shutil.rmtree(old)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return plan


def add_version(model_path: str | os.PathLike[str], repo: str | os.PathLike[str],
                options: RepositoryOptions) -> RepositoryPlan:
    """Add version ``options.version`` of the network model to the existing repository ``repo``.

    UserError when ``repo`` has no such network model, the version exists, or the new version needs another
    config than the model's (say what differs).
    """
    target = Path(repo)
    with repository_lock(target):
        plan = plan_repository(model_path, options)
        model_dir = target / plan.network
        config_file = model_dir / "config.pbtxt"
        if not config_file.is_file():
            raise UserError(f"--version {options.version}: {target} has no model '{plan.network}' to add a version to "
                            "(write the repository first, without --version, or check --name and --ensemble)")
        version_dir = model_dir / str(options.version)
        if version_dir.exists():
            raise UserError(f"{version_dir} exists: version {options.version} of '{plan.network}' is already there; "
                            "choose a new version number")
        _check_same_serving(plan, config_file)
        libraries = [rel for rel in plan.copies if rel.startswith(f"{plan.network}/plugins/")]
        for rel in libraries:
            present = target / rel
            if present.is_file() and present.read_bytes() != plan.copies[rel].read_bytes():
                raise UserError(f"{present} differs from the plugin library version {options.version} needs: "
                                "one plugin library serves every version of a model; write a new model (--name)")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.absolute().parent))
        try:
            _materialise(plan, staging, plan.version_paths())
            for rel in libraries:
                if not (target / rel).is_file():
                    (target / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(plan.copies[rel], target / rel)
            (staging / plan.network / str(options.version)).chmod(0o777 & ~_umask())
            (staging / plan.network / str(options.version)).rename(version_dir)  # one step: all or nothing
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return plan


def _check_same_serving(plan: RepositoryPlan, config_file: Path) -> None:
    """UserError naming what differs between the repository's network config and the one ``plan`` needs."""
    from google.protobuf import json_format

    existing = tc.parse_text_config(config_file.read_text(), str(config_file))
    wanted = next(c for c in plan.configs if c.name == plan.network)
    a, b = (json_format.MessageToDict(m, preserving_proto_field_name=True) for m in (existing, wanted))
    contracts = [_serving_part(d.get("parameters", {}).pop(CONTRACT_PARAMETER, {}).get("string_value")) for d in (a, b)]
    differs = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if contracts[0] != contracts[1]:
        differs += [f"contract.{k}" for k in sorted(set(contracts[0]) | set(contracts[1]))
                    if contracts[0].get(k) != contracts[1].get(k)]
    if differs:
        raise UserError(f"version {plan.version} of '{plan.network}' needs another config than {config_file} "
                        f"(differs in: {', '.join(differs)}); the versions of a Triton model share one config: give "
                        "the options the repository was written with, or write a new model (--name)")


def _serving_part(text: str | None) -> dict[str, Any]:
    data = json.loads(text) if text else {}
    for member, keys in _IDENTITY.items():
        if keys is None:
            data.pop(member, None)
        else:
            for key in keys:
                data.get(member, {}).pop(key, None)
    return data


def _materialise(plan: RepositoryPlan, root: Path, paths: list[str]) -> None:
    """Write the ``paths`` of ``plan`` (folders, texts, copies) under ``root``."""
    for rel in paths:
        dest = root / rel
        if rel in plan.texts:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(plan.texts[rel])
        elif rel in plan.blobs:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(plan.blobs[rel])
        elif rel in plan.copies:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plan.copies[rel], dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
