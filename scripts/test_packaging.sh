#!/usr/bin/env bash
# The product installed the way users install it, checked from folders outside the repository:
#   1. the platform wheel (scripts/build_wheel.sh): its manylinux tag (auditwheel show), a fresh venv with only
#      `[onnxruntime]` (no torch): --version, configs, predict on an --nms plugin graph and on the cpp: backend
#      give the checkout's detections;
#   2. the C++ package: configure/build/`cmake --install` into a temporary prefix, delete the build tree, check the
#      RUNPATHs, build and run examples/cpp (CMake, C and C++; pkg-config, C) on a real photo;
#   3. examples/cpp/cpp_detect again, against the installed wheel's prefix (python -m gflv2_deploy.native).
# Needs scripts/setup.sh, setup_cpp.sh and build_cpp.sh first (the checkout's reference detections).
# Writes build/artifacts/packaging.log (the measured figures).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PY=.venv/bin/python
JOBS=${JOBS:-$(nproc)}
unset PYTHONPATH  # nothing of the checkout may leak into the installed product
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gflv2-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p build/artifacts
log=$repo/build/artifacts/packaging.log
: > "$log"
say() { echo "packaging: $*" | tee -a "$log"; }
fail() { echo "packaging: FAILED: $*" | tee -a "$log" >&2; exit 1; }
photo=tests/data/coco_val2017_tiny50/val2017/$(ls tests/data/coco_val2017_tiny50/val2017 | head -n 1)
photo2=tests/data/coco_val2017_tiny50/val2017/$(ls tests/data/coco_val2017_tiny50/val2017 | sed -n 2p)

