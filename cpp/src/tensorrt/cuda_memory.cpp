#include "cuda_memory.hpp"

#include <string>

#include "gflv2/error.hpp"

namespace gflv2::cuda {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(Status::kBackend, std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                                      cudaGetErrorString(status) + ")");
  }
}

Stream::Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}
void Stream::synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}

bool PinnedBuffer::reserve(std::size_t bytes) {
  if (bytes <= capacity_ && data_ != nullptr) return false;
  if (data_ != nullptr) cudaFreeHost(data_);
  data_ = nullptr;
  capacity_ = 0;
  check(cudaMallocHost(&data_, bytes == 0 ? 1 : bytes), "cudaMallocHost");
  capacity_ = bytes;
  return true;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

bool DeviceBuffer::reserve(std::size_t bytes) {
  if (bytes <= capacity_ && data_ != nullptr) return false;
  if (data_ != nullptr) cudaFree(data_);
  data_ = nullptr;
  capacity_ = 0;
  check(cudaMalloc(&data_, bytes == 0 ? 1 : bytes), "cudaMalloc");
  capacity_ = bytes;
  return true;
}

GraphExec::~GraphExec() { reset(); }

bool GraphExec::instantiate(cudaGraph_t graph) {
  reset();
  const cudaError_t status = cudaGraphInstantiate(&exec_, graph, 0);
  cudaGraphDestroy(graph);
  if (status != cudaSuccess) {
    exec_ = nullptr;
    cudaGetLastError();  // clear the sticky-free error so the fallback path starts clean
    return false;
  }
  return true;
}

void GraphExec::launch(cudaStream_t stream) const { check(cudaGraphLaunch(exec_, stream), "cudaGraphLaunch"); }

void GraphExec::reset() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
  exec_ = nullptr;
}

}  // namespace gflv2::cuda
