#!/bin/sh
# check_tensorrt_symbols.sh LIB: the TensorRT backend library exports gflv2_tensorrt_open_v2, and the symbols
# that none of its own dependencies (ldd) define are exactly libnvinfer's C entry points
# (createInferRuntime_INTERNAL, getInferLibVersion), which the libnvinfer that libgflv2 loads first provides at
# run time. Nothing of libnvinfer_plugin may be among them (its initLibNvInferPlugins is resolved with dlsym),
# or dlopen(RTLD_NOW) would fail wherever libnvinfer_plugin is not loaded. A link-level check; the loading
# itself is tested against stub libraries (test_tensorrt_loader.cpp).
set -eu
lib=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | grep -q ' T gflv2_tensorrt_open_v2$' || { echo "$lib does not export gflv2_tensorrt_open_v2"; exit 1; }
# every dependency ldd resolves, the dynamic loader included (it defines __tls_get_addr for the static CUDA runtime)
for dep in $(ldd "$lib" | awk '/=> \// {print $3} $1 ~ /^\// {print $1}'); do nm -D --defined-only "$dep" | awk '{print $3}'; done \
  | sed 's/@.*//' | sort -u > "$tmp/defined"
nm -D --undefined-only "$lib" | awk '$1 == "U" {print $2}' | sed 's/@.*//' | sort -u > "$tmp/undefined"
got=$(comm -23 "$tmp/undefined" "$tmp/defined" | tr '\n' ' ' | sed 's/ $//')
expected="createInferRuntime_INTERNAL getInferLibVersion"
[ "$got" = "$expected" ] || { echo "unresolved symbols of $lib: '$got' (expected '$expected')"; exit 1; }
echo "$lib: exports gflv2_tensorrt_open_v2; left to libnvinfer: $got"
