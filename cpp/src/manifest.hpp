// The engine manifest (<engine>.json, written by `gflv2-deploy build`; gflv2_deploy/engine/manifest.py): which
// TensorRT built the engine, for which GPU, the plugins it needs, and the graph contract (member "contract").
#pragma once

#include <string>
#include <vector>

#include "contract.hpp"

namespace gflv2 {

inline constexpr const char* kManifestFormat = "gflv2-deploy/engine-manifest";
inline constexpr int kManifestVersion = 2;  // 2: carries the typed graph contract (member "contract")

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
  std::vector<std::string> plugin_libraries;  // absolute paths of plugin libraries to load first
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

}  // namespace gflv2
