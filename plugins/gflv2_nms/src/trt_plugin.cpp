// TensorRT IPluginV3 GFLV2NMS_TRT (version "1", namespace ""): the CUDA kernels behind TensorRT's plugin API.
// Compiled twice, against the TensorRT 10.16 and 11.1 headers (GFLV2_TRT_MAJOR), linked with TensorRT's symbols
// unresolved. Loading:
//   --dynamicPlugins / IPluginRegistry::loadLibrary: getCreators() + setLoggerFinder() below;
//   --staticPlugins (dlopen + static initialiser): build with -DGFLV2_NMS_STATIC_REGISTRATION=ON;
//   engines carry it with setPluginsToSerialize / --setPluginsToSerialize.
// Outputs have fixed shapes: B from the input, K from max_output_boxes. Every TensorRT entry point is noexcept:
// exceptions stop here and become an error return plus a log line.
// Workspace: configurePlugin (build time) sizes it for the profile's largest shapes and stores the size; a failed
// size query (the statically linked CUDA runtime on a driver too old for it) fails the build there, naming the
// driver requirement. The size is serialised with the plugin (field workspace_bytes), and enqueue refuses a shape
// whose workspace would exceed it instead of overrunning the buffer TensorRT allocated.
#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gflv2_nms/nms.h"
#include "nms_kernels.h"

using namespace nvinfer1;

namespace gflv2_nms {
namespace {

ILoggerFinder* g_logger_finder = nullptr;
std::mutex g_logger_mutex;

void log_error(const std::string& message) noexcept {
  try {
    std::lock_guard<std::mutex> lock(g_logger_mutex);
    ILogger* logger = g_logger_finder != nullptr ? g_logger_finder->findLogger() : nullptr;
    if (logger != nullptr) {
      logger->log(ILogger::Severity::kERROR, (std::string(kOpName) + ": " + message).c_str());
    }
  } catch (...) {
    // logging must never throw through TensorRT
  }
}

constexpr int32_t kNbInputs = 2;
constexpr int32_t kNbOutputs = 4;
constexpr int64_t kWorkspaceUnknown = -1;  // not configured here, and not in the serialised fields
constexpr char kWorkspaceField[] = "workspace_bytes";

std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// Why the CUDA size query failed, with what the plugin needs from the driver.
std::string workspace_query_failure(cudaError_t err) {
  int driver = 0;
  cudaDriverGetVersion(&driver);
  return std::string("the CUDA workspace size query failed (") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) +
         "): this plugin links the CUDA " + cuda_version_text(CUDART_VERSION) +
         " runtime statically and needs an NVIDIA driver for CUDA " + std::to_string(CUDART_VERSION / 1000) +
         " or newer (this driver: " + (driver > 0 ? "CUDA " + cuda_version_text(driver) : std::string("none found")) + ")";
}

class NmsPlugin final : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
 public:
  NmsPlugin(const NmsAttributes& attrs, int64_t workspace_bytes) : attrs_(attrs), workspace_bytes_(workspace_bytes) {
    build_fields();
  }
  NmsPlugin(const NmsPlugin& other) : attrs_(other.attrs_), workspace_bytes_(other.workspace_bytes_) { build_fields(); }
  NmsPlugin& operator=(const NmsPlugin&) = delete;
  ~NmsPlugin() override = default;

  // IPluginV3
  IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
    switch (type) {
      case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
      case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
      case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }
  IPluginV3* clone() noexcept override {
    try {
      return std::make_unique<NmsPlugin>(*this).release();  // TensorRT owns the clone
    } catch (const std::exception& e) {
      log_error(std::string("clone: ") + e.what());
      return nullptr;
    }
  }

