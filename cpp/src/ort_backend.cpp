// ONNX Runtime backend: one Ort::Session per model, shared by every context (Session::Run is thread-safe);
// the contract comes from the model metadata (ORT's ModelMetadata custom map, key gflv2_deploy.contract).
// Graphs exported with `--nms plugin` end in our gflv2::GFLV2NMS_TRT node: its ONNX Runtime implementation,
// libgflv2_nms_ort.so, is registered with every session when it is found ($GFLV2_NMS_ORT_LIBRARY, else beside
// libgflv2.so); without it such a graph is refused with a message saying where to put it.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>

// ONNX Runtime is opened at run time (ort_loader.hpp): the C++ wrapper reads its API table from Ort::InitApi.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include "backend.hpp"
#include "device.hpp"
#include "gflv2/error.hpp"
#include "ort_loader.hpp"

namespace gflv2 {
namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Opens ONNX Runtime (once) and hands its API to the C++ wrapper; every Ort:: object needs this first.
void init_ort_api() {
  static std::once_flag once;
  const OrtApi& api = onnxruntime_api();  // throws until a library is found; then cached
  std::call_once(once, [&api] { Ort::InitApi(&api); });
}

Ort::Env& ort_env() {
  init_ort_api();
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "gflv2");
  return env;
}

DType from_ort(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::kUInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return DType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::kBool;
    default: throw Error(Status::kBackend, "onnxruntime returned an output of an unsupported element type");
  }
}

constexpr const char* kNmsOpType = "GFLV2NMS_TRT";  // = plugins/gflv2_nms/include/gflv2_nms/nms.h kOpName
constexpr const char* kNmsLibraryEnv = "GFLV2_NMS_ORT_LIBRARY";
constexpr const char* kNmsLibraryName = "libgflv2_nms_ort.so";

// The custom-op library of GFLV2NMS_TRT, or "" when there is none to register.
std::string nms_op_library() {
  const char* env = std::getenv(kNmsLibraryEnv);
  if (env != nullptr && *env != '\0') {
    if (!std::filesystem::is_regular_file(env)) {
      throw Error(Status::kFileNotFound, std::string(kNmsLibraryEnv) + " is " + env + ", which is not a file: point it at " +
                                             kNmsLibraryName + " (`bash scripts/build_cpp.sh` builds build/gflv2_nms/" +
                                             kNmsLibraryName + ") or unset it");
    }
    return env;
  }
  const std::string folder = runtime_library_folder();
  const std::filesystem::path beside = std::filesystem::path(folder) / kNmsLibraryName;
  return !folder.empty() && std::filesystem::is_regular_file(beside) ? beside.string() : "";
}

class OrtBackend;

class OrtContext final : public BackendContext {
 public:
  explicit OrtContext(std::shared_ptr<const OrtBackend> backend) : backend_(std::move(backend)) {}
  void* images_buffer(std::size_t bytes) override {
    if (images_.size() < bytes) images_.resize(bytes);
    return images_.data();
  }
  std::vector<NamedTensor> infer(const std::vector<int64_t>& images_shape, const float* img_shape) override;

 private:
  std::shared_ptr<const OrtBackend> backend_;
  std::vector<uint8_t> images_;  // bytes: float32 values, or uint8 pictures (contract input_format)
  std::vector<float> img_shape_;
};

