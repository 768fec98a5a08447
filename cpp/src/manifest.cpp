#include "manifest.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "gflv2/error.hpp"
#include "sha256.hpp"

namespace gflv2 {
namespace {

using nlohmann::json;

std::string rebuild_hint(const EngineManifest& m) {
  const std::string onnx = m.onnx_file.empty() ? "<model.onnx>" : m.onnx_file;
  return "rebuild the engine on this machine from " + onnx + " (`gflv2-deploy build " + onnx +
         " --precision " + (m.precision.empty() ? "fp32" : m.precision) + "`)";
}

std::string string_or(const json& object, const char* key, const std::string& fallback = "") {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return (it != object.end() && it->is_string()) ? it->get<std::string>() : fallback;
}

// "10.16.0.72" and "10.16.0" are the same release: plans are tied to major.minor.patch
std::string release(const std::string& version) {
  std::size_t pos = 0;
  for (int dot = 0; dot < 3; ++dot) {
    pos = version.find('.', dot == 0 ? 0 : pos + 1);
    if (pos == std::string::npos) return version;
  }
  return version.substr(0, pos);
}

bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// One plugin_libraries entry as gflv2_deploy/engine/manifest.py writes it: {"path", "sha256", "bytes"}.
PluginLibrary plugin_library(const json& entry, const std::filesystem::path& folder, const std::string& source) {
  const std::string bad = source + ": malformed engine manifest (plugin_libraries entries must be {\"path\", \"sha256\", "
                                   "\"bytes\"} as `gflv2-deploy build` writes them): rebuild the engine with `gflv2-deploy build`";
  if (!entry.is_object()) throw Error(Status::kModel, bad);
  const std::string path = string_or(entry, "path");
  const std::string sha = string_or(entry, "sha256");
  const auto bytes = entry.find("bytes");
  if (path.empty() || !is_sha256_hex(sha) || bytes == entry.end() || !bytes->is_number_unsigned()) {
    throw Error(Status::kModel, bad);
  }
  const std::filesystem::path p(path);
  return {(p.is_absolute() ? p : folder / p).string(), sha, bytes->get<uint64_t>()};
}

// "13.0" -> 13; 0 when the text does not start with a number
int major_of(const std::string& version) { return std::atoi(version.c_str()); }

std::string cuda_text(int version) { return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10); }

}  // namespace

EngineManifest parse_manifest(const std::string& json_text, const std::string& source) {
  const std::string rebuild = ": rebuild the engine with `gflv2-deploy build`";
  json data = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (data.is_discarded() || !data.is_object()) {
    throw Error(Status::kModel, source + " is not a readable engine manifest (not a JSON object)" + rebuild);
  }
  if (string_or(data, "format") != kManifestFormat) {
    throw Error(Status::kModel, source + " is not a gflv2-deploy engine manifest" + rebuild);
  }
  if (!data.contains("format_version") || data["format_version"] != kManifestVersion) {
    throw Error(Status::kModel, source + " has manifest format " + (data.contains("format_version") ? data["format_version"].dump() : "null") +
                                    ", this gflv2 runtime reads " + std::to_string(kManifestVersion) + rebuild);
  }
  EngineManifest m;
  m.path = source;
  try {
    const json& runtime = data.at("runtime");
    m.flavour = string_or(runtime, "flavour");
    m.trt_version = string_or(runtime, "version");
    m.trt_major = runtime.contains("major") && runtime["major"].is_number_integer() ? runtime["major"].get<int>() : 0;
    const json& target = data.at("target");
    m.target_kind = string_or(target, "kind");
    m.gpu_name = string_or(target, "gpu_name");
    m.compute_capability = string_or(target, "compute_capability");
    if (target.contains("compute_capabilities") && target["compute_capabilities"].is_array()) {
      for (const json& cc : target["compute_capabilities"]) {
        if (cc.is_string()) m.compute_capabilities.push_back(cc.get<std::string>());
      }
    }
    m.precision = string_or(data, "precision", "fp32");
    if (data.contains("onnx")) m.onnx_file = string_or(data["onnx"], "file");
    if (data.contains("build") && data["build"].is_object() && data["build"].contains("plugins_initialised")) {
      m.standard_plugins = data["build"]["plugins_initialised"].get<bool>();
    }
    const auto folder = std::filesystem::path(source).parent_path();
    if (data.contains("plugin_libraries") && !data["plugin_libraries"].is_null()) {
      const json& libraries = data["plugin_libraries"];
      if (!libraries.is_array()) throw Error(Status::kModel, source + ": malformed engine manifest (plugin_libraries is not a list)" + rebuild);
      for (const json& lib : libraries) m.plugin_libraries.push_back(plugin_library(lib, folder, source));
    }
    if (data.contains("cuda") && data["cuda"].is_object()) m.cuda_runtime = string_or(data["cuda"], "runtime_version");
  } catch (const json::exception& exc) {
    throw Error(Status::kModel, source + ": malformed engine manifest (" + std::string(exc.what()) + ")" + rebuild);
  }
  if (m.trt_major == 0 && !m.trt_version.empty()) {
    m.trt_major = std::atoi(m.trt_version.c_str());
  }
  if (!data.contains("contract") || data["contract"].is_null()) {
    throw Error(Status::kContract, source + " carries no graph contract (member 'contract'): rebuild the engine "
                                            "from an ONNX exported by this gflv2-deploy");
  }
  m.contract = contract_from_json(data["contract"], source);
  return m;
}

