// The one interface every inference backend implements (ONNX Runtime here; TensorRT 10/11 in src/tensorrt/).
// A Backend is the loaded model, shared by every thread (ORT session, TensorRT engine); a BackendContext is
// one thread's working state (buffers, TensorRT execution context, stream). Tensors are bound by the names
// of the graph contract, never by position.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "contract.hpp"
#include "gflv2/detector.hpp"

namespace gflv2 {

// A host tensor the backend owns: valid until the next infer() on the same context, or while `owner` lives.
struct HostTensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::shared_ptr<const void> owner;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct NamedTensor {
  std::string name;
  HostTensor tensor;
};

class BackendContext {
 public:
  virtual ~BackendContext() = default;
  // Host buffer for the `images` input of `bytes` bytes (floats, or uint8 pictures for a graph with
  // input_format uint8_nhwc_bgr), reused across calls (pinned for TensorRT).
  virtual void* images_buffer(std::size_t bytes) = 0;
  // Run on the images in images_buffer() of shape n x 3 x h x w (n x h x w x 3 uint8 for uint8 pictures);
  // img_shape: n x 2 (height, width) floats, fed when the graph has that input. Returns the contract's outputs
  // by name.
  virtual std::vector<NamedTensor> infer(const std::vector<int64_t>& images_shape, const float* img_shape) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const Contract& contract() const = 0;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<BackendContext> create_context() = 0;
};

// Open `model_path`: ".onnx" -> ONNX Runtime; anything else is taken as a TensorRT engine with its manifest.
std::shared_ptr<Backend> open_backend(const std::string& model_path, const DetectorOptions& options);

std::shared_ptr<Backend> open_onnxruntime(const std::string& model_path, const DetectorOptions& options);

// The folder of libgflv2.so (of the executable when the library's objects are linked into it); empty if unknown.
// Libraries shipped with it (the TensorRT backends, libgflv2_nms_ort.so) are looked up there.
std::string runtime_library_folder();
std::shared_ptr<Backend> open_tensorrt(const std::string& engine_path, const DetectorOptions& options);

}  // namespace gflv2
