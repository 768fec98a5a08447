// Run-time lookup of ONNX Runtime (ort_loader.hpp). Only OrtGetApiBase is resolved; everything else goes
// through the OrtApi table, which is how the C++ header works under ORT_API_MANUAL_INIT.
#include "ort_loader.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <onnxruntime_c_api.h>

#include "backend.hpp"
#include "gflv2/error.hpp"

namespace gflv2 {
namespace {

using GetApiBaseFn = const OrtApiBase* (*)();
constexpr const char* kSoname = "libonnxruntime.so.1";

// The onnxruntime wheel's library: site-packages/onnxruntime/capi/libonnxruntime.so.1.<minor>.<patch>, seen from
// site-packages/gflv2_deploy/_native/lib/ (the wheel's layout). The wheel has no libonnxruntime.so.1 link.
std::vector<std::string> wheel_candidates(const std::filesystem::path& folder) {
  std::vector<std::string> found;
  const std::filesystem::path capi = folder / ".." / ".." / ".." / "onnxruntime" / "capi";
  std::error_code ec;
  if (!std::filesystem::is_directory(capi, ec)) return found;
  for (const auto& entry : std::filesystem::directory_iterator(capi, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("libonnxruntime.so", 0) == 0 && entry.is_regular_file(ec)) found.push_back(entry.path().lexically_normal().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

const OrtApi* api_from(GetApiBaseFn get_base, const std::string& where) {
  const OrtApiBase* base = get_base != nullptr ? get_base() : nullptr;
  if (base == nullptr) throw Error(Status::kUnsupported, "ONNX Runtime at " + where + " returned no API");
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    throw Error(Status::kUnsupported, "ONNX Runtime at " + where + " is version " + base->GetVersionString() +
                                          ", which lacks C API " + std::to_string(ORT_API_VERSION) +
                                          " that libgflv2 needs: install onnxruntime >= 1.27 (or set " +
                                          kOnnxruntimeLibraryEnv + ")");
  }
  return api;
}

const OrtApi* open_file(const std::string& path, std::string* error) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    *error = why != nullptr ? why : "dlopen failed";
    return nullptr;
  }
  auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_base == nullptr) {
    *error = path + " has no OrtGetApiBase: not an ONNX Runtime library";
    return nullptr;
  }
  return api_from(get_base, path);
}

const OrtApi* load() {
  const char* env = std::getenv(kOnnxruntimeLibraryEnv);
  if (env != nullptr && *env != '\0') {
    std::string error;
    if (const OrtApi* api = open_file(env, &error)) return api;
    throw Error(Status::kUnsupported, std::string(kOnnxruntimeLibraryEnv) + " is " + env + ", which cannot be loaded: " + error);
  }
  if (auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(RTLD_DEFAULT, "OrtGetApiBase"))) {
    return api_from(get_base, "(in process)");
  }
  std::vector<std::string> candidates;
  const std::string folder = runtime_library_folder();
  if (!folder.empty()) {
    const std::filesystem::path beside = std::filesystem::path(folder) / kSoname;
    if (std::filesystem::exists(beside)) candidates.push_back(beside.string());
    for (auto& path : wheel_candidates(folder)) candidates.push_back(std::move(path));
  }
  candidates.push_back(kSoname);  // the loader's search path
  std::string tried;
  for (const auto& path : candidates) {
    std::string error;
    if (const OrtApi* api = open_file(path, &error)) return api;
    tried += "\n  " + path + ": " + error;
  }
  throw Error(Status::kUnsupported,
              std::string("ONNX Runtime not found: install it beside libgflv2.so, `pip install onnxruntime` next to "
                          "gflv2-deploy, or set ") + kOnnxruntimeLibraryEnv + " to libonnxruntime.so.1. Tried:" + tried);
}

std::mutex g_mutex;
const OrtApi* g_api = nullptr;

}  // namespace

const OrtApi& onnxruntime_api() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_api == nullptr) g_api = load();  // a failure is retried on the next call (the user may fix it)
  return *g_api;
}

}  // namespace gflv2
