// The engine manifest (<engine>.json, written by `gflv2-deploy build`; gflv2_deploy/engine/manifest.py): which
// TensorRT built the engine, for which GPU, the plugins it needs, and the graph contract (member "contract").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "contract.hpp"

namespace gflv2 {

inline constexpr const char* kManifestFormat = "gflv2-deploy/engine-manifest";
inline constexpr int kManifestVersion = 2;  // 2: carries the typed graph contract (member "contract")

// A plugin library the engine needs, as the Python writer records it (manifest.plugin_library_record).
struct PluginLibrary {
  std::string path;    // absolute (a relative path is taken relative to the manifest's folder)
  std::string sha256;  // 64 lowercase hex characters
  uint64_t bytes = 0;
};

struct EngineManifest {
  std::string path;               // the manifest file
  std::string flavour;            // "tensorrt" or "tensorrt-rtx"
  std::string trt_version;        // e.g. "10.16.0"
  int trt_major = 0;
  std::string target_kind;       // "gpu" (TensorRT) or "aot" (TensorRT-RTX)
  std::string gpu_name;
  std::string compute_capability;  // "9.0" for kind "gpu"
  std::vector<std::string> compute_capabilities;  // kind "aot"
  bool standard_plugins = false;  // build.plugins_initialised: load libnvinfer_plugin before deserialising
  std::vector<PluginLibrary> plugin_libraries;  // loaded (after verify_plugin_libraries) before deserialising
  std::string cuda_runtime;       // CUDA runtime version the engine was built with ("13.0"); empty: not recorded
  std::string onnx_file;
  std::string precision;
  Contract contract;
};

// The manifest beside `engine_path` (engine path + ".json"). gflv2::Error: kFileNotFound without it,
// kModel when it is not a readable manifest of a known version, kContract for its contract.
EngineManifest read_manifest(const std::string& engine_path);
EngineManifest parse_manifest(const std::string& json_text, const std::string& source);

// Refuse an engine the running TensorRT (`runtime_version`, e.g. "10.16.0") on a GPU of `compute_capability`
// ("9.0"; empty = unknown, not checked) cannot load: gflv2::Error(kEngineMismatch) naming both sides.
void check_manifest(const EngineManifest& manifest, const std::string& runtime_version,
                    const std::string& gpu_name, const std::string& compute_capability);

// The CUDA side of the same check, for a manifest that records its CUDA runtime (cuda.runtime_version):
// `cuda_runtime` is this backend's CUDA runtime and `cuda_driver` the version the installed driver supports,
// both as cudaRuntimeGetVersion / cudaDriverGetVersion give them (13000 = 13.0; 0 = unknown, not checked).
// gflv2::Error(kEngineMismatch) when the engine's CUDA major differs from the backend's, kUnsupported when
// the driver is older than the CUDA major the engine needs.
void check_cuda_versions(const EngineManifest& manifest, int cuda_runtime, int cuda_driver);

// Refuse a plugin library the manifest names when it is missing (kFileNotFound) or differs in size or SHA-256
// from the record (kEngineMismatch): a rebuilt plugin may not match the fields serialised in the engine.
// Call it before anything loads the libraries.
void verify_plugin_libraries(const EngineManifest& manifest);

}  // namespace gflv2
