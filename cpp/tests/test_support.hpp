// Shared by the tests: where the test models and photos are, and a valid contract to mutate.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gflv2::testing {

inline std::string models_dir() {
  const char* env = std::getenv("GFLV2_TEST_MODELS");
  return env ? env : GFLV2_TEST_MODELS_DIR;
}
inline std::string model(const std::string& name) { return models_dir() + "/" + name; }

inline std::vector<std::string> photos(std::size_t limit = 50) {
  std::vector<std::string> files;
  const std::filesystem::path dir = std::getenv("GFLV2_TEST_IMAGES") ? std::getenv("GFLV2_TEST_IMAGES") : GFLV2_TEST_IMAGES_DIR;
  if (!std::filesystem::is_directory(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".jpg") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.size() > limit) files.resize(limit);
  return files;
}

// A valid version-2 contract of a pre-NMS graph (docs/contract.md).
inline nlohmann::json sample_contract() {
  return nlohmann::json::parse(R"({
    "format": "gflv2-deploy/graph-contract", "format_version": 2,
    "producer": {"tool_version": "0.1.0", "exporter": "torchscript", "torch_version": "2.13.0", "opset": 17},
    "model": {"config_name": "gflv2_tiny", "class_names": ["a", "b", "c"], "num_classes": 3,
              "strides": [8, 16, 32, 64, 128], "reg_max": 16, "reg_topk": 4, "checkpoint": null, "checkpoint_sha256": null},
    "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"]},
               {"name": "img_shape", "dtype": "float32", "shape": ["batch", 2]}],
    "outputs": [{"name": "boxes", "dtype": "float32", "shape": ["batch", "anchors", 4]},
                {"name": "scores", "dtype": "float32", "shape": ["batch", "anchors", 3]}],
    "preprocessing": {"test_scale": [1333, 800], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                      "pad_divisor": 32, "input_hw": null, "color": "RGB", "resize": "keep_ratio_bilinear", "pad_value": 0.0},
    "postprocessing": {"nms": "none", "nms_pre": 1000, "nms_pre_in_graph": true, "score_thr": 0.05, "iou_thr": 0.6,
                       "max_per_img": 100, "clamped": true, "pad_box": 0.0, "pad_score": 0.0, "pad_class": -1},
    "precision": {"compute": "fp32", "recipe": null}
  })");
}

}  // namespace gflv2::testing
