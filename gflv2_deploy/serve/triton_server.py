"""Start and stop a local Triton Inference Server: the binary nvidia-pytriton bundles, run from its own venv.

``scripts/setup_triton.sh`` creates that venv (``.venv-triton``; numpy<2, onnxruntime, OpenCV). The
bundled server has the python backend only, so it serves repositories written with ``--platform python``.
``TritonServer`` (a context manager) does what PyTriton does before launching the binary, and what a
background server needs:

- copies the python backend into a private workspace with the backend stub of the venv's Python version;
- puts the interpreter's LIBDIR first on LD_LIBRARY_PATH (under pyenv the stub otherwise loads the
  system's older libpython) and the venv's site-packages plus the project root in GFLV2_TRITON_SYS_PATH
  (the stub ignores PYTHONPATH; the generated model.py files read this variable);
- listens on 127.0.0.1 only, on free ports; names its python-backend shared-memory regions with a unique
  prefix, so that a leak in /dev/shm can be seen and removed;
- runs the server in a process group of its own with a parent-death signal (``PR_SET_PDEATHSIG``: SIGTERM
  when the thread that started it dies, even by SIGKILL), so a killed managing process leaves no server,
  python stub or /dev/shm region behind: Triton's own shutdown stops the stubs and removes the regions;
- loads every model in explicit model-control mode (``--load-model=*``), so that ``drain()`` can unload
  them (``serve/drain.py``); with ``admin_key`` the model-repository, model-config and shared-memory APIs
  need that key (``--http-restricted-api`` / ``--grpc-restricted-protocol``), inference does not;
- ``shm_limit_bytes`` emulates a container's ``--shm-size``: the server runs in a mount namespace of its
  own (``unshare -m``, root only) with a tmpfs of that size over /dev/shm;
- stops the server by its PID with SIGTERM (a background server ignores SIGINT), or first drains it
  (``stop(drain=True)``), waits, kills what is left of its own process group, removes its workspace and
  its /dev/shm regions.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gflv2_deploy.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_ENV = "GFLV2_TRITON_VENV"
SYS_PATH_ENV = "GFLV2_TRITON_SYS_PATH"
SHM_DIR = Path("/dev/shm")
_SETUP = "bash scripts/setup_triton.sh"
RESTRICTED_APIS = ("model-repository", "model-config", "shared-memory")  # what admin_key guards
_PR_SET_PDEATHSIG = 1
_WORKSPACE_PREFIX = "gflv2-triton-ws-"  # + the managing process's pid: a workspace whose owner is gone is stale


@dataclass(frozen=True)
class TritonInstall:
    """Where the venv's tritonserver, python backend stub, site-packages and libpython are."""

    venv: Path
    server_dir: Path  # .../site-packages/pytriton/tritonserver
    libs_dir: Path  # .../site-packages/nvidia_pytriton.libs
    site_packages: Path
    python_version: str  # "3.11"
    libdir: str  # the interpreter's LIBDIR (holds libpython3.X.so)

    @property
    def stub(self) -> Path:
        return self.server_dir / "python_backend_stubs" / self.python_version / "triton_python_backend_stub"


def default_venv() -> Path:
    return Path(os.environ.get(VENV_ENV) or PROJECT_ROOT / ".venv-triton")


