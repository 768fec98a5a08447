#!/usr/bin/env bash
# The GPU checks of issue 12 in one script (about 5 minutes on one GPU): build for the local GPU only, the CUDA
# kernels against the CPU twin and torchvision (pytest -m gpu), latency at 800x1344 (batch 1 and 8) against
# torchvision batched_nms + top-K, and compute-sanitizer memcheck + racecheck on a small run.
#   bash plugins/gflv2_nms/tools/gpu_check.sh      (from the repository root; needs .venv with CUDA torch)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${GFLV2_PYTHON:-.venv/bin/python}
cmake -S plugins/gflv2_nms -B build/gflv2_nms -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=native \
  -DGFLV2_PYTHON="$PY" > build/gflv2_nms.gpu-configure.log
cmake --build build/gflv2_nms -j "$(nproc)"
(cd build/gflv2_nms && ctest --output-on-failure)
"$PY" -m pytest -q -p no:cacheprovider tests/unit/nms_plugin/test_nms_plugin_cuda.py
"$PY" plugins/gflv2_nms/tools/cuda_nms.py --bench
SANITIZER=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
small='import sys; sys.path.insert(0, "plugins/gflv2_nms/tools"); import numpy as np; from cuda_nms import CudaNms, detector_like
b, s = detector_like(np.random.default_rng(0), 2, 3000, 20); out, _ = CudaNms().run(b, s); print("num_dets", out[0].ravel())'
for tool in memcheck racecheck; do
  "$SANITIZER" --tool "$tool" --error-exitcode 1 "$PY" -c "$small"
done