class OrtBackend final : public Backend, public std::enable_shared_from_this<OrtBackend> {
 public:
  OrtBackend(const std::string& path, const DetectorOptions& options) : path_(path) {
    if (!std::filesystem::is_regular_file(path)) throw Error(Status::kFileNotFound, "model file not found: " + path);
    ort_env();  // ONNX Runtime opened before the first Ort:: object
    Ort::SessionOptions so;
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    so.SetLogSeverityLevel(3);
    if (options.intra_op_threads < 0) {
      throw Error(Status::kInvalidArgument, "intra_op_threads must be >= 0, got " + std::to_string(options.intra_op_threads));
    }
    if (options.intra_op_threads > 0) so.SetIntraOpNumThreads(options.intra_op_threads);
    const Device device = parse_device(options.device, /*engine=*/false);
    if (device.cuda) {
      OrtCUDAProviderOptions cuda{};
      cuda.device_id = device.index;
      try {
        so.AppendExecutionProvider_CUDA(cuda);
      } catch (const Ort::Exception& exc) {
        throw Error(Status::kUnsupported, "the onnxruntime library has no usable CUDA provider (" +
                                              std::string(exc.what()) + "): use device cpu");
      }
    }
    const std::string nms_library = nms_op_library();
    if (!nms_library.empty()) {
      try {
        so.RegisterCustomOpsLibrary(nms_library.c_str());
      } catch (const Ort::Exception& exc) {
        throw Error(Status::kUnsupported, "onnxruntime cannot register the " + std::string(kNmsOpType) + " library " +
                                              nms_library + ": " + first_line(exc.what()));
      }
    }
    try {
      session_ = std::make_unique<Ort::Session>(ort_env(), path.c_str(), so);
    } catch (const Ort::Exception& exc) {
      const std::string what = first_line(exc.what());
      if (nms_library.empty() && what.find(kNmsOpType) != std::string::npos) {
        throw Error(Status::kUnsupported,
                    path + " ends in our " + kNmsOpType + " node (exported with --nms plugin), and its ONNX Runtime "
                    "library " + kNmsLibraryName + " is not beside libgflv2.so (" + runtime_library_folder() +
                    "): copy it there or set " + kNmsLibraryEnv + " to its path (`bash scripts/build_cpp.sh` builds "
                    "build/gflv2_nms/" + kNmsLibraryName + "), or export the model with --nms onnx or none");
      }
      throw Error(Status::kModel, "onnxruntime cannot load " + path + ": " + what);
    }
    Ort::AllocatorWithDefaultOptions allocator;
    Ort::ModelMetadata metadata = session_->GetModelMetadata();
    Ort::AllocatedStringPtr text = metadata.LookupCustomMetadataMapAllocated(kContractMetadataKey, allocator);
    if (!text) {
      throw Error(Status::kContract, path + " carries no gflv2-deploy graph contract (metadata '" +
                                         std::string(kContractMetadataKey) + "'); re-export it with `gflv2-deploy "
                                         "export` (a graph from another tool has no contract)");
    }
    contract_ = parse_contract(text.get(), path);
    // the session must have every tensor the contract names
    std::vector<std::string> session_inputs;
    for (std::size_t i = 0; i < session_->GetInputCount(); ++i) {
      session_inputs.push_back(session_->GetInputNameAllocated(i, allocator).get());
    }
    for (const auto& t : contract_.inputs) {
      if (std::find(session_inputs.begin(), session_inputs.end(), t.name) == session_inputs.end()) {
        throw Error(Status::kContract, path + ": the contract names input '" + t.name + "', which the graph lacks; re-export it");
      }
    }
    for (const auto& t : contract_.inputs) input_names_.push_back(t.name);
    for (const auto& t : contract_.outputs) output_names_.push_back(t.name);
  }

  const Contract& contract() const override { return contract_; }
  std::string name() const override { return "onnxruntime"; }
  std::unique_ptr<BackendContext> create_context() override {
    return std::make_unique<OrtContext>(shared_from_this());
  }

  Ort::Session& session() const { return *session_; }
  const std::vector<std::string>& input_names() const { return input_names_; }
  const std::vector<std::string>& output_names() const { return output_names_; }

 private:
  std::string path_;
  std::unique_ptr<Ort::Session> session_;
  Contract contract_;
  std::vector<std::string> input_names_;
  std::vector<std::string> output_names_;
};

std::vector<NamedTensor> OrtContext::infer(const std::vector<int64_t>& images_shape, const float* img_shape) {
  static const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const int64_t n = images_shape.at(0);
  std::vector<Ort::Value> inputs;
  std::vector<const char*> input_names;
  for (const std::string& name : backend_->input_names()) {
    input_names.push_back(name.c_str());
    if (name == "images") {
      const std::size_t count = static_cast<std::size_t>(n * images_shape[1] * images_shape[2] * images_shape[3]);
      const bool pixels = backend_->contract().preprocessing.uint8_input;
      inputs.push_back(Ort::Value::CreateTensor(cpu, images_.data(), count * (pixels ? 1 : sizeof(float)),
                                                images_shape.data(), images_shape.size(),
                                                pixels ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8
                                                       : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT));
    } else if (name == "img_shape") {
      img_shape_.assign(img_shape, img_shape + 2 * n);
      const int64_t shape[2] = {n, 2};
      inputs.push_back(Ort::Value::CreateTensor<float>(cpu, img_shape_.data(), img_shape_.size(), shape, 2));
    } else {
      throw Error(Status::kContract, "the graph has an input '" + name + "' this runtime does not know how to feed");
    }
  }
  std::vector<const char*> output_names;
  for (const std::string& name : backend_->output_names()) output_names.push_back(name.c_str());
  std::vector<Ort::Value> outputs;
  try {
    outputs = backend_->session().Run(Ort::RunOptions{nullptr}, input_names.data(), inputs.data(), inputs.size(),
                                      output_names.data(), output_names.size());
  } catch (const Ort::Exception& exc) {
    throw Error(Status::kBackend, std::string("onnxruntime failed: ") + exc.what());
  }
  std::vector<NamedTensor> result;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    auto value = std::make_shared<Ort::Value>(std::move(outputs[i]));
    auto info = value->GetTensorTypeAndShapeInfo();
    HostTensor t;
    t.dtype = from_ort(info.GetElementType());
    t.shape = info.GetShape();
    t.data = value->GetTensorData<void>();
    t.owner = value;
    result.push_back({backend_->output_names()[i], std::move(t)});
  }
  return result;
}

}  // namespace

std::shared_ptr<Backend> open_onnxruntime(const std::string& model_path, const DetectorOptions& options) {
  return std::make_shared<OrtBackend>(model_path, options);
}

}  // namespace gflv2
