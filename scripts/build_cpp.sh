#!/usr/bin/env bash
# Build the C++ deliverables from scratch and run their gtest suites with ctest.
#
#   bash scripts/build_cpp.sh            release build of every project + ctest
#   SANITIZE=1 bash scripts/build_cpp.sh  ASan + UBSan build (build/<project>-asan) + ctest
#
# Needs scripts/setup.sh (.venv with the onnxruntime wheel) and scripts/setup_cpp.sh (apt packages).
# Projects: one CMake project per deliverable; add a new one to PROJECTS.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECTS=(plugins/gflv2_nms cpp)
JOBS=${JOBS:-$(nproc)}
# No CUDA toolkit: use nvcc from the PyPI wheels scripts/setup_cpp.sh unpacked into build/cuda-pypi, if any.
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc > /dev/null 2>&1; then
  pypi_nvcc=$(ls build/cuda-pypi/nvidia/*/bin/nvcc 2> /dev/null | head -n 1 || true)
  if [ -n "$pypi_nvcc" ]; then
    export CUDACXX="$PWD/$pypi_nvcc" CUDAToolkit_ROOT="$PWD/$(dirname "$(dirname "$pypi_nvcc")")"
  fi
fi
for project in "${PROJECTS[@]}"; do
  [ -f "$project/CMakeLists.txt" ] || continue
  name=$(basename "$project")
  if [ "${SANITIZE:-0}" = 1 ]; then
    suffix=-asan; type=Debug; extra=(-DGFLV2_SANITIZE=ON)
  else
    suffix=; type=Release; extra=()
  fi
  dir="build/$name$suffix"
  # cpp's tests run --nms plugin graphs with the custom-op library of the plugin project built just before
  if [ "$name" = cpp ]; then extra+=("-DGFLV2_NMS_ORT_LIBRARY=$PWD/build/gflv2_nms$suffix/libgflv2_nms_ort.so"); fi
  echo "== $project -> $dir ($type)"
  mkdir -p build
  cmake -S "$project" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=$type "${extra[@]}" > "build/$name.configure.log" 2>&1 \
    || { mkdir -p build; cat "build/$name.configure.log" >&2; echo "cmake configure of $project failed" >&2; exit 1; }
  cmake --build "$dir" -j "$JOBS"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS")
done