EngineManifest read_manifest(const std::string& engine_path) {
  const std::string path = engine_path + ".json";
  if (!std::filesystem::is_regular_file(engine_path)) {
    throw Error(Status::kFileNotFound, "engine file not found: " + engine_path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(Status::kFileNotFound, "no manifest beside " + engine_path + " (expected " + path +
                                           "): rebuild the engine with `gflv2-deploy build`, which writes both");
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_manifest(text.str(), path);
}

void check_manifest(const EngineManifest& m, const std::string& runtime_version, const std::string& gpu_name,
                    const std::string& compute_capability) {
  const std::string built = "engine was built with TensorRT " + m.trt_version;
  if (m.flavour != "tensorrt") {
    throw Error(Status::kEngineMismatch, "engine was built with " + m.flavour + " " + m.trt_version +
                                             ", but this runtime is TensorRT " + runtime_version + ": " + rebuild_hint(m));
  }
  if (release(m.trt_version) != release(runtime_version)) {
    throw Error(Status::kEngineMismatch, built + ", but this runtime is TensorRT " + runtime_version +
                                             " (TensorRT plans only load in the version that built them): " + rebuild_hint(m));
  }
  if (compute_capability.empty()) return;
  if (m.target_kind == "gpu") {
    if (m.compute_capability != compute_capability) {
      throw Error(Status::kEngineMismatch, "engine was built for " + m.gpu_name + " (compute capability " +
                                               m.compute_capability + "), but this GPU is " + gpu_name + " (" +
                                               compute_capability + "): " + rebuild_hint(m));
    }
  } else if (m.target_kind == "aot") {
    const auto& ccs = m.compute_capabilities;
    if (std::find(ccs.begin(), ccs.end(), compute_capability) == ccs.end()) {
      throw Error(Status::kEngineMismatch, "engine was built for other compute capabilities, but this GPU is " +
                                               gpu_name + " (" + compute_capability + "): " + rebuild_hint(m));
    }
  } else {
    throw Error(Status::kEngineMismatch, "manifest has an unknown build target '" + m.target_kind + "': " + rebuild_hint(m));
  }
}

void check_cuda_versions(const EngineManifest& m, int cuda_runtime, int cuda_driver) {
  if (m.cuda_runtime.empty()) return;  // an engine whose manifest predates the record: nothing to compare
  const int built = major_of(m.cuda_runtime);
  if (cuda_runtime > 0 && built != cuda_runtime / 1000) {
    throw Error(Status::kEngineMismatch, "engine was built with CUDA " + m.cuda_runtime + ", but this gflv2 TensorRT backend "
                                             "uses CUDA " + cuda_text(cuda_runtime) + ": " + rebuild_hint(m) +
                                             " with the TensorRT of CUDA " + std::to_string(cuda_runtime / 1000));
  }
  if (cuda_driver > 0 && cuda_driver / 1000 < built) {
    throw Error(Status::kUnsupported, "the NVIDIA driver supports CUDA up to " + cuda_text(cuda_driver) +
                                          ", but the engine needs CUDA " + m.cuda_runtime + ": install a driver for CUDA " +
                                          std::to_string(built) + " or newer");
  }
}

void verify_plugin_libraries(const EngineManifest& m) {
  for (const PluginLibrary& lib : m.plugin_libraries) {
    const std::string rebuild = "rebuild the engine with `gflv2-deploy build ... --plugin-lib " + lib.path + "`";
    if (!std::filesystem::is_regular_file(lib.path)) {
      throw Error(Status::kFileNotFound, "the engine needs the plugin library " + lib.path + ", which is missing: rebuild it "
                                             "(`bash scripts/build_cpp.sh`) and then " + rebuild);
    }
    FileDigest digest;
    try {
      digest = file_sha256(lib.path);
    } catch (const Error&) {
      throw Error(Status::kFileNotFound, "the engine needs the plugin library " + lib.path + ", which cannot be read");
    }
    if (digest.bytes != lib.bytes || digest.sha256 != lib.sha256) {
      throw Error(Status::kEngineMismatch, "the plugin library " + lib.path + " changed since the engine was built (" +
                                               (digest.bytes != lib.bytes ? "size" : "SHA-256") +
                                               " differs from the manifest): " + rebuild);
    }
  }
}

}  // namespace gflv2
