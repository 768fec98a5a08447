"""Where the native parts of gflv2-deploy are, for Python, C and C++ users alike.

The wheel carries them under ``gflv2_deploy/_native/``, a CMake install prefix:

    _native/include/gflv2/        gflv2.h (C ABI), detector.hpp (C++ API), error.hpp
    _native/lib/libgflv2.so       the runtime library (ONNX Runtime is found at run time: the onnxruntime wheel)
    _native/lib/libgflv2_nms_ort.so   the ONNX Runtime custom-op library of our NMS (``--nms plugin`` graphs)
    _native/lib/cmake/gflv2/      gflv2Config.cmake: find_package(gflv2 CONFIG) -> gflv2::gflv2
    _native/lib/pkgconfig/gflv2.pc
    _native/bin/gflv2-detect      the command-line program

A developer checkout (``pip install -e .``) has no ``_native/``: the libraries ``scripts/build_cpp.sh`` built in
``build/`` are used instead. An environment variable overrides each library. In the spirit of
onnxruntime-extensions' ``get_library_path()`` and ``torch.utils.cmake_prefix_path``:

    python -m gflv2_deploy.native                 every path, and which ones exist
    python -m gflv2_deploy.native --cmake-prefix  for -DCMAKE_PREFIX_PATH=...
    python -m gflv2_deploy.native --pkg-config-path

Nothing here loads a library; the functions only say where the files are.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gflv2_deploy import __version__
from gflv2_deploy.errors import UserError

NATIVE_DIR = Path(__file__).resolve().parent / "_native"  # the wheel's install prefix
_REPO_BUILD = Path(__file__).resolve().parent.parent / "build"  # a developer checkout's build folder

ENV_CPP_LIBRARY = "GFLV2_CPP_LIBRARY"  # libgflv2.so to use
ENV_NMS_ORT_LIBRARY = "GFLV2_NMS_ORT_LIBRARY"  # libgflv2_nms_ort.so to use (the C++ library reads it too)
NMS_ORT_LIBRARY_NAME = "libgflv2_nms_ort.so"
_HOW_TO_GET = ("install the gflv2-deploy wheel (it carries the native parts), or in a checkout build them with "
               "`bash scripts/setup_cpp.sh && bash scripts/build_cpp.sh`")


def _in_wheel() -> bool:
    return (NATIVE_DIR / "lib").is_dir()


def _first_file(candidates: list[Path]) -> Path:
    """The first existing file of ``candidates``, else the first candidate (what a message should name)."""
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


def cpp_library() -> Path:
    """libgflv2.so: ``$GFLV2_CPP_LIBRARY``, else the wheel's ``_native/lib/libgflv2.so`` (or the SONAME file of a
    versioned install), else ``build/cpp/libgflv2.so`` of a checkout. The path may not exist: ``require``."""
    env = os.environ.get(ENV_CPP_LIBRARY)
    if env:
        return Path(env)
    if _in_wheel():
        lib = NATIVE_DIR / "lib"
        return _first_file([lib / "libgflv2.so", *sorted(lib.glob("libgflv2.so.*"), key=lambda p: len(p.name))])
    return _REPO_BUILD / "cpp" / "libgflv2.so"


def nms_op_library() -> Path:
    """libgflv2_nms_ort.so, the ONNX Runtime custom-op library of ``gflv2::GFLV2NMS_TRT``:
    ``$GFLV2_NMS_ORT_LIBRARY``, else the wheel's ``_native/lib/``, else ``build/gflv2_nms/`` of a checkout."""
    env = os.environ.get(ENV_NMS_ORT_LIBRARY)
    if env:
        return Path(env)
    if _in_wheel():
        return NATIVE_DIR / "lib" / NMS_ORT_LIBRARY_NAME
    return _REPO_BUILD / "gflv2_nms" / NMS_ORT_LIBRARY_NAME


get_library_path = nms_op_library  # the name onnxruntime-extensions users know


def tensorrt_plugin_library(major: int) -> Path:
    """The TensorRT ``major`` plugin library of our NMS. It is built against the user's TensorRT headers, so the
    wheel does not carry it: ``build/gflv2_nms/libgflv2_nms_trt<major>.so`` of a checkout (plugins/gflv2_nms)."""
    return _REPO_BUILD / "gflv2_nms" / f"libgflv2_nms_trt{int(major)}.so"


def detect_program() -> Path:
    """The ``gflv2-detect`` program: the wheel's ``_native/bin/``, else ``build/cpp/`` of a checkout."""
    return NATIVE_DIR / "bin" / "gflv2-detect" if _in_wheel() else _REPO_BUILD / "cpp" / "gflv2-detect"


def cmake_prefix() -> Path:
    """The install prefix holding ``lib/cmake/gflv2/gflv2Config.cmake`` (for ``CMAKE_PREFIX_PATH``).

    Only an installed wheel has one; a checkout makes its own with ``cmake --install build/cpp --prefix ...``.
    """
    config = NATIVE_DIR / "lib" / "cmake" / "gflv2" / "gflv2Config.cmake"
    if not config.is_file():
        raise UserError(f"no CMake package here ({config} missing): the wheel carries one; in a checkout run "
                        "`cmake --install build/cpp --prefix DIR` and use DIR")
    return NATIVE_DIR


def pkg_config_path() -> Path:
    """The folder of ``gflv2.pc`` in the wheel (for ``PKG_CONFIG_PATH``)."""
    return cmake_prefix() / "lib" / "pkgconfig"


def require(path: Path, what: str, env: str | None = None) -> Path:
    """``path`` if it is a file, else UserError: one line naming it and how to get it."""
    if path.is_file():
        return path
    override = f", or point ${env} at it" if env else ""
    source = f"${env} = {os.environ[env]}" if env and os.environ.get(env) else str(path)
    raise UserError(f"{what} is missing ({source}): {_HOW_TO_GET}{override}")


def _describe() -> str:
    rows = [("version", __version__),
            ("layout", "wheel (gflv2_deploy/_native)" if _in_wheel() else f"checkout ({_REPO_BUILD})"),
            ("libgflv2", cpp_library()), ("nms op library", nms_op_library()), ("gflv2-detect", detect_program())]
    if _in_wheel():
        rows += [("cmake prefix", NATIVE_DIR), ("pkg-config path", NATIVE_DIR / "lib" / "pkgconfig")]
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        mark = "" if not isinstance(value, Path) else ("  (ok)" if value.exists() else "  (missing)")
        lines.append(f"{name:<{width}}  {value}{mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gflv2_deploy.native",
                                     description="Where the native parts of gflv2-deploy are.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cmake-prefix", action="store_true", help="print the prefix for CMAKE_PREFIX_PATH")
    group.add_argument("--pkg-config-path", action="store_true", help="print the folder of gflv2.pc")
    group.add_argument("--nms-op-library", action="store_true", help="print the path of libgflv2_nms_ort.so")
    group.add_argument("--cpp-library", action="store_true", help="print the path of libgflv2.so")
    args = parser.parse_args(argv)
    try:
        if args.cmake_prefix:
            print(cmake_prefix())
        elif args.pkg_config_path:
            print(pkg_config_path())
        elif args.nms_op_library:
            print(require(nms_op_library(), "the NMS op library", ENV_NMS_ORT_LIBRARY))
        elif args.cpp_library:
            print(require(cpp_library(), "the C++ runtime library", ENV_CPP_LIBRARY))
        else:
            print(_describe())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
