// C entry points of the CUDA kernels (gflv2_nms/nms_cuda.h): validation, RAII device buffers, last-error text.
#include "gflv2_nms/nms_cuda.h"

#include <cuda_runtime_api.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "gflv2_nms/nms.h"
#include "nms_kernels.h"

namespace gflv2_nms {
namespace {

thread_local std::string g_last_error;

int fail(const std::string& message) {
  g_last_error = message;
  return 1;
}

int cuda_fail(const char* what, cudaError_t err) {
  return fail(std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

struct DeviceDeleter {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceDeleter>;

cudaError_t device_alloc(size_t bytes, DeviceBuffer* out) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  out->reset(p);
  return err;
}

struct StreamDeleter {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;

struct EventDeleter {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};
using Event = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter>;

struct Call {
  NmsAttributes attrs;
  NmsShape shape;
};

// Attributes and shape of a call, checked; empty (and the last error set) when unusable.
std::optional<Call> prepare(float score_threshold, float iou_threshold, int32_t K, int32_t nms_pre, int32_t num_levels,
                            int64_t B, int64_t A, int64_t C) {
  Call call;
  call.attrs.score_threshold = score_threshold;
  call.attrs.iou_threshold = iou_threshold;
  call.attrs.max_output_boxes = K;
  call.attrs.nms_pre = nms_pre;
  call.attrs.num_levels = num_levels;
  std::string err = validate_attributes(call.attrs);
  if (err.empty() && (B < 0 || A < 0)) {
    err = "batch and anchors must be >= 0";
  }
  if (err.empty()) {
    const int64_t bd[3] = {B, A, 4};
    const int64_t sd[3] = {B, A, C};
    err = validate_shapes(call.attrs, bd, 3, sd, 3, &call.shape);
  }
  if (!err.empty()) {
    fail(err);
    return std::nullopt;
  }
  return call;
}

}  // namespace
}  // namespace gflv2_nms

using namespace gflv2_nms;

int gflv2_nms_cuda_workspace_size(int64_t batch, int64_t anchors, int64_t classes, size_t* bytes) {
  try {
    NmsShape shape{batch, anchors, classes};
    const cudaError_t err = cuda_workspace_size(shape, bytes);
    return err == cudaSuccess ? 0 : cuda_fail("workspace size", err);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int gflv2_nms_cuda_run(float score_threshold, float iou_threshold, int32_t max_output_boxes, int32_t nms_pre,
                       int32_t num_levels, const float* boxes, const float* scores, int64_t batch, int64_t anchors,
                       int64_t classes, int32_t* num_dets, float* det_boxes, float* det_scores, int32_t* det_classes,
                       void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  try {
    const std::optional<Call> call =
        prepare(score_threshold, iou_threshold, max_output_boxes, nms_pre, num_levels, batch, anchors, classes);
    if (!call) {
      return 1;
    }
    const NmsAttributes& attrs = call->attrs;
    const NmsShape& shape = call->shape;
    const cudaError_t cerr = launch_nms_cuda(attrs, shape, boxes, scores,
                                             NmsOutputs{num_dets, det_boxes, det_scores, det_classes}, workspace,
                                             workspace_bytes, stream);
    return cerr == cudaSuccess ? 0 : cuda_fail("launch", cerr);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

int gflv2_nms_cuda_run_host(float score_threshold, float iou_threshold, int32_t max_output_boxes, int32_t nms_pre,
                            int32_t num_levels, const float* boxes, const float* scores, int64_t batch,
                            int64_t anchors, int64_t classes, int32_t* num_dets, float* det_boxes, float* det_scores,
                            int32_t* det_classes, int32_t repeats, float* milliseconds) {
  try {
    const std::optional<Call> call =
        prepare(score_threshold, iou_threshold, max_output_boxes, nms_pre, num_levels, batch, anchors, classes);
    if (!call) {
      return 1;
    }
    const NmsAttributes& attrs = call->attrs;
    const NmsShape& shape = call->shape;
    if (repeats < 1) {
      return fail("repeats must be >= 1");
    }
    const int64_t K = max_output_boxes;
    const size_t box_bytes = sizeof(float) * static_cast<size_t>(batch * anchors * 4);
    const size_t score_bytes = sizeof(float) * static_cast<size_t>(batch * anchors * classes);
    size_t ws_bytes = 0;
    cudaError_t cerr = cuda_workspace_size(shape, &ws_bytes);
    if (cerr != cudaSuccess) {
      return cuda_fail("workspace size", cerr);
    }
    DeviceBuffer d_boxes, d_scores, d_num, d_dboxes, d_dscores, d_dclasses, d_ws;
    const size_t sizes[7] = {box_bytes,
                             score_bytes,
                             sizeof(int32_t) * static_cast<size_t>(batch),
                             sizeof(float) * static_cast<size_t>(batch * K * 4),
                             sizeof(float) * static_cast<size_t>(batch * K),
                             sizeof(int32_t) * static_cast<size_t>(batch * K),
                             ws_bytes};
    DeviceBuffer* bufs[7] = {&d_boxes, &d_scores, &d_num, &d_dboxes, &d_dscores, &d_dclasses, &d_ws};
    for (int i = 0; i < 7; ++i) {
      if ((cerr = device_alloc(sizes[i], bufs[i])) != cudaSuccess) {
        return cuda_fail("cudaMalloc", cerr);
      }
    }
    cudaStream_t raw_stream = nullptr;
    if ((cerr = cudaStreamCreateWithFlags(&raw_stream, cudaStreamNonBlocking)) != cudaSuccess) {
      return cuda_fail("cudaStreamCreate", cerr);
    }
    Stream stream(raw_stream);
    cudaEvent_t raw_start = nullptr;
    cudaEvent_t raw_stop = nullptr;
    if ((cerr = cudaEventCreate(&raw_start)) != cudaSuccess) {
      return cuda_fail("cudaEventCreate", cerr);
    }
    Event start(raw_start);
    if ((cerr = cudaEventCreate(&raw_stop)) != cudaSuccess) {
      return cuda_fail("cudaEventCreate", cerr);
    }
    Event stop(raw_stop);
    if ((cerr = cudaMemcpyAsync(d_boxes.get(), boxes, box_bytes, cudaMemcpyHostToDevice, stream.get())) != cudaSuccess ||
        (cerr = cudaMemcpyAsync(d_scores.get(), scores, score_bytes, cudaMemcpyHostToDevice, stream.get())) != cudaSuccess) {
      return cuda_fail("copy in", cerr);
    }
    const NmsOutputs out{static_cast<int32_t*>(d_num.get()), static_cast<float*>(d_dboxes.get()),
                         static_cast<float*>(d_dscores.get()), static_cast<int32_t*>(d_dclasses.get())};
    cudaEventRecord(start.get(), stream.get());
    for (int32_t r = 0; r < repeats; ++r) {
      cerr = launch_nms_cuda(attrs, shape, static_cast<const float*>(d_boxes.get()),
                             static_cast<const float*>(d_scores.get()), out, d_ws.get(), ws_bytes, stream.get());
      if (cerr != cudaSuccess) {
        return cuda_fail("launch", cerr);
      }
    }
    cudaEventRecord(stop.get(), stream.get());
    if ((cerr = cudaMemcpyAsync(num_dets, out.num_dets, sizes[2], cudaMemcpyDeviceToHost, stream.get())) != cudaSuccess ||
        (cerr = cudaMemcpyAsync(det_boxes, out.det_boxes, sizes[3], cudaMemcpyDeviceToHost, stream.get())) != cudaSuccess ||
        (cerr = cudaMemcpyAsync(det_scores, out.det_scores, sizes[4], cudaMemcpyDeviceToHost, stream.get())) != cudaSuccess ||
        (cerr = cudaMemcpyAsync(det_classes, out.det_classes, sizes[5], cudaMemcpyDeviceToHost, stream.get())) != cudaSuccess) {
      return cuda_fail("copy out", cerr);
    }
    if ((cerr = cudaStreamSynchronize(stream.get())) != cudaSuccess) {
      return cuda_fail("run", cerr);
    }
    if (milliseconds != nullptr) {
      float total = 0.0F;
      cudaEventElapsedTime(&total, start.get(), stop.get());
      *milliseconds = total / static_cast<float>(repeats);
    }
    g_last_error.clear();
    return 0;
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}

const char* gflv2_nms_last_error(void) { return g_last_error.c_str(); }