def find_install(venv: str | os.PathLike[str] | None = None) -> TritonInstall:
    """Inspect the Triton venv (its own python answers); UserError naming the setup script when it is missing."""
    root = Path(venv) if venv is not None else default_venv()
    python = root / "bin" / "python"
    if not python.is_file():
        raise UserError(f"no Triton venv at {root}: create it with `{_SETUP}` (or set {VENV_ENV})")
    probe = ("import json, sys, sysconfig, pathlib, pytriton; p = pathlib.Path(pytriton.__file__).parent;"
             "print(json.dumps({'server': str(p / 'tritonserver'), 'libs': str(p.parent / 'nvidia_pytriton.libs'),"
             "'site': str(p.parent), 'version': '%d.%d' % sys.version_info[:2],"
             "'libdir': sysconfig.get_config_var('LIBDIR') or ''}))")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise UserError(f"the Triton venv {root} is incomplete ({result.stderr.strip().splitlines()[-1:]}): "
                        f"run `{_SETUP}`")
    info = json.loads(result.stdout)
    install = TritonInstall(venv=root, server_dir=Path(info["server"]), libs_dir=Path(info["libs"]),
                            site_packages=Path(info["site"]), python_version=info["version"], libdir=info["libdir"])
    for needed in (install.server_dir / "bin" / "tritonserver", install.stub):
        if not needed.is_file():
            raise UserError(f"{needed} is missing from the Triton venv: run `{_SETUP}`")
    return install


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class TritonServer:
    """A tritonserver process serving ``repo`` on 127.0.0.1; ``with TritonServer(repo) as server: server.grpc_url``.

    extra_sys_path: folders the python models import from, after the venv's site-packages (default: the
    project root, so that ``gflv2_deploy`` is importable from a source checkout).
    models: load only these models at start (explicit model control); default: every model in ``repo``.
    admin_key: restrict the model-repository, model-config and shared-memory APIs to requests carrying it
    (header ``drain.KEY_HEADER``). exit_timeout_s: Triton's ``--exit-timeout-secs``. shm_limit_bytes: the size
    of a private /dev/shm (``unshare -m``; root only), as a container's ``--shm-size``.
    Start it from a thread that outlives it (the parent-death signal follows the starting thread).
    """

    def __init__(self, repo: str | os.PathLike[str], *, venv: str | os.PathLike[str] | None = None,
                 extra_sys_path: Sequence[str | os.PathLike[str]] = (PROJECT_ROOT,),
                 models: Sequence[str] | None = None, ready_timeout_s: float = 180.0, log_verbose: int = 0,
                 admin_key: str | None = None, exit_timeout_s: int = 30, shm_limit_bytes: int | None = None) -> None:
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise UserError(f"model repository not found: {self.repo}")
        self.install = find_install(venv)
        self.extra_sys_path = [str(p) for p in extra_sys_path]
        self.models = list(models) if models is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self.admin_key = admin_key
        self.exit_timeout_s = int(exit_timeout_s)
        self.shm_limit_bytes = shm_limit_bytes
        if shm_limit_bytes is not None and shutil.which("unshare") is None:
            raise UserError("shm_limit_bytes needs the unshare command (util-linux)")
        self.shm_prefix = f"gflv2tr{uuid.uuid4().hex[:10]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.workspace: Path | None = None
        self._finalizer: weakref.finalize | None = None
        self.last_log = ""
        self.http_port = self.grpc_port = self.metrics_port = 0

    # --- addresses ---------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path | None:
        return self.workspace / "server.log" if self.workspace else None

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path and path.is_file() else ""

    def shm_regions(self) -> list[Path]:
        """This server's python-backend shared-memory regions still in /dev/shm."""
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*")) if SHM_DIR.is_dir() else []

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> None:
        """Launch the server and wait until it reports ready; UserError with the log's tail when it does not.

        The free ports are picked just before the launch; should another process take one in between (the
        server then exits with "address already in use"), it is launched again on new ports, ``attempts``
        times in all.
        """
        for attempt in range(attempts):
            self._launch()
            try:
                self._wait_ready()
                return
            except UserError:
                busy = "already in use" in self.log_text().lower()
                self.stop()
                if not busy or attempt == attempts - 1:
                    raise
            except BaseException:
                self.stop()
                raise

    def _launch(self) -> None:
        remove_stale_workspaces()
        self.workspace = Path(tempfile.mkdtemp(prefix=f"{_WORKSPACE_PREFIX}{os.getpid()}-"))
        backends = self.workspace / "backends"
        shutil.copytree(self.install.server_dir / "backends", backends)
        shutil.copy2(self.install.stub, backends / "python" / "triton_python_backend_stub")
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        command = [
            str(self.install.server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.repo}",
            f"--backend-directory={backends}",
            f"--cache-directory={self.install.server_dir / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--exit-on-error=true", "--strict-readiness=true", f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={self.exit_timeout_s}", "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in (self.models if self.models is not None else ["*"])),
        ]
        if self.admin_key is not None:
            from gflv2_deploy.serve.drain import KEY_HEADER

            rule = f"{','.join(RESTRICTED_APIS)}:{KEY_HEADER}={self.admin_key}"
            command += [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
        if self.shm_limit_bytes is not None:  # a private tmpfs over /dev/shm, as `docker run --shm-size`
            mount = f'mount -t tmpfs -o size={int(self.shm_limit_bytes)} tmpfs /dev/shm && exec "$0" "$@"'
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, *command]
        with open(self.workspace / "server.log", "wb") as log:
            # A session of its own: terminal signals do not reach it, and its stubs share its process group.
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                            cwd=self.workspace, start_new_session=True,
                                            preexec_fn=_parent_death_signal())
        self._finalizer = weakref.finalize(self, _shut_down, self.process, self.workspace, self.shm_prefix)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [self.install.libdir, str(self.install.libs_dir), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(self.install.venv / "bin"), env.get("PATH", "")])
        env[SYS_PATH_ENV] = os.pathsep.join([str(self.install.site_packages), *self.extra_sys_path])
        env.pop("PYTHONPATH", None)  # the project's numpy 2 must not leak into the stub
        return env

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise UserError(f"tritonserver exited with status {self.process.returncode} while starting:\n"
                                + _tail(self.log_text()))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (127.0.0.1 only)
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise UserError(f"tritonserver was not ready after {self.ready_timeout_s:.0f} s:\n" + _tail(self.log_text()))

    def drain(self, timeout_s: float = 60.0, models: Sequence[str] | None = None) -> list[str]:
        """Unload the entry models, then the rest, once their in-flight requests are done (``serve/drain.py``).

        New requests are refused from the first step on; returns the models unloaded. DrainError on failure.
        """
        from gflv2_deploy.serve.drain import KEY_HEADER, drain

        headers = {KEY_HEADER: self.admin_key} if self.admin_key is not None else {}
        return drain(self.http_url, models=models, headers=headers, timeout_s=timeout_s)

    def stop(self, drain: bool = False, drain_timeout_s: float = 60.0) -> int | None:
        """SIGTERM by PID, wait, SIGKILL what is left of its process group; remove workspace and /dev/shm regions.

        drain: first ``drain()`` (a failed drain still stops the server). Returns the server's exit status
        (None when it was never started). Also runs when the object is garbage-collected or the interpreter
        exits, so that no server outlives the process that started it.
        """
        if drain and self.process is not None and self.process.poll() is None:
            from gflv2_deploy.serve.drain import DrainError

            try:
                self.drain(drain_timeout_s)
            except DrainError:
                pass  # stop anyway; the caller sees lost requests in its own counts
        if self.workspace is not None:
            self.last_log = self.log_text()
        status = self._finalizer() if self._finalizer is not None else None
        self.workspace = None
        return status

    def group_alive(self) -> bool:
        """True while any process of the server's process group (server or stubs) exists."""
        if self.process is None:
            return False
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


