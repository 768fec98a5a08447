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
