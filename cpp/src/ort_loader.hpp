// ONNX Runtime is not linked into libgflv2: it is found and opened at run time, so one library works with the
// onnxruntime of a Python install, a copy installed beside it, or the system's (docs/cpp.md).
#pragma once

struct OrtApi;

namespace gflv2 {

inline constexpr const char* kOnnxruntimeLibraryEnv = "GFLV2_ONNXRUNTIME_LIBRARY";

// The ONNX Runtime C API of the vendored headers' version (ORT_API_VERSION), opened on first use, in this order:
//   1. $GFLV2_ONNXRUNTIME_LIBRARY;
//   2. an ONNX Runtime the process already has (OrtGetApiBase visible to dlsym(RTLD_DEFAULT));
//   3. libonnxruntime.so.1 beside libgflv2.so (what `cmake --install` puts there);
//   4. the onnxruntime Python wheel beside the gflv2_deploy wheel (site-packages/onnxruntime/capi);
//   5. libonnxruntime.so.1 on the loader's path.
// Throws gflv2::Error(kUnsupported) naming every place tried, or the version found when it is too old.
const OrtApi& onnxruntime_api();

}  // namespace gflv2
