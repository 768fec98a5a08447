// The one function a TensorRT backend library (libgflv2_tensorrt10.so / libgflv2_tensorrt11.so) exports.
// It returns a gflv2_status and a message instead of throwing, so no exception crosses the dlopen boundary.
#pragma once

#include <cstddef>
#include <memory>

#include "../backend.hpp"
#include "../manifest.hpp"

namespace gflv2 {

inline constexpr const char* kTensorrtOpenSymbol = "gflv2_tensorrt_open_v1";

using TensorrtOpenFn = int (*)(const char* engine_path, const EngineManifest* manifest, const DetectorOptions* options,
                               std::shared_ptr<Backend>* out, char* message, std::size_t message_size);

}  // namespace gflv2
