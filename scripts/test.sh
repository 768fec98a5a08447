#!/usr/bin/env bash
# Set up everything and run the whole test suite (what CI runs). Extra arguments go to pytest.
#   1. scripts/setup.sh         .venv with the pinned Python packages
#   2. scripts/setup_cpp.sh     Debian packages of the C++ projects (apt, once)
#   3. scripts/build_cpp.sh     C++ projects (plugins/gflv2_nms, cpp) from scratch + their ctest suites,
#                               then the same unit tests under ASan + UBSan (SANITIZE=1)
#   4. scripts/setup_triton.sh  .venv-triton with the PyTriton server (its own numpy<2)
#   5. scripts/setup_browser.sh Debian's chromium for the browser test of the HTML report (apt, once); the test
#                               then fails instead of skipping when chromium is missing (GFLV2_REQUIRE_CHROMIUM=1)
#   6. scripts/test_packaging.sh the wheel and the C++ package installed and used from outside the repository
#   7. pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_cpp.sh
bash scripts/build_cpp.sh
SANITIZE=1 bash scripts/build_cpp.sh
bash scripts/setup_triton.sh
bash scripts/setup_browser.sh
bash scripts/test_packaging.sh
export GFLV2_REQUIRE_CHROMIUM=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
