#include <gtest/gtest.h>

#include "gflv2/error.hpp"
#include "manifest.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

using nlohmann::json;

json sample_manifest() {
  return json{{"format", "gflv2-deploy/engine-manifest"},
              {"format_version", 2},
              {"runtime", {{"flavour", "tensorrt"}, {"version", "10.16.0"}, {"major", 10}}},
              {"target", {{"kind", "gpu"}, {"gpu_name", "NVIDIA H200"}, {"compute_capability", "9.0"}}},
              {"precision", "fp16"},
              {"onnx", {{"file", "model.onnx"}}},
              {"build", {{"plugins_initialised", true}}},
              {"plugin_libraries", {"libgflv2_nms.so"}},
              {"contract", testing::sample_contract()}};
}

Status status_of(const json& j) {
  try {
    parse_manifest(j.dump(), "/e/model.plan.json");
  } catch (const Error& e) {
    return e.status();
  }
  return static_cast<Status>(0);
}

TEST(Manifest, ReadsRuntimeTargetPluginsAndContract) {
  const EngineManifest m = parse_manifest(sample_manifest().dump(), "/e/model.plan.json");
  EXPECT_EQ(m.trt_major, 10);
  EXPECT_EQ(m.trt_version, "10.16.0");
  EXPECT_EQ(m.compute_capability, "9.0");
  EXPECT_TRUE(m.standard_plugins);
  ASSERT_EQ(m.plugin_libraries.size(), 1u);
  EXPECT_EQ(m.plugin_libraries[0], "/e/libgflv2_nms.so");  // relative to the manifest's folder
  EXPECT_EQ(m.contract.class_names.size(), 3u);
}

TEST(Manifest, RefusesWhatItCannotRead) {
  EXPECT_EQ(status_of(json::array()), Status::kModel);
  json other = sample_manifest();
  other["format"] = "x";
  EXPECT_EQ(status_of(other), Status::kModel);
  json newer = sample_manifest();
  newer["format_version"] = 3;
  EXPECT_EQ(status_of(newer), Status::kModel);
  json no_contract = sample_manifest();
  no_contract.erase("contract");
  EXPECT_EQ(status_of(no_contract), Status::kContract);
  json newer_contract = sample_manifest();
  newer_contract["contract"]["format_version"] = 3;
  EXPECT_EQ(status_of(newer_contract), Status::kContract);
  json bad_plugins = sample_manifest();
  bad_plugins["plugin_libraries"] = {1, 2};
  EXPECT_EQ(status_of(bad_plugins), Status::kModel);
}

TEST(Manifest, RefusesAnotherTensorrtVersionOrGpu) {
  const EngineManifest m = parse_manifest(sample_manifest().dump(), "m.json");
  EXPECT_NO_THROW(check_manifest(m, "10.16.0", "NVIDIA H200", "9.0"));
  EXPECT_NO_THROW(check_manifest(m, "10.16.0", "", ""));  // GPU unknown: version only
  EXPECT_NO_THROW(check_manifest(m, "10.16.0.72", "", ""));  // the build number does not matter
  EXPECT_THROW(check_manifest(m, "10.16.1", "", ""), Error);
  auto mismatch = [&](const char* version, const char* gpu, const char* cc) -> std::string {
    try {
      check_manifest(m, version, gpu, cc);
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kEngineMismatch);
      EXPECT_NE(std::string(e.what()).find("rebuild"), std::string::npos) << e.what();
      return e.what();
    }
    ADD_FAILURE() << version << " " << cc << " accepted";
    return "";
  };
  const std::string version = mismatch("10.15.1", "NVIDIA H200", "9.0");
  EXPECT_NE(version.find("10.16.0"), std::string::npos) << version;
  EXPECT_NE(version.find("10.15.1"), std::string::npos) << version;
  EXPECT_NE(mismatch("10.16.0", "NVIDIA A100", "8.0").find("A100"), std::string::npos);
  EngineManifest rtx = m;
  rtx.flavour = "tensorrt-rtx";
  EXPECT_THROW(check_manifest(rtx, "10.16.0", "", ""), Error);
}

}  // namespace
}  // namespace gflv2
