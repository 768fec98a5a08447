#!/usr/bin/env bash
# Fresh machine: set up .venv (scripts/setup.sh), then the end-to-end demo on generated data into out/demo:
# synthetic data -> short gflv2_tiny training -> ONNX export -> torch vs onnxruntime parity and AP -> latency -> picture.
# Extra arguments go to `gflv2-deploy demo` (e.g. --quick, --threads 2, --checkpoint run/latest.pth).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gflv2-deploy demo --out out/demo "$@"
