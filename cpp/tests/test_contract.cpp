#include <gtest/gtest.h>

#include "contract.hpp"
#include "gflv2/error.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

using nlohmann::json;

Status status_of(const std::string& text) {
  try {
    parse_contract(text, "model.onnx");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.onnx"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
    return e.status();
  }
  ADD_FAILURE() << "no error for " << text;
  return Status::kInternal;
}

TEST(Contract, ParsesTheDocumentedMembers) {
  const Contract c = parse_contract(testing::sample_contract().dump(), "m");
  EXPECT_EQ(c.class_names.size(), 3u);
  EXPECT_EQ(c.preprocessing.test_scale[0], 1333);
  EXPECT_FALSE(c.preprocessing.input_hw.has_value());
  EXPECT_DOUBLE_EQ(c.preprocessing.std[2], 57.375);
  EXPECT_FALSE(c.end_to_end());
  EXPECT_TRUE(c.has_img_shape_input());
  ASSERT_NE(c.find_input("images"), nullptr);
  EXPECT_TRUE(c.find_input("images")->is_dynamic(0));
  EXPECT_EQ(c.find_input("images")->dims[1], 3);
  EXPECT_EQ(c.find_output("scores")->dims[2], 3);
  EXPECT_DOUBLE_EQ(c.postprocessing.iou_thr, 0.6);
}

TEST(Contract, ReadsAFixedInputSize) {
  json j = testing::sample_contract();
  j["preprocessing"]["input_hw"] = {256, 384};
  EXPECT_EQ(*parse_contract(j.dump(), "m").preprocessing.input_hw, (std::array<int, 2>{256, 384}));
}

// The message of the kContract error a contract with format_version `version` gets.
std::string version_error(int version) {
  json j = testing::sample_contract();
  j["format_version"] = version;
  try {
    parse_contract(j.dump(), "model.onnx");
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kContract);
    return e.what();
  }
  ADD_FAILURE() << "version " << version << " accepted";
  return "";
}

TEST(Contract, ReadsVersion3AndItsInputFormat) {
  json j = testing::sample_contract();
  j["format_version"] = 3;
  j["preprocessing"]["input_format"] = "float32_nchw_rgb";
  EXPECT_FALSE(parse_contract(j.dump(), "m").preprocessing.uint8_input);
  j["preprocessing"]["input_format"] = "uint8_nhwc_bgr";
  j["inputs"][0] = {{"name", "images"}, {"dtype", "uint8"}, {"shape", {"batch", "height", "width", 3}}};
  EXPECT_TRUE(parse_contract(j.dump(), "m").preprocessing.uint8_input);
  j["inputs"][0] = {{"name", "images"}, {"dtype", "float32"}, {"shape", {"batch", 3, "height", "width"}}};
  EXPECT_EQ(status_of(j.dump()), Status::kContract);  // uint8 format with a float32 NCHW input
  j["preprocessing"]["input_format"] = "jpeg";
  EXPECT_EQ(status_of(j.dump()), Status::kContract);
  j["preprocessing"].erase("input_format");
  EXPECT_EQ(status_of(j.dump()), Status::kContract);  // version 3 without its member
}

TEST(Contract, RefusesANewerVersionSayingUpgrade) {
  const std::string message = version_error(4);
  EXPECT_NE(message.find("version 4"), std::string::npos) << message;
  EXPECT_NE(message.find("upgrade"), std::string::npos) << message;
}

TEST(Contract, RefusesAnOlderVersionSayingReexport) {
  const std::string message = version_error(1);
  EXPECT_NE(message.find("re-export"), std::string::npos) << message;
}

TEST(Contract, RefusesBadInputWithOneLine) {
  EXPECT_EQ(status_of("not json"), Status::kContract);
  EXPECT_EQ(status_of("[]"), Status::kContract);
  EXPECT_EQ(status_of(R"({"format": "other"})"), Status::kContract);
  for (const char* key : {"model", "inputs", "outputs", "preprocessing", "postprocessing"}) {
    json j = testing::sample_contract();
    j.erase(key);
    EXPECT_EQ(status_of(j.dump()), Status::kContract) << key;
  }
  json wrong_type = testing::sample_contract();
  wrong_type["preprocessing"]["pad_divisor"] = "32";
  EXPECT_EQ(status_of(wrong_type.dump()), Status::kContract);
  json bad_nms = testing::sample_contract();
  bad_nms["postprocessing"]["nms"] = "fancy";
  EXPECT_EQ(status_of(bad_nms.dump()), Status::kContract);
  json zero_std = testing::sample_contract();
  zero_std["preprocessing"]["std"] = {1, 0, 1};
  EXPECT_EQ(status_of(zero_std.dump()), Status::kContract);
  json no_scores = testing::sample_contract();
  no_scores["outputs"].erase(1);
  EXPECT_EQ(status_of(no_scores.dump()), Status::kContract);
  json e2e_without_outputs = testing::sample_contract();
  e2e_without_outputs["postprocessing"]["nms"] = "onnx";
  EXPECT_EQ(status_of(e2e_without_outputs.dump()), Status::kContract);
  json count_mismatch = testing::sample_contract();
  count_mismatch["model"]["num_classes"] = 80;
  EXPECT_EQ(status_of(count_mismatch.dump()), Status::kContract);
}

TEST(Contract, SizesFollowTheOneInputSizeRule) {
  // spec.input_hw_problem: sides positive multiples of 32, at most 8192; test_scale and pad_divisor bounded by 8192
  EXPECT_EQ(input_hw_problem(800, 1344), "");
  EXPECT_EQ(input_hw_problem(8192, 32), "");
  EXPECT_NE(input_hw_problem(8224, 32).find("at most 8192"), std::string::npos);
  EXPECT_NE(input_hw_problem(100, 96).find("multiples of 32"), std::string::npos);
  EXPECT_NE(input_hw_problem(0, 32), "");
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{{"input_hw", {100, 96}},
                                                                             {"input_hw", {16384, 32}},
                                                                             {"test_scale", {100000, 800}},
                                                                             {"test_scale", {1333, 0}},
                                                                             {"pad_divisor", 100000}}) {
    json j = testing::sample_contract();
    j["preprocessing"][key] = value;
    EXPECT_EQ(status_of(j.dump()), Status::kContract) << key << " " << value.dump();
  }
  json largest = testing::sample_contract();
  largest["preprocessing"]["test_scale"] = {8192, 8192};
  largest["preprocessing"]["input_hw"] = {8192, 8192};
  EXPECT_EQ(*parse_contract(largest.dump(), "m").preprocessing.input_hw, (std::array<int, 2>{8192, 8192}));
}

}  // namespace
}  // namespace gflv2
