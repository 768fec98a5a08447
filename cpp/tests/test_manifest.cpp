// The engine manifest as gflv2_deploy/engine/manifest.py writes it (make_test_models.py writes the fixtures with the
// Python writer), the plugin-library verification (size + SHA-256), the TensorRT / GPU / CUDA checks, SHA-256.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gflv2/error.hpp"
#include "manifest.hpp"
#include "sha256.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json sample_manifest() {
  return json{{"format", "gflv2-deploy/engine-manifest"},
              {"format_version", 2},
              {"runtime", {{"flavour", "tensorrt"}, {"version", "10.16.0"}, {"major", 10}}},
              {"target", {{"kind", "gpu"}, {"gpu_name", "NVIDIA H200"}, {"compute_capability", "9.0"}}},
              {"precision", "fp16"},
              {"onnx", {{"file", "model.onnx"}}},
              {"build", {{"plugins_initialised", true}}},
              {"plugin_libraries", {{{"path", "libgflv2_nms.so"}, {"sha256", std::string(64, 'a')}, {"bytes", 10}}}},
              {"cuda", {{"runtime_version", "13.0"}}},
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

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The error `verify_plugin_libraries` raises for `m`, or an empty message when it accepts it.
std::pair<Status, std::string> verify_error(const EngineManifest& m) {
  try {
    verify_plugin_libraries(m);
  } catch (const Error& e) {
    return {e.status(), e.what()};
  }
  return {static_cast<Status>(0), ""};
}

TEST(Sha256, KnownVectors) {  // FIPS 180-4 examples and the empty message
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;  // one million 'a', fed in uneven pieces: the buffering across calls
  const std::string piece(997, 'a');
  std::size_t fed = 0;
  while (fed + piece.size() <= 1000000) {
    million.update(piece.data(), piece.size());
    fed += piece.size();
  }
  million.update(piece.data(), 1000000 - fed);
  EXPECT_EQ(million.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  for (std::size_t n : {55u, 56u, 63u, 64u, 65u}) {  // lengths around the padding boundary, one call vs bytewise
    const std::string text(n, 'x');
    Sha256 bytewise;
    for (char c : text) bytewise.update(&c, 1);
    EXPECT_EQ(bytewise.hex_digest(), sha256_hex(text.data(), text.size())) << n;
  }
}

TEST(Manifest, ReadsTheManifestThePythonWriterWrites) {
  const EngineManifest m = read_manifest(testing::model("tiny_trt10.plan"));
  EXPECT_EQ(m.flavour, "tensorrt");
  EXPECT_EQ(m.trt_major, 10);
  EXPECT_EQ(m.trt_version, "10.16.0");
  EXPECT_EQ(m.compute_capability, "9.0");
  EXPECT_FALSE(m.standard_plugins);
  EXPECT_EQ(m.cuda_runtime, "13.0");
  ASSERT_EQ(m.plugin_libraries.size(), 1u);
  const PluginLibrary& lib = m.plugin_libraries[0];
  EXPECT_EQ(fs::canonical(lib.path), fs::canonical(testing::model("fake_plugin.so")));
  const FileDigest digest = file_sha256(lib.path);  // our SHA-256 of the file equals Python's hashlib record
  EXPECT_EQ(lib.sha256, digest.sha256);
  EXPECT_EQ(lib.bytes, digest.bytes);
  EXPECT_EQ(m.contract.class_names.size(), 6u);
  EXPECT_EQ(verify_error(m).second, "");
  EXPECT_TRUE(read_manifest(testing::model("tiny_trt10_std.plan")).standard_plugins);
}

TEST(Manifest, RefusesAMissingOrChangedPluginLibrary) {
  const std::string text = read_text(testing::model("tiny_trt10.plan.json"));
  const fs::path dir = fs::path(testing::models_dir()) / "changed_plugins";
  fs::create_directories(dir);
  const std::string original = read_text(testing::model("fake_plugin.so"));
  auto with_library = [&](const std::string& name, const std::string* content) {
    const fs::path lib = dir / name;
    fs::remove(lib);
    if (content != nullptr) std::ofstream(lib, std::ios::binary) << *content;
    json j = json::parse(text);
    j["plugin_libraries"][0]["path"] = lib.string();  // the Python writer's record, pointed at this copy
    return verify_error(parse_manifest(j.dump(), (dir / "m.plan.json").string()));
  };
  EXPECT_EQ(with_library("same.so", &original).second, "");
  std::string flipped = original;
  flipped[3] ^= 1;
  const auto [changed_status, changed] = with_library("flipped.so", &flipped);
  EXPECT_EQ(changed_status, Status::kEngineMismatch);
  EXPECT_NE(changed.find("changed since the engine was built (SHA-256"), std::string::npos) << changed;
  EXPECT_NE(changed.find("--plugin-lib"), std::string::npos) << changed;
  const std::string longer = original + "x";
  EXPECT_NE(with_library("longer.so", &longer).second.find("(size differs"), std::string::npos);
  const auto [missing_status, missing] = with_library("missing.so", nullptr);
  EXPECT_EQ(missing_status, Status::kFileNotFound);
  EXPECT_NE(missing.find("missing.so, which is missing"), std::string::npos) << missing;
  EXPECT_EQ(missing.find('\n'), std::string::npos) << "one line: " << missing;
}

TEST(Manifest, ReadsRuntimeTargetPluginsAndContract) {
  const EngineManifest m = parse_manifest(sample_manifest().dump(), "/e/model.plan.json");
  EXPECT_EQ(m.trt_major, 10);
  EXPECT_TRUE(m.standard_plugins);
  ASSERT_EQ(m.plugin_libraries.size(), 1u);
  EXPECT_EQ(m.plugin_libraries[0].path, "/e/libgflv2_nms.so");  // relative to the manifest's folder
  EXPECT_EQ(m.plugin_libraries[0].bytes, 10u);
  EXPECT_EQ(m.contract.class_names.size(), 3u);
  json no_cuda = sample_manifest();
  no_cuda["cuda"] = nullptr;  // what the writer records when the CUDA runtime is unknown
  EXPECT_EQ(parse_manifest(no_cuda.dump(), "m.json").cuda_runtime, "");
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
  for (const json& entries : {json{1, 2}, json{"libgflv2_nms.so"}, json("libgflv2_nms.so"),
                              json{{{"path", "a.so"}, {"sha256", "abc"}, {"bytes", 1}}},
                              json{{{"path", "a.so"}, {"sha256", std::string(64, 'a')}}},
                              json{{{"path", "a.so"}, {"sha256", std::string(64, 'a')}, {"bytes", -1}}}}) {
    json bad = sample_manifest();
    bad["plugin_libraries"] = entries;
    EXPECT_EQ(status_of(bad), Status::kModel) << entries.dump();
  }
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

TEST(Manifest, ChecksTheCudaVersionsItRecords) {
  const EngineManifest m = parse_manifest(sample_manifest().dump(), "m.json");  // CUDA 13.0
  EXPECT_NO_THROW(check_cuda_versions(m, 13000, 13000));
  EXPECT_NO_THROW(check_cuda_versions(m, 13020, 13040));  // minor versions do not matter
  EXPECT_NO_THROW(check_cuda_versions(m, 13000, 0));      // no driver: the GPU query reports it
  auto status = [&](int runtime, int driver) {
    try {
      check_cuda_versions(m, runtime, driver);
    } catch (const Error& e) {
      return std::make_pair(e.status(), std::string(e.what()));
    }
    return std::make_pair(static_cast<Status>(0), std::string());
  };
  const auto [other_major, other_message] = status(12080, 13000);
  EXPECT_EQ(other_major, Status::kEngineMismatch);
  EXPECT_NE(other_message.find("CUDA 13.0"), std::string::npos) << other_message;
  EXPECT_NE(other_message.find("CUDA 12.8"), std::string::npos) << other_message;
  const auto [old_driver, driver_message] = status(13000, 12020);
  EXPECT_EQ(old_driver, Status::kUnsupported);
  EXPECT_NE(driver_message.find("driver supports CUDA up to 12.2"), std::string::npos) << driver_message;
  EngineManifest unrecorded = m;
  unrecorded.cuda_runtime.clear();  // a manifest written before the record: nothing to compare
  EXPECT_NO_THROW(check_cuda_versions(unrecorded, 12080, 12020));
}

}  // namespace
}  // namespace gflv2
