#!/usr/bin/env bash
# Create .venv and install gflv2-deploy with the pinned versions in constraints.txt.
# Works on a fresh machine that has only Python 3.10+ (torch==2.13.0 resolves to the CPU wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${GFLV2_EXTRAS:-onnx,dev,tensorrt-rtx,openvino,triton,ray,docs}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]" > .venv/install.log 2>&1; then
  grep -v "is ignored: it is neither a file nor a directory" .venv/install.log >&2
  echo "setup failed: pip could not install gflv2-deploy (log above)" >&2
  exit 1
fi
.venv/bin/python -c "import gflv2_deploy, torch; print('gflv2-deploy', gflv2_deploy.__version__, '| torch', torch.__version__)"
