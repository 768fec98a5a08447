"""gflv2_deploy.native: where the native parts are in a wheel, in a checkout and with the environment overrides.

The installed wheel itself is tested by scripts/test_packaging.sh; here the lookup rules on folders laid out the
same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from gflv2_deploy import native
from gflv2_deploy.errors import UserError


def _wheel_prefix(root: Path) -> Path:
    prefix = root / "_native"
    for rel in ("lib/libgflv2.so.0.2.0", "lib/libgflv2.so.0", "lib/libgflv2_nms_ort.so", "bin/gflv2-detect",
                "lib/cmake/gflv2/gflv2Config.cmake", "lib/pkgconfig/gflv2.pc"):
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_bytes(b"")
    return prefix


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(native.ENV_CPP_LIBRARY, raising=False)
    monkeypatch.delenv(native.ENV_NMS_ORT_LIBRARY, raising=False)
    return monkeypatch


def test_wheel_layout_is_used_when_present(tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys) -> None:
    prefix = _wheel_prefix(tmp_path)
    clean_env.setattr(native, "NATIVE_DIR", prefix)
    assert native.cpp_library() == prefix / "lib" / "libgflv2.so.0"  # a versioned install: the SONAME file
    (prefix / "lib" / "libgflv2.so").write_bytes(b"")
    assert native.cpp_library() == prefix / "lib" / "libgflv2.so"  # the wheel's one unversioned file
    assert native.nms_op_library() == prefix / "lib" / "libgflv2_nms_ort.so"
    assert native.get_library_path() == native.nms_op_library()
    assert native.detect_program() == prefix / "bin" / "gflv2-detect"
    assert native.cmake_prefix() == prefix
    assert native.main(["--pkg-config-path"]) == 0
    assert capsys.readouterr().out.strip() == str(prefix / "lib" / "pkgconfig")


def test_checkout_layout_uses_the_build_folder(tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys) -> None:
    clean_env.setattr(native, "NATIVE_DIR", tmp_path / "absent")
    clean_env.setattr(native, "_REPO_BUILD", tmp_path / "build")
    assert native.cpp_library() == tmp_path / "build" / "cpp" / "libgflv2.so"
    assert native.nms_op_library() == tmp_path / "build" / "gflv2_nms" / "libgflv2_nms_ort.so"
    with pytest.raises(UserError, match="cmake --install build/cpp"):
        native.cmake_prefix()
    assert native.main(["--cmake-prefix"]) == 2
    assert capsys.readouterr().err.startswith("error: no CMake package here")
    with pytest.raises(UserError, match="C\\+\\+ runtime library is missing .*build_cpp.sh"):
        native.require(native.cpp_library(), "the C++ runtime library", native.ENV_CPP_LIBRARY)


def test_environment_overrides_both_layouts(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(native, "NATIVE_DIR", _wheel_prefix(tmp_path))
    clean_env.setenv(native.ENV_CPP_LIBRARY, str(tmp_path / "mine.so"))
    clean_env.setenv(native.ENV_NMS_ORT_LIBRARY, str(tmp_path / "op.so"))
    assert native.cpp_library() == tmp_path / "mine.so"
    assert native.nms_op_library() == tmp_path / "op.so"
    with pytest.raises(UserError, match=r"\$GFLV2_NMS_ORT_LIBRARY = .*op.so"):
        native.require(native.nms_op_library(), "the NMS op library", native.ENV_NMS_ORT_LIBRARY)
