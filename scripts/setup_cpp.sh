#!/usr/bin/env bash
# Install the Debian packages the C++ projects (cpp/ runtime library, plugins/gflv2_nms) build against:
# cmake, ninja, OpenCV 4.6, nlohmann-json, gtest/gmock, CLI11. Idempotent: apt runs only when one is missing.
# The CUDA toolkit is expected at /usr/local/cuda (or nvcc on PATH); ONNX Runtime comes from the pinned
# onnxruntime wheel in .venv (scripts/setup.sh), TensorRT and ONNX Runtime headers from third_party/ (vendored).
set -euo pipefail
PACKAGES=(cmake ninja-build g++ pkg-config libopencv-dev nlohmann-json3-dev libgtest-dev libgmock-dev libcli11-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup_cpp: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# CUDA compiler for plugins/gflv2_nms (kernels + TensorRT plugins): the toolkit at /usr/local/cuda, else nvcc on
# PATH, else NVIDIA's PyPI wheels (nvcc, runtime headers and libraries, CCCL) unpacked into build/cuda-pypi, which
# scripts/build_cpp.sh then uses. Without any of them only the CPU twin and the ONNX Runtime op are built.
cd "$(dirname "$0")/.."
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc > /dev/null 2>&1 && [ ! -d build/cuda-pypi/nvidia ]; then
  echo "setup_cpp: no nvcc; installing nvidia-cuda-nvcc (+ runtime, cccl, crt) 13.0 from PyPI into build/cuda-pypi"
  "${GFLV2_PYTHON:-.venv/bin/python}" -m pip install -q --target build/cuda-pypi \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" \
    || echo "setup_cpp: could not install nvcc from PyPI; the CUDA targets of plugins/gflv2_nms will be skipped" >&2
fi
