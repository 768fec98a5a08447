// open_tensorrt: read the manifest beside the engine (its checks need no TensorRT), then load the TensorRT
// backend built for the manifest's TensorRT major version (libgflv2_tensorrt<major>.so, from the folder of
// this library, then the loader's search path) and let it deserialise the engine. The runtime library itself
// never links TensorRT, so it loads on machines without it and says clearly what is missing.
#include <dlfcn.h>

#include <array>
#include <filesystem>
#include <vector>

#include "backend.hpp"
#include "gflv2/error.hpp"
#include "manifest.hpp"
#include "tensorrt/entry.hpp"

namespace gflv2 {
namespace {

std::filesystem::path this_library_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&open_tensorrt), &info) == 0 || info.dli_fname == nullptr) return {};
  return std::filesystem::path(info.dli_fname).parent_path();
}

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
  // TensorRT itself first, loaded globally: the backend library leaves its TensorRT symbols to it
  const std::string major = std::to_string(manifest.trt_major);
  std::vector<std::string> runtime_libraries{"libnvinfer.so." + major};
  if (manifest.standard_plugins) runtime_libraries.push_back("libnvinfer_plugin.so." + major);
  for (const std::string& name : runtime_libraries) {
    if (dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* why = dlerror();
      throw Error(Status::kUnsupported, "cannot load TensorRT " + major + " (" + (why ? why : name) + "): install TensorRT " +
                                            manifest.trt_version + " and the CUDA driver to run " + engine_path);
    }
  }
  const std::string library = "libgflv2_tensorrt" + major + ".so";
  void* handle = nullptr;
  std::string errors;
  for (const std::filesystem::path& candidate : {this_library_folder() / library, std::filesystem::path(library)}) {
    if (candidate.empty()) continue;
    dlerror();
    handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* why = dlerror();
    errors += std::string(errors.empty() ? "" : "; ") + (why ? why : candidate.string());
  }
  if (handle == nullptr) {
    throw Error(Status::kUnsupported, "cannot load the TensorRT " + std::to_string(manifest.trt_major) + " backend (" +
                                          errors + "): install TensorRT " + manifest.trt_version +
                                          " (libnvinfer) and the CUDA driver to run " + engine_path);
  }
  // The handle stays open for the life of the process: backends created from it may outlive any owner here.
  auto entry = reinterpret_cast<TensorrtOpenFn>(dlsym(handle, kTensorrtOpenSymbol));
  if (entry == nullptr) {
    throw Error(Status::kInternal, library + " has no entry point " + kTensorrtOpenSymbol + ": reinstall gflv2");
  }
  std::shared_ptr<Backend> backend;
  std::array<char, 1024> message{};
  const int status = entry(engine_path.c_str(), &manifest, &options, &backend, message.data(), message.size());
  if (status != GFLV2_OK) throw Error(static_cast<Status>(status), message.data());
  return backend;
}

}  // namespace gflv2
