#!/usr/bin/env bash
# The GPU checks in one script, for a machine with an NVIDIA GPU, python3 (torch, torchvision with CUDA), nvcc and
# cmake, run from a copy of the working tree with nothing beside it (no .venv, no registry, no GTest needed):
#
#   bash scripts/gpu_check.sh                  # results in $OUT (default build/gpu_check): gpu_check.json + one JSON per step
#
# Steps (scripts/gpu_check_steps.py), each time-boxed with `timeout`, each writing $OUT/<step>.json with its status
# (passed / failed / skipped), duration and figures; a failed step is recorded and the next one runs:
#   environment   nvidia-smi, torch / torchvision / CUDA / cuDNN versions, TF32 defaults, tools found
#   build         plugins/gflv2_nms for this GPU (CMAKE_CUDA_ARCHITECTURES=native): CUDA kernels, ONNX Runtime op, plugin tests
#   trt_plugin    the TensorRT plugin through TensorRT's interfaces (workspace stored, serialised, checked in enqueue)
#   kernel_tests  tests/unit/nms_plugin/test_nms_plugin_cuda.py (pytest when installed, else a plain runner)
#   nms_bench     kernels vs torchvision batched_nms at batch 1 / 8 / 32: kept sets compared, CUDA-event timings, the
#                 data's candidate density and same-class overlap measured and reported
#   sanitizers    compute-sanitizer memcheck + racecheck on a small run (skipped, with the reason, when the runtime refuses)
#   torch_parity  the torch reference CPU vs CUDA on 20 test photos: product defaults, then TF32 explicitly on
# Without a GPU every step after the environment is recorded as skipped, in seconds. The whole run stays under
# 8 minutes (GFLV2_GPU_CHECK_BUDGET seconds, default 470): a step that would start past it is skipped.
# GFLV2_GPU_CHECK_ARCH overrides the CUDA architecture (default native); GFLV2_GPU_CHECK_CHECKPOINT gives torch_parity a
# trained checkpoint instead of the tests' detecting tiny model; PYTHON overrides python3.
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=${OUT:-$ROOT/build/gpu_check}
BUILD=${GFLV2_GPU_CHECK_BUILD:-$ROOT/build/gpu_check_build/gflv2_nms}
BUDGET=${GFLV2_GPU_CHECK_BUDGET:-470}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$(dirname "$BUILD")" || exit 2
START=$(date +%s)

# run_step NAME SECONDS: the step under `timeout`; if it leaves no JSON (killed, crashed), one is written here.
run_step() {
  local name=$1 limit=$2 elapsed remaining rc
  elapsed=$(( $(date +%s) - START ))
  remaining=$(( BUDGET - elapsed ))
  rm -f "$OUT/$name.json"
  if [ "$remaining" -lt 5 ]; then
    printf '{"step": "%s", "status": "skipped", "seconds": 0, "reason": "the %s s budget of the whole check was spent", "figures": {}}\n' \
      "$name" "$BUDGET" > "$OUT/$name.json"
    echo "[gpu_check] $name: skipped (budget spent)"
    return
  fi
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$PY" scripts/gpu_check_steps.py "$name" --out "$OUT" --build "$BUILD" --limit "$limit" \
    > "$OUT/$name.stdout" 2>&1
  rc=$?
  if [ ! -s "$OUT/$name.json" ]; then
    local why="exit status $rc"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why="timed out after $limit s"
    printf '{"step": "%s", "status": "failed", "seconds": %s, "reason": "%s (no result written; see %s.stdout)", "figures": {}}\n' \
      "$name" "$(( $(date +%s) - t0 ))" "$why" "$name" > "$OUT/$name.json"
    echo "[gpu_check] $name: failed ($why)"
  else
    tail -n 1 "$OUT/$name.stdout"
  fi
}

run_step environment 40
run_step build 170
run_step trt_plugin 20
run_step kernel_tests 90
run_step nms_bench 70
run_step sanitizers 90
run_step torch_parity 80
"$PY" scripts/gpu_check_steps.py summary --out "$OUT" --total-seconds "$(( $(date +%s) - START ))" \
  || { echo "summary failed: the step files are in $OUT" >&2; exit 1; }
echo "results: $OUT/gpu_check.json"