  // IPluginV3OneCore
  AsciiChar const* getPluginName() const noexcept override { return kOpName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild
  int32_t getNbOutputs() const noexcept override { return kNbOutputs; }

  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (nbOutputs != kNbOutputs || nbInputs != kNbInputs || inputTypes[0] != DataType::kFLOAT ||
        inputTypes[1] != DataType::kFLOAT) {
      log_error("inputs must be boxes and scores, both float32");
      return -1;
    }
    outputTypes[0] = DataType::kINT32;
    outputTypes[1] = DataType::kFLOAT;
    outputTypes[2] = DataType::kFLOAT;
    outputTypes[3] = DataType::kINT32;
    return 0;
  }

  int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                          int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                          IExprBuilder& exprBuilder) noexcept override {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inputs[0].nbDims != 3 || inputs[1].nbDims != 3) {
      log_error("expects boxes [B, A, 4] and scores [B, A, C]");
      return -1;
    }
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* k = exprBuilder.constant(attrs_.max_output_boxes);
    outputs[0].nbDims = 2;
    outputs[0].d[0] = batch;
    outputs[0].d[1] = exprBuilder.constant(1);
    outputs[1].nbDims = 3;
    outputs[1].d[0] = batch;
    outputs[1].d[1] = k;
    outputs[1].d[2] = exprBuilder.constant(4);
    outputs[2].nbDims = 2;
    outputs[2].d[0] = batch;
    outputs[2].d[1] = k;
    outputs[3].nbDims = 2;
    outputs[3].d[0] = batch;
    outputs[3].d[1] = k;
    return 0;
  }

  bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0 || pos >= kNbInputs + kNbOutputs) {
      return false;
    }
    const PluginTensorDesc& d = inOut[pos].desc;
    const bool is_int = pos == kNbInputs || pos == kNbInputs + 3;  // num_dets, det_classes
    return d.format == TensorFormat::kLINEAR && d.type == (is_int ? DataType::kINT32 : DataType::kFLOAT);
  }

  int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/,
                          int32_t nbOutputs) noexcept override {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs) {
      return -1;
    }
    if (!check_dims(in[0].desc.dims, in[1].desc.dims, /*allow_dynamic=*/true) ||
        !check_dims(in[0].max, in[1].max, /*allow_dynamic=*/false)) {
      return -1;
    }
    // The workspace of the profile's largest shapes, sized once here: a failure fails the build, not the first run.
    const NmsShape largest{in[0].max.d[0], in[0].max.d[1], in[1].max.d[2]};
    size_t bytes = 0;
    const cudaError_t err = cuda_workspace_size(largest, &bytes);
    if (err != cudaSuccess) {
      log_error(workspace_query_failure(err));
      workspace_bytes_ = kWorkspaceUnknown;
      return -1;
    }
    workspace_bytes_ = static_cast<int64_t>(bytes);
    return 0;
  }

  size_t getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
                          DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override {
    return workspace_bytes_ > 0 ? static_cast<size_t>(workspace_bytes_) : 0;  // stored by configurePlugin
  }

  // IPluginV3OneRuntime
  int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/,
                        int32_t nbOutputs) noexcept override {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs) {
      return -1;
    }
    return check_dims(in[0].dims, in[1].dims, /*allow_dynamic=*/false) ? 0 : -1;
  }

  int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/, void const* const* inputs,
                  void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
    NmsShape shape{inputDesc[0].dims.d[0], inputDesc[0].dims.d[1], inputDesc[1].dims.d[2]};
    size_t needed = 0;
    cudaError_t err = cuda_workspace_size(shape, &needed);
    if (err != cudaSuccess) {
      log_error("enqueue: " + workspace_query_failure(err));
      return -1;
    }
    size_t available = needed;  // what TensorRT allocated: the size stored at configure time
    if (workspace_bytes_ == kWorkspaceUnknown) {
      warn_unknown_workspace();
    } else {
      available = static_cast<size_t>(workspace_bytes_);
      if (needed > available) {
        log_error("enqueue: boxes [" + std::to_string(shape.batch) + ", " + std::to_string(shape.anchors) + ", 4] need " +
                  std::to_string(needed) + " workspace bytes, the engine reserved " + std::to_string(available) +
                  " for its optimisation profile: the input is larger than the profile it was built for");
        return -1;
      }
    }
    const NmsOutputs out{static_cast<int32_t*>(outputs[0]), static_cast<float*>(outputs[1]),
                         static_cast<float*>(outputs[2]), static_cast<int32_t*>(outputs[3])};
    err = launch_nms_cuda(attrs_, shape, static_cast<const float*>(inputs[0]), static_cast<const float*>(inputs[1]), out,
                          workspace, available, stream);
    if (err != cudaSuccess) {
      log_error(std::string("enqueue: ") + cudaGetErrorString(err));
      return -1;
    }
    return 0;
  }

  IPluginV3* attachToContext(IPluginResourceContext* /*context*/) noexcept override { return clone(); }

  PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &field_collection_; }

 private:
  // allow_dynamic: build-time dims where -1 marks a dynamic dimension; every static one is still checked (the
  // rest again with the real shapes in onShapeChange).
  bool check_dims(const Dims& boxes, const Dims& scores, bool allow_dynamic) const noexcept {
    try {
      if (boxes.nbDims != 3 || scores.nbDims != 3) {
        log_error("boxes must be [B, A, 4] and scores [B, A, C]");
        return false;
      }
      int64_t bd[3];
      int64_t sd[3];
      for (int i = 0; i < 3; ++i) {
        bd[i] = boxes.d[i];
        sd[i] = scores.d[i];
      }
      const std::string err = allow_dynamic ? validate_static_shapes(attrs_, bd, 3, sd, 3)
                                            : validate_shapes(attrs_, bd, 3, sd, 3, nullptr);
      if (!err.empty()) {
        log_error(err);
        return false;
      }
      return true;
    } catch (...) {
      return false;
    }
  }

  // An engine serialised without the size (not configured: should not happen) runs without the check, once said.
  void warn_unknown_workspace() noexcept {
    if (!warned_unknown_workspace_) {
      warned_unknown_workspace_ = true;
      log_error("enqueue: the engine carries no workspace size for this plugin (field workspace_bytes): the workspace "
                "cannot be checked; rebuild the engine with this plugin library");
    }
  }

  void build_fields() {
    fields_ = {
        PluginField("score_threshold", &attrs_.score_threshold, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_threshold", &attrs_.iou_threshold, PluginFieldType::kFLOAT32, 1),
        PluginField("max_output_boxes", &attrs_.max_output_boxes, PluginFieldType::kINT32, 1),
        PluginField("nms_pre", &attrs_.nms_pre, PluginFieldType::kINT32, 1),
        PluginField("num_levels", &attrs_.num_levels, PluginFieldType::kINT32, 1),
        PluginField(kWorkspaceField, &workspace_bytes_, PluginFieldType::kINT64, 1),
    };
    field_collection_.nbFields = static_cast<int32_t>(fields_.size());
    field_collection_.fields = fields_.data();
  }

  NmsAttributes attrs_;
  int64_t workspace_bytes_ = kWorkspaceUnknown;  // bytes for the profile's largest shapes (configurePlugin)
  bool warned_unknown_workspace_ = false;
  std::vector<PluginField> fields_;
  PluginFieldCollection field_collection_{};
};

