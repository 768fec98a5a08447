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

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  // Make room for `bytes` (keeps the allocation when it is large enough); true when the address changed.
  bool reserve(std::size_t bytes);
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  bool reserve(std::size_t bytes);
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

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
