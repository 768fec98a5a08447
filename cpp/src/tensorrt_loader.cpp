// open_tensorrt: read the manifest beside the engine (its checks need no TensorRT), verify the plugin libraries
// it names (size + SHA-256), then load the TensorRT backend built for the manifest's TensorRT major version
// (libgflv2_tensorrt<major>.so, from the folder of this library, then the loader's search path) and let it
// deserialise the engine. The runtime library itself never links TensorRT, so it loads on machines without
// it and says clearly what is missing. The backend is used through the noexcept interfaces of
// tensorrt/entry.hpp; a failed call becomes gflv2::Error here, on this side of the dlopen boundary.
#include <dlfcn.h>

#include <array>
#include <filesystem>
#include <vector>

#include "backend.hpp"
#include "device.hpp"
#include "gflv2/error.hpp"
#include "manifest.hpp"
#include "tensorrt/entry.hpp"

namespace gflv2 {
namespace {

[[noreturn]] void rethrow(const BoundaryError& error) {
  const int status = error.status >= GFLV2_E_INVALID_ARGUMENT && error.status <= GFLV2_E_INTERNAL ? error.status : GFLV2_E_INTERNAL;
  throw Error(static_cast<Status>(status), error.message.empty() ? "TensorRT backend failed without a message" : error.message);
}

class LoadedContext final : public BackendContext {
 public:
  explicit LoadedContext(std::unique_ptr<TrtContextApi> context) : context_(std::move(context)) {}
  void* images_buffer(std::size_t bytes) override {
    BoundaryError error;
    void* buffer = context_->images_buffer(bytes, &error);
    if (buffer == nullptr) rethrow(error);
    return buffer;
  }
  std::vector<NamedTensor> infer(const std::vector<int64_t>& images_shape, const float* img_shape) override {
    BoundaryError error;
    std::vector<NamedTensor> outputs;
    if (!context_->infer(images_shape, img_shape, &outputs, &error)) rethrow(error);
    return outputs;
  }

 private:
  std::unique_ptr<TrtContextApi> context_;
};

class LoadedBackend final : public Backend {
 public:
  LoadedBackend(std::shared_ptr<TrtBackendApi> backend, int major) : backend_(std::move(backend)), major_(major) {}
  const Contract& contract() const override { return backend_->contract(); }
  std::string name() const override { return "tensorrt" + std::to_string(major_); }
  std::unique_ptr<BackendContext> create_context() override {
    BoundaryError error;
    std::unique_ptr<TrtContextApi> context = backend_->create_context(&error);
    if (!context) rethrow(error);
    return std::make_unique<LoadedContext>(std::move(context));
  }

 private:
  std::shared_ptr<TrtBackendApi> backend_;
  int major_;
};

}  // namespace

std::shared_ptr<Backend> open_tensorrt(const std::string& engine_path, const DetectorOptions& options) {
  EngineManifest manifest = read_manifest(engine_path);
  if (manifest.flavour != "tensorrt") {
    throw Error(Status::kEngineMismatch, engine_path + " was built with " + manifest.flavour +
                                             ", which this runtime does not run (it runs TensorRT 10 and 11 engines)");
  }
  if (manifest.trt_major != 10 && manifest.trt_major != 11) {
    throw Error(Status::kEngineMismatch, engine_path + " was built with TensorRT " + manifest.trt_version +
                                             "; this runtime has backends for TensorRT 10 and 11: rebuild the engine with one of them");
  }
  parse_device(options.device, /*engine=*/true);  // refuses "cpu" and malformed devices before any loading
  verify_plugin_libraries(manifest);  // before anything loads them
  // TensorRT itself first, loaded globally: the backend library leaves its TensorRT symbols to it. The standard
  // plugin library (libnvinfer_plugin) is the backend's business: it opens it only for an engine that needs it.
  const std::string major = std::to_string(manifest.trt_major);
  const std::string nvinfer = "libnvinfer.so." + major;
  dlerror();
  if (dlopen(nvinfer.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = dlerror();
    throw Error(Status::kUnsupported, "cannot load TensorRT " + major + " (" + (why ? why : nvinfer) + "): install TensorRT " +
                                          manifest.trt_version + " and the CUDA driver to run " + engine_path);
  }
  const std::string library = "libgflv2_tensorrt" + major + ".so";
  void* handle = nullptr;
  std::string errors;
  const std::filesystem::path folder = runtime_library_folder();
  for (const std::filesystem::path& candidate : {folder.empty() ? folder : folder / library, std::filesystem::path(library)}) {
    if (candidate.empty()) continue;
    dlerror();
    handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* why = dlerror();
    errors += std::string(errors.empty() ? "" : "; ") + (why ? why : candidate.string());
  }
  if (handle == nullptr) {
    throw Error(Status::kUnsupported, "cannot load the TensorRT " + major + " backend (" + errors + "): install TensorRT " +
                                          manifest.trt_version + " (libnvinfer) and the CUDA driver to run " + engine_path);
  }
  // The handle stays open for the life of the process: backends created from it may outlive any owner here.
  auto entry = reinterpret_cast<TensorrtOpenFn>(dlsym(handle, kTensorrtOpenSymbol));
  if (entry == nullptr) {
    throw Error(Status::kInternal, library + " has no entry point " + kTensorrtOpenSymbol + " (another gflv2 version): reinstall gflv2");
  }
  std::shared_ptr<TrtBackendApi> backend;
  std::array<char, 2048> message{};
  const int status = entry(engine_path.c_str(), &manifest, &options, &backend, message.data(), message.size());
  if (status != GFLV2_OK) rethrow({status, message.data()});
  if (!backend) throw Error(Status::kInternal, library + " returned no backend");
  return std::make_shared<LoadedBackend>(std::move(backend), manifest.trt_major);
}

}  // namespace gflv2
