"""Fixtures for the GFLV2NMS_TRT tests: the ONNX Runtime custom-op library, built on demand.

The library normally comes from ``scripts/build_cpp.sh`` (build/gflv2_nms/). When it is missing, the
``nms_ort_lib`` fixture builds only the CPU twin (no CUDA) into build/gflv2_nms-pytest/. If that is impossible
too (no cmake, no gtest headers), the tests fail under CI=true and are skipped elsewhere with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from gflv2_deploy import nms_plugin
from gflv2_deploy.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[3]


def _build_cpu_library() -> Path:
    build = REPO_ROOT / "build" / "gflv2_nms-pytest"
    lib = build / nms_plugin.ORT_LIB_NAME
    if lib.is_file():
        return lib
    configure = ["cmake", "-S", str(REPO_ROOT / "plugins" / "gflv2_nms"), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 "-DGFLV2_NMS_CUDA=OFF", f"-DGFLV2_PYTHON={sys.executable}"]
    for cmd in (configure, ["cmake", "--build", str(build), "--target", "gflv2_nms_ort", "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: " + " | ".join(tail))
    return lib


@pytest.fixture(scope="session")
def nms_ort_lib() -> Iterator[Path]:
    """Path of libgflv2_nms_ort.so; $GFLV2_NMS_ORT_LIBRARY points at it for the session."""
    try:
        yield nms_plugin.ort_library_path()
        return
    except UserError as missing:
        reason = str(missing)
    try:
        lib = _build_cpu_library()
    except (OSError, RuntimeError) as exc:
        message = f"{reason}; building it here failed too: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    previous = os.environ.get(nms_plugin.ENV_ORT_LIB)
    os.environ[nms_plugin.ENV_ORT_LIB] = str(lib)
    yield lib
    if previous is None:
        os.environ.pop(nms_plugin.ENV_ORT_LIB, None)
    else:
        os.environ[nms_plugin.ENV_ORT_LIB] = previous
