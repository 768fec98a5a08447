// ONNX Runtime custom op library: the CPU twin as op GFLV2NMS_TRT in domain "gflv2" (opset 1).
// Python: SessionOptions.register_custom_ops_library(path); C++: Ort::SessionOptions::RegisterCustomOpsLibrary.
// Errors never cross the C boundary as exceptions: the V2 (status-returning) custom-op entry points are used.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "gflv2_nms/nms.h"

namespace gflv2_nms {
namespace {

template <typename T>
T optional_attribute(const Ort::ConstKernelInfo& info, const char* name, T fallback) {
  try {
    return info.GetAttribute<T>(name);
  } catch (const Ort::Exception&) {
    return fallback;  // absent: the attribute's default
  }
}

int32_t int_attribute(const Ort::ConstKernelInfo& info, const char* name, int32_t fallback) {
  const int64_t v = optional_attribute<int64_t>(info, name, fallback);
  if (v < INT32_MIN || v > INT32_MAX) {
    throw std::runtime_error(std::string(kOpName) + ": attribute " + name + " is out of int32 range");
  }
  return static_cast<int32_t>(v);
}

OrtStatusPtr to_status(const char* message) {
  return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, message);
}

struct NmsKernel {
  explicit NmsKernel(const NmsAttributes& a) : attrs(a) {}

  OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept {
    try {
      Ort::KernelContext ctx(context);
      Ort::ConstValue boxes = ctx.GetInput(0);
      Ort::ConstValue scores = ctx.GetInput(1);
      const std::vector<int64_t> bd = boxes.GetTensorTypeAndShapeInfo().GetShape();
      const std::vector<int64_t> sd = scores.GetTensorTypeAndShapeInfo().GetShape();
      NmsShape shape;
      const std::string err = validate_shapes(attrs, bd.data(), static_cast<int>(bd.size()), sd.data(),
                                              static_cast<int>(sd.size()), &shape);
      if (!err.empty()) {
        return to_status((std::string(kOpName) + ": " + err).c_str());
      }
      const int64_t B = shape.batch;
      const int64_t K = attrs.max_output_boxes;
      NmsOutputs out{};
      out.num_dets = ctx.GetOutput(0, {B, 1}).GetTensorMutableData<int32_t>();
      out.det_boxes = ctx.GetOutput(1, {B, K, 4}).GetTensorMutableData<float>();
      out.det_scores = ctx.GetOutput(2, {B, K}).GetTensorMutableData<float>();
      out.det_classes = ctx.GetOutput(3, {B, K}).GetTensorMutableData<int32_t>();
      run_nms_cpu(attrs, shape, boxes.GetTensorData<float>(), scores.GetTensorData<float>(), out);
      return nullptr;
    } catch (const Ort::Exception& e) {
      return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
  }

  NmsAttributes attrs;
};

struct NmsOp : Ort::CustomOpBase<NmsOp, NmsKernel, /*WithStatus=*/true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const noexcept {
    try {
      Ort::ConstKernelInfo ki(info);
      NmsAttributes a;
      a.score_threshold = optional_attribute<float>(ki, "score_threshold", a.score_threshold);
      a.iou_threshold = optional_attribute<float>(ki, "iou_threshold", a.iou_threshold);
      a.max_output_boxes = int_attribute(ki, "max_output_boxes", a.max_output_boxes);
      a.nms_pre = int_attribute(ki, "nms_pre", a.nms_pre);
      a.num_levels = int_attribute(ki, "num_levels", a.num_levels);
      const std::string err = validate_attributes(a);
      if (!err.empty()) {
        return to_status((std::string(kOpName) + ": " + err).c_str());
      }
      *kernel = new NmsKernel(a);  // owned by ONNX Runtime, freed through KernelDestroy
      return nullptr;
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
  }

  const char* GetName() const { return kOpName; }
  size_t GetInputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetOutputType(size_t index) const {
    return (index == 0 || index == 3) ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

}  // namespace
}  // namespace gflv2_nms

extern "C" {

// Entry point looked up by ONNX Runtime's RegisterCustomOpsLibrary.
__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                 const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    return nullptr;  // cannot even create a status: the library is older than API version ORT_API_VERSION
  }
  Ort::InitApi(api);
  static gflv2_nms::NmsOp op;  // must outlive every session that uses it
  static std::mutex mutex;
  static std::vector<Ort::CustomOpDomain> domains;  // one per registration, kept alive with the library
  try {
    std::lock_guard<std::mutex> lock(mutex);
    Ort::CustomOpDomain domain(gflv2_nms::kOpDomain);
    domain.Add(&op);
    Ort::UnownedSessionOptions session_options(options);
    session_options.Add(domain);
    domains.push_back(std::move(domain));
    return nullptr;
  } catch (const Ort::Exception& e) {
    return api->CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
}

}  // extern "C"
