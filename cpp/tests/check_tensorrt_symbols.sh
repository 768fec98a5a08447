#!/bin/sh
# check_tensorrt_symbols.sh LIB: the TensorRT backend library exports gflv2_tensorrt_open_v1 and leaves only
# TensorRT's C entry points unresolved (createInferRuntime_INTERNAL, getInferLibVersion, initLibNvInferPlugins),
# resolved at run time by the libnvinfer that libgflv2 loads first. Compile-only proof: nothing here runs TensorRT.
set -eu
lib=$1
nm -D --defined-only "$lib" | grep -q ' T gflv2_tensorrt_open_v1$' || { echo "$lib does not export gflv2_tensorrt_open_v1"; exit 1; }
unresolved=$(nm -D --undefined-only "$lib" | awk '{print $2}' | grep -Ev '^(cuda|__cuda|_Z|__cxa|__gxx|_Unwind|__stack_chk|__libc|__gmon|_ITM|__tls)' \
  | grep -Ev '@(GLIBC|GLIBCXX|CXXABI|GCC|libcudart)' || true)
expected="createInferRuntime_INTERNAL getInferLibVersion initLibNvInferPlugins"
got=$(echo $unresolved | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "$expected" ] || { echo "unexpected unresolved symbols in $lib: '$got' (expected '$expected')"; exit 1; }
echo "$lib: exports gflv2_tensorrt_open_v1; TensorRT symbols left to libnvinfer: $got"