# --- models and the checkout's detections -------------------------------------------------------------------
PYTHONPATH=$repo "$PY" cpp/tests/make_test_models.py "$tmp/models" > /dev/null
mkdir -p "$tmp/checkout"
for model in tiny_plugin.onnx cpp:tiny_prenms.onnx; do
  name=${model#cpp:}; backend=; [ "$model" != "$name" ] && backend=cpp:
  .venv/bin/gflv2-deploy predict "$backend$tmp/models/$name" "$photo" --out "$tmp/checkout/${name%.onnx}" > /dev/null
done

# --- 1. the wheel ---------------------------------------------------------------------------------------------
bash scripts/build_wheel.sh "$tmp/dist" | tee -a "$log"
wheel=$(ls "$tmp"/dist/*.whl)
say "wheel $(basename "$wheel"), $(( $(stat -c %s "$wheel") / 1024 )) KiB"
show=$("$PY" -m auditwheel show "$wheel" 2>&1 | tr '\n' ' ')
grep -q 'is consistent with the following platform tag: "manylinux_' <<< "$show" || fail "auditwheel show: $show"
say "auditwheel show: $(echo "$show" | grep -o 'is consistent with the following platform tag: "[^"]*"')"
python3 -m venv "$tmp/venv"
start=$(date +%s.%N)
"$tmp/venv/bin/pip" install -q -c constraints.txt "$wheel[onnxruntime]" > "$tmp/pip.log" 2>&1 \
  || { grep -v "is ignored" "$tmp/pip.log" >&2; fail "pip install of the wheel"; }
say "pip install of the wheel with [onnxruntime]: $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
mkdir -p "$tmp/outside" && cd "$tmp/outside"  # nothing of the repository on sys.path
version=$("$tmp/venv/bin/gflv2-deploy" --version)
[ "$version" = "gflv2-deploy $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/gflv2_deploy/__init__.py")" ] || fail "--version: $version"
if "$tmp/venv/bin/python" -c "import torch" 2> /dev/null; then fail "torch is importable in the [onnxruntime] venv"; fi
configs=$("$tmp/venv/bin/gflv2-deploy" configs)
for toml in "$repo"/gflv2_deploy/configs/*.toml; do
  name=$(basename "$toml" .toml)
  grep -q -w -- "$name" <<< "$configs" || fail "configs does not list $name"
done
say "installed: $version; configs lists all $(ls "$repo"/gflv2_deploy/configs/*.toml | wc -l) configurations; torch not importable"
"$tmp/venv/bin/python" -m gflv2_deploy.native | tee -a "$log"
for model in tiny_plugin.onnx cpp:tiny_prenms.onnx; do
  name=${model#cpp:}; backend=; [ "$model" != "$name" ] && backend=cpp:
  "$tmp/venv/bin/gflv2-deploy" predict "$backend$tmp/models/$name" "$repo/$photo" --out "$tmp/wheel/${name%.onnx}" > /dev/null
  want="$tmp/checkout/${name%.onnx}/$(basename "${photo%.jpg}").json"
  got="$tmp/wheel/${name%.onnx}/$(basename "${photo%.jpg}").json"
  "$tmp/venv/bin/python" - "$want" "$got" "$backend${name}" <<'PY' | tee -a "$log"
import json, sys
def rounded(x):
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, list):
        return [rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items() if k != "image"}
    return x
want, got = (rounded(json.load(open(p))) for p in sys.argv[1:3])
n = len(want["class_names"])
if want != got or n == 0:
    sys.exit(f"packaging: FAILED: {sys.argv[3]}: the wheel's detections differ from the checkout's "
             f"({len(got['class_names'])} vs {n})")
print(f"packaging: predict {sys.argv[3]} from the wheel: {n} detections, identical to the checkout's")
PY
done
cd "$repo"

# --- 2. the C++ package ---------------------------------------------------------------------------------------
prefix=$tmp/prefix
cmake -S cpp -B "$tmp/cpp-build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGFLV2_TESTS=OFF > "$tmp/cpp-configure.log" 2>&1 \
  || { cat "$tmp/cpp-configure.log" >&2; fail "configure cpp"; }
cmake --build "$tmp/cpp-build" -j "$JOBS" > "$tmp/cpp-build.log" 2>&1 || { tail -30 "$tmp/cpp-build.log" >&2; fail "build cpp"; }
cmake --install "$tmp/cpp-build" --prefix "$prefix" > /dev/null
rm -rf "$tmp/cpp-build"
for f in "$prefix"/lib/libgflv2.so.* "$prefix"/bin/gflv2-detect; do
  runpath=$(readelf -d "$f" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
  case "$runpath" in '$ORIGIN'|'$ORIGIN/../lib') ;; *) fail "$f has RUNPATH '$runpath'";; esac
done
[ -f "$prefix/lib/cmake/gflv2/gflv2Config.cmake" ] && [ -f "$prefix/lib/pkgconfig/gflv2.pc" ] || fail "CMake/pkg-config files missing"
say "cmake --install: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"
consume() {  # consume NAME PREFIX LABEL: configure, build and run examples/cpp/NAME against PREFIX
  cmake -S "examples/cpp/$1" -B "$tmp/$1-$3" -G Ninja -DCMAKE_PREFIX_PATH="$2" > "$tmp/$1.log" 2>&1 \
    || { cat "$tmp/$1.log" >&2; fail "configure examples/cpp/$1 against $3"; }
  cmake --build "$tmp/$1-$3" > "$tmp/$1.log" 2>&1 || { cat "$tmp/$1.log" >&2; fail "build examples/cpp/$1 against $3"; }
  (cd "$tmp" && env -u LD_LIBRARY_PATH "$tmp/$1-$3/$1" "$tmp/models/tiny_prenms.onnx" "$repo/$photo" "${@:4}") \
    | sed "s/^$1/$1 (against the $3)/" | tee -a "$log"
}
checkout_count=$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['class_names']))" \
                 "$tmp/checkout/tiny_prenms/$(basename "${photo%.jpg}").json")
out=$(consume c_detect "$prefix" prefix)
[[ "$out" == *" $checkout_count detections in "* ]] || fail "c_detect: '$out' (the checkout's cpp: predict: $checkout_count)"
out=$(consume cpp_detect "$prefix" prefix "$repo/$photo2")
[[ "$out" == *"detections on 2 pictures"* ]] || fail "cpp_detect against the prefix: '$out'"
cc examples/cpp/c_detect/main.c -o "$tmp/c_detect_pc" $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs gflv2)
out=$(cd "$tmp" && ./c_detect_pc "$tmp/models/tiny_prenms.onnx" "$repo/$photo" | sed 's/^c_detect/c_detect (pkg-config)/')
echo "$out" | tee -a "$log"
[[ "$out" == *" $checkout_count detections in "* ]] || fail "the pkg-config build of c_detect: '$out'"

# --- 3. a C++ program against the pip-installed wheel --------------------------------------------------------
wheel_prefix=$(cd "$tmp/outside" && "$tmp/venv/bin/python" -m gflv2_deploy.native --cmake-prefix)
out=$(consume cpp_detect "$wheel_prefix" wheel "$repo/$photo2")
[[ "$out" == *"detections on 2 pictures"* ]] || fail "cpp_detect against the wheel's prefix: '$out'"
say "all packaging checks passed"
