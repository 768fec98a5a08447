#!/usr/bin/env bash
# Create .venv-triton: the Triton Inference Server binary that nvidia-pytriton bundles (python backend
# only), with onnxruntime, OpenCV and numpy<2 for the python-backend models of `gflv2-deploy triton`.
# A venv of its own because PyTriton pins numpy<2 while the project uses numpy 2. Idempotent: a second
# run only checks. Prints the tritonserver path. Pins: constraints-triton.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GFLV2_TRITON_VENV:-.venv-triton}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import pytriton, onnxruntime, cv2, numpy" 2>/dev/null; then
  if ! "$VENV/bin/python" -m pip install -q -c constraints-triton.txt nvidia-pytriton onnxruntime \
      opencv-python-headless numpy > "$VENV/install.log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$VENV/install.log" >&2
    echo "setup_triton failed: pip could not install the Triton venv (log above)" >&2
    exit 1
  fi
fi
"$VENV/bin/python" - <<'PY'
import pathlib, pytriton, numpy, onnxruntime
server = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
if not server.is_file():
    raise SystemExit(f"setup_triton: {server} missing from nvidia-pytriton")
print(f"tritonserver {server} | numpy {numpy.__version__} | onnxruntime {onnxruntime.__version__}")
PY
