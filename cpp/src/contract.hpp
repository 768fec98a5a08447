// The graph contract (docs/contract.md, format "gflv2-deploy/graph-contract" versions 2 and 3): the one source of
// tensor names, shapes, preprocessing and post-processing. Read from the ONNX metadata or an engine manifest.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace gflv2 {

inline constexpr const char* kContractMetadataKey = "gflv2_deploy.contract";
inline constexpr const char* kContractFormat = "gflv2-deploy/graph-contract";
inline constexpr int kContractVersion = 3;     // the newest version this library reads
inline constexpr int kOldestContractVersion = 2;  // version 3 = 2 + preprocessing.input_format

// The network input size rule of gflv2_deploy/spec.py (SIZE_DIVISOR, MAX_INPUT_SIDE, input_hw_problem): each side a
// positive multiple of kSizeDivisor and at most kMaxInputSide pixels. Keep-ratio bounds (test_scale) and padding
// divisors are bounded by kMaxInputSide too. tests/integration/test_cpp_runtime.py checks the values against spec.py.
inline constexpr int kSizeDivisor = 32;
inline constexpr int kMaxInputSide = 8192;
// A batch's images tensor holds at most this many float32 elements (8 GiB): ten pictures of the largest size.
// C++ only (the Python runners allocate what numpy allows); it keeps n x 3 x h x w far from int64 overflow and
// turns an absurd batch into one clear error instead of an allocation failure.
inline constexpr int64_t kMaxInputElements = int64_t{1} << 31;

// "" when height x width is a valid network input size, else why not (spec.input_hw_problem's message).
std::string input_hw_problem(int64_t height, int64_t width);

enum class DType { kFloat32, kFloat16, kInt32, kInt64, kUInt8, kInt8, kBool };

struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> dims;  // -1 where the dimension is dynamic (named in the contract)
  bool is_dynamic(std::size_t axis) const { return dims.at(axis) < 0; }
};

struct PreprocessingSpec {
  std::array<int, 2> test_scale{1333, 800};  // keep-ratio bounds, any order (max bounds the long edge)
  std::array<double, 3> mean{};               // RGB, 0-255 scale
  std::array<double, 3> std{};
  int pad_divisor = 32;
  std::optional<std::array<int, 2>> input_hw;  // fixed (H, W) of a static graph
  double pad_value = 0.0;
  // input_format "uint8_nhwc_bgr" (contract version 3): the graph takes letterboxed BGR uint8 pictures
  // n x h x w x 3 and normalises them itself; otherwise normalised RGB float32 n x 3 x h x w.
  bool uint8_input = false;
};

struct PostprocessingSpec {
  std::string nms = "none";  // none | onnx | trt | plugin
  int nms_pre = 1000;
  bool nms_pre_in_graph = true;
  double score_thr = 0.05;
  double iou_thr = 0.6;
  int max_per_img = 100;
  bool clamped = true;
  double pad_box = 0.0;
  double pad_score = 0.0;
  int pad_class = -1;
};

struct Contract {
  std::string config_name;
  std::vector<std::string> class_names;
  std::vector<int> strides;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  PreprocessingSpec preprocessing;
  PostprocessingSpec postprocessing;
  std::string precision = "fp32";
  std::string json;  // the contract as read (compact JSON)

  bool end_to_end() const { return postprocessing.nms != "none"; }
  const TensorSpec* find_input(const std::string& name) const;
  const TensorSpec* find_output(const std::string& name) const;
  bool has_img_shape_input() const { return find_input("img_shape") != nullptr; }
};

// Parse a contract; gflv2::Error(kContract) with one line naming `source` for another format, a version this
// library does not read (newer: upgrade; older: re-export), a missing or ill-typed member.
Contract parse_contract(const std::string& json_text, const std::string& source);
Contract contract_from_json(const nlohmann::json& data, const std::string& source);

// Element size in bytes and the contract spelling ("float32", ...).
std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);

}  // namespace gflv2