def remove_stale_workspaces() -> list[Path]:
    """Remove the workspaces (copied backends, log) of local servers whose managing process is gone (killed before
    it could clean up: the server itself went with it, by its parent-death signal). Returns those removed."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{_WORKSPACE_PREFIX}*-*"):
        owner = folder.name[len(_WORKSPACE_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or not folder.is_dir():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except PermissionError:
            pass  # alive, another user's
    return removed


def _parent_death_signal() -> Any:
    """A ``preexec_fn`` that asks the kernel to SIGTERM the child when its parent (thread) dies.

    libc is loaded here, in the parent, so that the child only makes two system calls. If the parent died
    between fork and prctl, the child exits at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def set_signal() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return set_signal


def _shut_down(process: subprocess.Popen[bytes], workspace: Path, shm_prefix: str, timeout_s: float = 60.0) -> int:
    """Stop ``process`` (SIGTERM by PID, then SIGKILL to its own process group), remove its workspace and shm."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    try:  # python-backend stubs left behind by a killed server are in the group we created
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if SHM_DIR.is_dir():
        for region in SHM_DIR.glob(f"{shm_prefix}*"):
            region.unlink(missing_ok=True)
    shutil.rmtree(workspace, ignore_errors=True)
    return process.returncode


def _tail(text: str, lines: int = 12) -> str:
    """The server log's error lines (``E<date>`` records and ``error:`` lines), else its last lines.

    The start-up banner (a large options table) would otherwise hide the reason a model failed to load.
    """
    all_lines = text.strip().splitlines()
    errors = [line for line in all_lines if re.match(r"E\d{4} ", line) or "error:" in line.lower()]
    return "\n".join((errors or all_lines)[-lines:])


def serve_onnx_locally(onnx_path: str | os.PathLike[str], *, threads: int | None = None, max_batch: int = 8,
                       name: str = "gflv2") -> TritonServer:
    """A started local server for one exported ONNX: a python-platform repository (no ensemble) of model ``name``.

    The repository lives in a temporary folder removed with the server (``stop()``, garbage collection or
    interpreter exit). For ``gflv2-deploy bench --backend triton``.
    """
    from gflv2_deploy.serve.triton_options import RepositoryOptions
    from gflv2_deploy.serve.triton_write import write_triton_repository

    folder = Path(tempfile.mkdtemp(prefix="gflv2-triton-repo-"))
    try:
        write_triton_repository(onnx_path, folder / "repo", RepositoryOptions(
            platform="python", name=name, max_batch=max_batch, onnxruntime_threads=threads or 0))
        server = TritonServer(folder / "repo")
        weakref.finalize(server, shutil.rmtree, folder, True)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    server.start()
    return server

