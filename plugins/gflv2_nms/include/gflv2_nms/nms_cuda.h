// C entry points of the CUDA kernels (libgflv2_nms_cuda.so): for ctypes tests and benchmarks on a GPU.
// Same contract as the CPU twin (gflv2_nms/nms.h). Every function returns 0 on success, else a non-zero code
// with a one-line message from gflv2_nms_last_error() (per thread). Nothing throws across this boundary.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#define GFLV2_NMS_API extern "C" __attribute__((visibility("default")))

// Device workspace bytes for inputs of B x A x C (the maximum a later run may use).
GFLV2_NMS_API int gflv2_nms_cuda_workspace_size(int64_t batch, int64_t anchors, int64_t classes, size_t* bytes);

// Device pointers; asynchronous on `stream` (0: the legacy default stream).
GFLV2_NMS_API int gflv2_nms_cuda_run(float score_threshold, float iou_threshold, int32_t max_output_boxes,
                                     int32_t nms_pre, int32_t num_levels, const float* boxes, const float* scores,
                                     int64_t batch, int64_t anchors, int64_t classes, int32_t* num_dets,
                                     float* det_boxes, float* det_scores, int32_t* det_classes, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream);

// Host pointers: copies in, runs `repeats` times (>= 1), copies the last result out, synchronises. When
// milliseconds is not null it receives the mean GPU time of one run (CUDA events, copies excluded).
GFLV2_NMS_API int gflv2_nms_cuda_run_host(float score_threshold, float iou_threshold, int32_t max_output_boxes,
                                          int32_t nms_pre, int32_t num_levels, const float* boxes,
                                          const float* scores, int64_t batch, int64_t anchors, int64_t classes,
                                          int32_t* num_dets, float* det_boxes, float* det_scores,
                                          int32_t* det_classes, int32_t repeats, float* milliseconds);

// The message of the calling thread's last failure ("" if none).
GFLV2_NMS_API const char* gflv2_nms_last_error(void);