// Reads one scalar field of type float32/float64 or int32/int64 (the ONNX parser passes int attributes as int32).
bool read_float(const PluginField& f, float* out) {
  if (f.length != 1 || f.data == nullptr) {
    return false;
  }
  if (f.type == PluginFieldType::kFLOAT32) {
    *out = *static_cast<const float*>(f.data);
  } else if (f.type == PluginFieldType::kFLOAT64) {
    *out = static_cast<float>(*static_cast<const double*>(f.data));
  } else {
    return false;
  }
  return true;
}

bool read_int(const PluginField& f, int32_t* out) {
  if (f.length != 1 || f.data == nullptr) {
    return false;
  }
  if (f.type == PluginFieldType::kINT32) {
    *out = *static_cast<const int32_t*>(f.data);
  } else if (f.type == PluginFieldType::kINT64) {
    const int64_t v = *static_cast<const int64_t*>(f.data);
    if (v < INT32_MIN || v > INT32_MAX) {
      return false;
    }
    *out = static_cast<int32_t>(v);
  } else {
    return false;
  }
  return true;
}

class NmsPluginCreator final : public IPluginCreatorV3One {
 public:
  NmsPluginCreator() {
    fields_ = {
        PluginField("score_threshold", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_threshold", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("max_output_boxes", nullptr, PluginFieldType::kINT32, 1),
        PluginField("nms_pre", nullptr, PluginFieldType::kINT32, 1),
        PluginField("num_levels", nullptr, PluginFieldType::kINT32, 1),
    };
    collection_.nbFields = static_cast<int32_t>(fields_.size());
    collection_.fields = fields_.data();
  }

  IPluginV3* createPlugin(AsciiChar const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept override {
    try {
      NmsAttributes attrs;
      int64_t workspace_bytes = kWorkspaceUnknown;
      for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
        const PluginField& f = fc->fields[i];
        const std::string name = f.name != nullptr ? f.name : "";
        bool ok = true;
        if (name == "score_threshold") {
          ok = read_float(f, &attrs.score_threshold);
        } else if (name == "iou_threshold") {
          ok = read_float(f, &attrs.iou_threshold);
        } else if (name == "max_output_boxes") {
          ok = read_int(f, &attrs.max_output_boxes);
        } else if (name == "nms_pre") {
          ok = read_int(f, &attrs.nms_pre);
        } else if (name == "num_levels") {
          ok = read_int(f, &attrs.num_levels);
        } else if (name == kWorkspaceField && phase == TensorRTPhase::kRUNTIME) {  // serialised by getFieldsToSerialize
          ok = f.type == PluginFieldType::kINT64 && f.length == 1 && f.data != nullptr &&
               *static_cast<const int64_t*>(f.data) >= 0;
          workspace_bytes = ok ? *static_cast<const int64_t*>(f.data) : kWorkspaceUnknown;
        }  // other node attributes (plugin_version, plugin_namespace) are not ours
        if (!ok) {
          log_error("attribute " + name + " has an unexpected type or length");
          return nullptr;
        }
      }
      const std::string err = validate_attributes(attrs);
      if (!err.empty()) {
        log_error(err);
        return nullptr;
      }
      return std::make_unique<NmsPlugin>(attrs, workspace_bytes).release();  // TensorRT owns the plugin
    } catch (const std::exception& e) {
      log_error(std::string("createPlugin: ") + e.what());
      return nullptr;
    }
  }

  PluginFieldCollection const* getFieldNames() noexcept override { return &collection_; }
  AsciiChar const* getPluginName() const noexcept override { return kOpName; }
  AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
  AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

 private:
  std::vector<PluginField> fields_;
  PluginFieldCollection collection_{};
};

NmsPluginCreator& creator_instance() {
  static NmsPluginCreator creator;
  return creator;
}

}  // namespace
}  // namespace gflv2_nms

#if defined(GFLV2_NMS_STATIC_REGISTRATION)
namespace {
using Gflv2NmsCreator = gflv2_nms::NmsPluginCreator;
REGISTER_TENSORRT_PLUGIN(Gflv2NmsCreator);  // --staticPlugins: registers on dlopen (needs libnvinfer loaded)
}  // namespace
#endif

extern "C" {

// Plugin-library entry points (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins).
__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  std::lock_guard<std::mutex> lock(gflv2_nms::g_logger_mutex);
  gflv2_nms::g_logger_finder = finder;
}

__attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&gflv2_nms::creator_instance()};
  nbCreators = 1;
  return creators;
}

}  // extern "C"
