#!/usr/bin/env bash
# Install the Debian packages the C++ projects (cpp/ runtime library, plugins/gflv2_nms) build against:
# cmake, ninja, OpenCV 4.6, nlohmann-json, gtest/gmock, CLI11. Idempotent: apt runs only when one is missing.
# The CUDA toolkit is expected at /usr/local/cuda (or nvcc on PATH); ONNX Runtime comes from the pinned
# onnxruntime wheel in .venv (scripts/setup.sh), TensorRT headers from ../shared/third_party.
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
