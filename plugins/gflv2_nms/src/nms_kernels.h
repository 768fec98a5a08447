// The CUDA implementation behind the C API and the TensorRT plugin (host-side declarations).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "gflv2_nms/nms.h"

namespace gflv2_nms {

// Workspace bytes for `shape` (B x A x C), cudaSuccess or the error of the CUB size query.
cudaError_t cuda_workspace_size(const NmsShape& shape, size_t* bytes);

// Runs the contract on device memory, asynchronously on `stream`. Attributes and shape must be valid and
// `workspace` at least cuda_workspace_size(shape) bytes (256-byte aligned).
cudaError_t launch_nms_cuda(const NmsAttributes& attrs, const NmsShape& shape, const float* boxes,
                            const float* scores, const NmsOutputs& out, void* workspace, size_t workspace_bytes,
                            cudaStream_t stream);

}  // namespace gflv2_nms
