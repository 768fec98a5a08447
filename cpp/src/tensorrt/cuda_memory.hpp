// RAII wrappers for the CUDA objects the TensorRT backend owns: a stream, pinned host and device buffers
// (grow-only, reused across calls), and an instantiated CUDA graph. Every CUDA error becomes gflv2::Error.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

namespace gflv2::cuda {

// Throw gflv2::Error(kBackend) naming `what` when `status` is not cudaSuccess.
void check(cudaError_t status, const char* what);

class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// A grow-only buffer from one CUDA allocator: pinned host memory (cudaMallocHost) or device memory (cudaMalloc).
template <cudaError_t (*Allocate)(void**, std::size_t), cudaError_t (*Release)(void*)>
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() {
    if (data_ != nullptr) Release(data_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  // Make room for `bytes` (keeps the allocation when it is large enough); true when the address changed.
  bool reserve(std::size_t bytes) {
    if (bytes <= capacity_ && data_ != nullptr) return false;
    if (data_ != nullptr) Release(data_);
    data_ = nullptr;
    capacity_ = 0;
    check(Allocate(&data_, bytes == 0 ? 1 : bytes), "CUDA allocation");
    capacity_ = bytes;
    return true;
  }
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

using PinnedBuffer = Buffer<cudaMallocHost, cudaFreeHost>;
using DeviceBuffer = Buffer<cudaMalloc, cudaFree>;

// A captured and instantiated CUDA graph (cudaGraphExec_t), replayed on a stream.
class GraphExec {
 public:
  GraphExec() = default;
  ~GraphExec();
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  // Take ownership of `graph`, instantiate it; false (and nothing kept) when instantiation fails.
  bool instantiate(cudaGraph_t graph);
  void launch(cudaStream_t stream) const;
  void reset();
  bool ready() const { return exec_ != nullptr; }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace gflv2::cuda
