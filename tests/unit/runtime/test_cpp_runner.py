"""The ``cpp`` backend's Python side without the C++ library: the backend is listed, and a missing library
is one clear line saying how to build it (the C++ runs in tests/integration/test_cpp_runtime.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime import cpp_runner
from gflv2_deploy.runtime.factory import BACKENDS, make_detector, parse_model_spec


def test_cpp_is_a_backend() -> None:
    assert "cpp" in BACKENDS
    assert parse_model_spec("cpp:model.onnx") == ("cpp", Path("model.onnx"))


def test_missing_library_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the library is looked for first")
    monkeypatch.setenv("GFLV2_CPP_LIBRARY", str(tmp_path / "libgflv2.so"))
    monkeypatch.setattr(cpp_runner, "_library", None)
    with pytest.raises(UserError, match="build_cpp.sh"):
        make_detector("cpp", model)


def test_library_path_defaults_to_the_build_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GFLV2_CPP_LIBRARY", raising=False)
    assert cpp_runner.library_path().parts[-3:] == ("build", "cpp", "libgflv2.so")
