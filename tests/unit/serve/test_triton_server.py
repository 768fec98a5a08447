"""Server helper pieces that need no server: the venv probe's message and free ports."""

from __future__ import annotations

import pytest

from gflv2_deploy.errors import UserError
from gflv2_deploy.serve.triton_server import TritonServer, find_install, free_ports


def test_missing_venv_names_the_setup_script(tmp_path) -> None:
    with pytest.raises(UserError, match="scripts/setup_triton.sh"):
        find_install(tmp_path / "no-venv")


def test_missing_repository(tmp_path) -> None:
    with pytest.raises(UserError, match="model repository not found"):
        TritonServer(tmp_path / "nothing", venv=tmp_path / "no-venv")


def test_free_ports_are_distinct() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p < 65536 for p in ports)


def test_stale_workspaces_of_dead_managers_are_removed(tmp_path, monkeypatch) -> None:
    import os
    import subprocess
    import sys

    from gflv2_deploy.serve import triton_server

    monkeypatch.setattr(triton_server.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"gflv2-triton-ws-{dead.stdout.strip()}-abc"
    live = tmp_path / f"gflv2-triton-ws-{os.getpid()}-def"
    for folder in (stale, live):
        (folder / "backends").mkdir(parents=True)
    assert triton_server.remove_stale_workspaces() == [stale]
    assert not stale.exists() and live.is_dir()
