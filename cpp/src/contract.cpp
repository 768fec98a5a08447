#include "contract.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "gflv2/error.hpp"

namespace gflv2 {
namespace {

using nlohmann::json;

const char* const kReexport = "re-export it with `gflv2-deploy export`";

[[noreturn]] void malformed(const std::string& source, const std::string& what) {
  throw Error(Status::kContract, source + ": malformed graph contract (" + what + "); " + kReexport);
}

const json& member(const json& object, const char* key, const std::string& source, const std::string& where) {
  if (!object.is_object()) malformed(source, where + " is not an object");
  auto it = object.find(key);
  if (it == object.end()) malformed(source, "missing member " + where + "." + key);
  return *it;
}

DType parse_dtype(const std::string& text, const std::string& source) {
  static const std::pair<const char*, DType> kNames[] = {
      {"float32", DType::kFloat32}, {"float16", DType::kFloat16}, {"int32", DType::kInt32}, {"int64", DType::kInt64},
      {"uint8", DType::kUInt8},     {"int8", DType::kInt8},       {"bool", DType::kBool}};
  for (const auto& [name, dtype] : kNames) {
    if (text == name) return dtype;
  }
  malformed(source, "unknown dtype '" + text + "'");
}

std::vector<TensorSpec> parse_tensors(const json& list, const std::string& source, const char* where) {
  if (!list.is_array() || list.empty()) malformed(source, std::string(where) + " must be a non-empty list");
  std::vector<TensorSpec> tensors;
  for (const json& item : list) {
    TensorSpec t;
    t.name = member(item, "name", source, where).get<std::string>();
    t.dtype = parse_dtype(member(item, "dtype", source, where).get<std::string>(), source);
    const json& shape = member(item, "shape", source, where);
    if (!shape.is_array() || shape.empty()) malformed(source, "tensor '" + t.name + "' has no shape");
    for (const json& dim : shape) {
      if (dim.is_string()) {
        t.dims.push_back(-1);
      } else {
        const auto value = dim.get<int64_t>();
        if (value < 1) malformed(source, "tensor '" + t.name + "' has a dimension < 1");
        t.dims.push_back(value);
      }
    }
    if (t.name.empty()) malformed(source, std::string(where) + " has a tensor without a name");
    tensors.push_back(std::move(t));
  }
  return tensors;
}

std::array<int, 2> parse_pair(const json& value, const std::string& source, const char* what) {
  if (!value.is_array() || value.size() != 2) malformed(source, std::string(what) + " must be two integers");
  const int64_t first = value[0].get<int64_t>(), second = value[1].get<int64_t>();
  if (first < 1 || second < 1 || first > kMaxInputSide || second > kMaxInputSide) {
    malformed(source, std::string(what) + " must be in [1, " + std::to_string(kMaxInputSide) + "]");
  }
  return {static_cast<int>(first), static_cast<int>(second)};
}

std::array<double, 3> parse_rgb(const json& value, const std::string& source, const char* what) {
  if (!value.is_array() || value.size() != 3) malformed(source, std::string(what) + " must be three numbers");
  return {value[0].get<double>(), value[1].get<double>(), value[2].get<double>()};
}

void require_tensor(const std::vector<TensorSpec>& list, const char* name, std::size_t rank, const std::string& source) {
  auto it = std::find_if(list.begin(), list.end(), [&](const TensorSpec& t) { return t.name == name; });
  if (it == list.end()) malformed(source, std::string("no tensor '") + name + "'");
  if (it->dims.size() != rank) malformed(source, std::string("tensor '") + name + "' must have rank " + std::to_string(rank));
}

}  // namespace

std::string input_hw_problem(int64_t height, int64_t width) {
  const std::string got = std::to_string(height) + "x" + std::to_string(width);
  if (height <= 0 || width <= 0 || height % kSizeDivisor != 0 || width % kSizeDivisor != 0) {
    return "height and width must be positive multiples of " + std::to_string(kSizeDivisor) + ", got " + got;
  }
  if (std::max(height, width) > kMaxInputSide) {
    return "height and width must be at most " + std::to_string(kMaxInputSide) + " pixels, got " + got;
  }
  return "";
}

const TensorSpec* Contract::find_input(const std::string& name) const {
  for (const auto& t : inputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const TensorSpec* Contract::find_output(const std::string& name) const {
  for (const auto& t : outputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Contract contract_from_json(const json& data, const std::string& source) {
  if (!data.is_object() || !data.contains("format") || data["format"] != kContractFormat) {
    throw Error(Status::kContract, source + ": not a gflv2-deploy graph contract; " + kReexport);
  }
  const json& version = data.contains("format_version") ? data["format_version"] : json();
  if (!version.is_number_integer() || version.get<int64_t>() < kOldestContractVersion ||
      version.get<int64_t>() > kContractVersion) {
    const bool newer = version.is_number_integer() && version.get<int64_t>() > kContractVersion;
    throw Error(Status::kContract, source + " has graph contract version " + version.dump() +
                                       ", this gflv2 runtime reads versions " + std::to_string(kOldestContractVersion) +
                                       " to " + std::to_string(kContractVersion) + ": " +
                                       (newer ? "upgrade the gflv2 runtime" : kReexport));
  }
  Contract c;
  try {
    const json& model = member(data, "model", source, "contract");
    c.config_name = member(model, "config_name", source, "model").get<std::string>();
    c.class_names = member(model, "class_names", source, "model").get<std::vector<std::string>>();
    c.strides = member(model, "strides", source, "model").get<std::vector<int>>();
    if (c.class_names.empty()) malformed(source, "model.class_names is empty");
    if (model.contains("num_classes") && model["num_classes"].get<int64_t>() != static_cast<int64_t>(c.class_names.size())) {
      malformed(source, "model.num_classes differs from the number of class names");
    }
    c.inputs = parse_tensors(member(data, "inputs", source, "contract"), source, "inputs");
    c.outputs = parse_tensors(member(data, "outputs", source, "contract"), source, "outputs");

    const json& pre = member(data, "preprocessing", source, "contract");
    c.preprocessing.test_scale = parse_pair(member(pre, "test_scale", source, "preprocessing"), source, "test_scale");
    c.preprocessing.mean = parse_rgb(member(pre, "mean", source, "preprocessing"), source, "mean");
    c.preprocessing.std = parse_rgb(member(pre, "std", source, "preprocessing"), source, "std");
    for (double s : c.preprocessing.std) {
      if (!(s > 0)) malformed(source, "preprocessing.std must be positive");
    }
    const auto pad_divisor = member(pre, "pad_divisor", source, "preprocessing").get<int64_t>();
    if (pad_divisor < 1 || pad_divisor > kMaxInputSide) {
      malformed(source, "preprocessing.pad_divisor must be in [1, " + std::to_string(kMaxInputSide) + "]");
    }
    c.preprocessing.pad_divisor = static_cast<int>(pad_divisor);
    const json& hw = member(pre, "input_hw", source, "preprocessing");
    if (!hw.is_null()) {
      c.preprocessing.input_hw = parse_pair(hw, source, "input_hw");
      const std::string problem = input_hw_problem((*c.preprocessing.input_hw)[0], (*c.preprocessing.input_hw)[1]);
      if (!problem.empty()) malformed(source, "preprocessing.input_hw: " + problem);
    }
    c.preprocessing.pad_value = member(pre, "pad_value", source, "preprocessing").get<double>();
    if (member(pre, "color", source, "preprocessing").get<std::string>() != "RGB" ||
        member(pre, "resize", source, "preprocessing").get<std::string>() != "keep_ratio_bilinear") {
      malformed(source, "preprocessing.color must be RGB and resize keep_ratio_bilinear");
    }
    if (version.get<int64_t>() >= 3) {  // absent in version 2: float32 input
      const std::string format = member(pre, "input_format", source, "preprocessing").get<std::string>();
      if (format != "float32_nchw_rgb" && format != "uint8_nhwc_bgr") {
        malformed(source, "preprocessing.input_format '" + format + "' is not float32_nchw_rgb or uint8_nhwc_bgr");
      }
      c.preprocessing.uint8_input = format == "uint8_nhwc_bgr";
    }

    const json& post = member(data, "postprocessing", source, "contract");
    auto& p = c.postprocessing;
    p.nms = member(post, "nms", source, "postprocessing").get<std::string>();
    p.nms_pre = member(post, "nms_pre", source, "postprocessing").get<int>();
    p.nms_pre_in_graph = member(post, "nms_pre_in_graph", source, "postprocessing").get<bool>();
    p.score_thr = member(post, "score_thr", source, "postprocessing").get<double>();
    p.iou_thr = member(post, "iou_thr", source, "postprocessing").get<double>();
    p.max_per_img = member(post, "max_per_img", source, "postprocessing").get<int>();
    p.clamped = member(post, "clamped", source, "postprocessing").get<bool>();
    p.pad_box = member(post, "pad_box", source, "postprocessing").get<double>();
    p.pad_score = member(post, "pad_score", source, "postprocessing").get<double>();
    p.pad_class = member(post, "pad_class", source, "postprocessing").get<int>();
    if (p.nms != "none" && p.nms != "onnx" && p.nms != "trt" && p.nms != "plugin") {
      malformed(source, "postprocessing.nms '" + p.nms + "' is not none, onnx, trt or plugin");
    }
    if (p.max_per_img < 1) malformed(source, "postprocessing.max_per_img must be >= 1");

    if (data.contains("precision") && data["precision"].is_object() && data["precision"].contains("compute")) {
      c.precision = data["precision"]["compute"].get<std::string>();
    }
  } catch (const json::exception& exc) {  // a member of the wrong JSON type
    malformed(source, exc.what());
  }
  require_tensor(c.inputs, "images", 4, source);
  const TensorSpec* images = c.find_input("images");
  if (c.preprocessing.uint8_input && (images->dtype != DType::kUInt8 || images->dims[3] != 3)) {
    malformed(source, "input_format uint8_nhwc_bgr needs an 'images' input of uint8 n x h x w x 3");
  }
  if (c.end_to_end()) {
    require_tensor(c.outputs, "num_dets", 2, source);
    require_tensor(c.outputs, "det_boxes", 3, source);
    require_tensor(c.outputs, "det_scores", 2, source);
    require_tensor(c.outputs, "det_classes", 2, source);
  } else {
    require_tensor(c.outputs, "boxes", 3, source);
    require_tensor(c.outputs, "scores", 3, source);
  }
  c.json = data.dump();
  return c;
}

Contract parse_contract(const std::string& json_text, const std::string& source) {
  json data = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (data.is_discarded()) {
    throw Error(Status::kContract, source + ": graph contract is not valid JSON; " + kReexport);
  }
  return contract_from_json(data, source);
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kInt64: return 8;
    case DType::kFloat16: return 2;
    case DType::kUInt8: case DType::kInt8: case DType::kBool: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
    case DType::kInt8: return "int8";
    case DType::kBool: return "bool";
  }
  return "?";
}

}  // namespace gflv2
