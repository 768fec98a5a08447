// What crosses the dlopen boundary between libgflv2.so and a TensorRT backend library
// (libgflv2_tensorrt10.so / libgflv2_tensorrt11.so): one exported function and two small interfaces whose every
// call is noexcept and reports failure as a gflv2_status plus a message. No exception crosses the boundary:
// each library has its own (hidden) copy of gflv2::Error's type information, so an exception thrown in one is
// not reliably caught as gflv2::Error in the other. libgflv2 wraps these interfaces into Backend /
// BackendContext and turns a failed call back into gflv2::Error on its side (tensorrt_loader.cpp).
// Both sides are built from one source tree by one compiler, so C++ types (std::string, std::vector,
// std::shared_ptr) may be passed; only exceptions may not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../backend.hpp"
#include "../manifest.hpp"

namespace gflv2 {

struct BoundaryError {
  int status = GFLV2_OK;
  std::string message;
};

class TrtContextApi {
 public:
  virtual ~TrtContextApi() = default;
  // BackendContext::images_buffer; null (and *error filled) on failure.
  virtual void* images_buffer(std::size_t bytes, BoundaryError* error) noexcept = 0;
  // BackendContext::infer; false (and *error filled) on failure.
  virtual bool infer(const std::vector<int64_t>& images_shape, const float* img_shape, std::vector<NamedTensor>* outputs,
                     BoundaryError* error) noexcept = 0;
};

class TrtBackendApi {
 public:
  virtual ~TrtBackendApi() = default;
  virtual const Contract& contract() const noexcept = 0;
  // A context for one thread; null (and *error filled) on failure.
  virtual std::unique_ptr<TrtContextApi> create_context(BoundaryError* error) noexcept = 0;
};

inline constexpr const char* kTensorrtOpenSymbol = "gflv2_tensorrt_open_v2";

// Returns a gflv2_status; on failure `message` (message_size bytes) holds one line.
using TensorrtOpenFn = int (*)(const char* engine_path, const EngineManifest* manifest, const DetectorOptions* options,
                               std::shared_ptr<TrtBackendApi>* out, char* message, std::size_t message_size);

}  // namespace gflv2
