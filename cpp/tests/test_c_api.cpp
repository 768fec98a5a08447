// The C ABI on bad input: every failure is a status code and a one-line message, never a crash.
#include <cstring>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "gflv2/gflv2.h"
#include "test_support.hpp"

namespace {

using gflv2::testing::model;

gflv2_status create(const std::string& path, gflv2_detector** out) { return gflv2_detector_create(path.c_str(), nullptr, out); }

TEST(CApi, CreateRefusesBadModels) {
  gflv2_detector* det = reinterpret_cast<gflv2_detector*>(0x1);
  EXPECT_EQ(create(model("missing.onnx"), &det), GFLV2_E_FILE_NOT_FOUND);
  EXPECT_EQ(det, nullptr);
  EXPECT_NE(std::string(gflv2_last_error()).find("missing.onnx"), std::string::npos);
  const std::string corrupt = gflv2::testing::models_dir() + "/corrupt_c.onnx";
  std::ofstream(corrupt) << "garbage";
  EXPECT_EQ(create(corrupt, &det), GFLV2_E_MODEL);
  EXPECT_EQ(create(model("tiny_newer_contract.onnx"), &det), GFLV2_E_CONTRACT);
  EXPECT_NE(std::string(gflv2_last_error()).find("upgrade"), std::string::npos) << gflv2_last_error();
  EXPECT_EQ(create(model("tiny_no_contract.onnx"), &det), GFLV2_E_CONTRACT);
  EXPECT_EQ(gflv2_detector_create(nullptr, nullptr, &det), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_EQ(gflv2_detector_create(model("tiny_prenms.onnx").c_str(), nullptr, nullptr), GFLV2_E_INVALID_ARGUMENT);
  gflv2_options options = gflv2_options_default();
  options.device = "tpu";
  EXPECT_EQ(gflv2_detector_create(model("tiny_prenms.onnx").c_str(), &options, &det), GFLV2_E_INVALID_ARGUMENT);
  options.device = "cpu";
  options.intra_op_threads = -2;
  EXPECT_EQ(gflv2_detector_create(model("tiny_prenms.onnx").c_str(), &options, &det), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_EQ(det, nullptr);
  gflv2_detector_destroy(nullptr);  // allowed
  gflv2_result_release(nullptr);
}

class CApiDetect : public ::testing::Test {
 protected:
  void SetUp() override {
    gflv2_options options = gflv2_options_default();
    options.intra_op_threads = 1;
    ASSERT_EQ(gflv2_detector_create(model("tiny_prenms.onnx").c_str(), &options, &det_), GFLV2_OK) << gflv2_last_error();
    photo_ = cv::imread(gflv2::testing::photos(1).at(0), cv::IMREAD_COLOR);
  }
  void TearDown() override { gflv2_detector_destroy(det_); }
  gflv2_status detect(const gflv2_image* images, size_t n) {
    gflv2_result* result = reinterpret_cast<gflv2_result*>(0x1);
    const gflv2_status s = gflv2_detector_detect(det_, images, n, &result);
    if (s != GFLV2_OK) EXPECT_EQ(result, nullptr);
    gflv2_result_release(s == GFLV2_OK ? result : nullptr);
    return s;
  }
  gflv2_image pixels() const { return {photo_.data, photo_.rows, photo_.cols, 3, static_cast<int64_t>(photo_.step), 0}; }
  gflv2_detector* det_ = nullptr;
  cv::Mat photo_;
};

TEST_F(CApiDetect, DetectsPixelsAndEncodedFilesAlike) {
  std::vector<uint8_t> jpeg;
  {
    std::ifstream in(gflv2::testing::photos(1).at(0), std::ios::binary);
    jpeg.assign(std::istreambuf_iterator<char>(in), {});
  }
  const gflv2_image images[2] = {pixels(), {jpeg.data(), 0, 0, 0, 0, static_cast<int64_t>(jpeg.size())}};
  gflv2_result* result = nullptr;
  ASSERT_EQ(gflv2_detector_detect(det_, images, 2, &result), GFLV2_OK) << gflv2_last_error();
  ASSERT_EQ(gflv2_result_num_images(result), 2u);
  ASSERT_GT(gflv2_result_count(result, 0), 0u);
  ASSERT_EQ(gflv2_result_count(result, 0), gflv2_result_count(result, 1));
  const gflv2_detection* a = gflv2_result_detections(result, 0);
  const gflv2_detection* b = gflv2_result_detections(result, 1);
  EXPECT_EQ(a[0].score, b[0].score);
  EXPECT_EQ(gflv2_result_count(result, 2), 0u);  // out of range: 0, not a crash
  EXPECT_EQ(gflv2_result_detections(result, 2), nullptr);
  gflv2_result_release(result);
  double ms[3];
  EXPECT_EQ(gflv2_detector_last_timings(det_, ms), GFLV2_OK);
  EXPECT_GT(ms[1], 0.0);
  EXPECT_EQ(gflv2_detector_num_classes(det_), 6u);
  EXPECT_NE(gflv2_detector_class_name(det_, 0), nullptr);
  EXPECT_EQ(gflv2_detector_class_name(det_, 6), nullptr);
  EXPECT_NE(std::string(gflv2_detector_contract_json(det_)).find("graph-contract"), std::string::npos);
}

TEST_F(CApiDetect, RefusesBadImages) {
  EXPECT_EQ(detect(nullptr, 1), GFLV2_E_INVALID_ARGUMENT);
  gflv2_image image = pixels();
  EXPECT_EQ(detect(&image, 0), GFLV2_E_INVALID_ARGUMENT);
  gflv2_image empty = image;
  empty.height = 0;
  EXPECT_EQ(detect(&empty, 1), GFLV2_E_IMAGE);
  gflv2_image null_data = image;
  null_data.data = nullptr;
  EXPECT_EQ(detect(&null_data, 1), GFLV2_E_IMAGE);
  gflv2_image four = image;
  four.channels = 4;
  EXPECT_EQ(detect(&four, 1), GFLV2_E_IMAGE);
  EXPECT_NE(std::string(gflv2_last_error()).find("4 channel"), std::string::npos) << gflv2_last_error();
  gflv2_image gray = image;
  gray.channels = 1;
  EXPECT_EQ(detect(&gray, 1), GFLV2_E_IMAGE);
  gflv2_image negative = image;
  negative.stride = -1;
  EXPECT_EQ(detect(&negative, 1), GFLV2_E_IMAGE);
  const uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3};
  const gflv2_image corrupt = {junk, 0, 0, 0, 0, sizeof(junk)};
  EXPECT_EQ(detect(&corrupt, 1), GFLV2_E_IMAGE);
  const gflv2_image mixed[2] = {image, corrupt};
  EXPECT_EQ(detect(mixed, 2), GFLV2_E_IMAGE);
  EXPECT_NE(std::string(gflv2_last_error()).find("image 1"), std::string::npos) << gflv2_last_error();
  EXPECT_EQ(gflv2_detector_detect(nullptr, &image, 1, nullptr), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_EQ(detect(&image, 1), GFLV2_OK);  // still usable after the failures
}

TEST_F(CApiDetect, LastErrorIsPerThread) {
  gflv2_image four = pixels();
  four.channels = 4;
  EXPECT_EQ(detect(&four, 1), GFLV2_E_IMAGE);
  std::string other;
  std::thread([&] { other = gflv2_last_error(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_NE(std::string(gflv2_last_error()), "");
}

TEST_F(CApiDetect, ClonesRunInParallel) {
  const gflv2_image image = pixels();
  gflv2_result* reference = nullptr;
  ASSERT_EQ(gflv2_detector_detect(det_, &image, 1, &reference), GFLV2_OK);
  // every clone made before any thread starts: a failed ASSERT returns from the test, which must not leave
  // joinable threads behind (std::terminate)
  std::vector<gflv2_detector*> clones(4, nullptr);
  for (gflv2_detector*& clone : clones) {
    const gflv2_status status = gflv2_detector_clone(det_, &clone);
    if (status != GFLV2_OK) {
      for (gflv2_detector* made : clones) gflv2_detector_destroy(made);
      gflv2_result_release(reference);
      FAIL() << "clone: " << gflv2_last_error();
    }
  }
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t, clone = clones[t]] {
      for (int i = 0; i < 5; ++i) {
        gflv2_result* r = nullptr;
        if (gflv2_detector_detect(clone, &image, 1, &r) != GFLV2_OK) continue;
        const size_t n = gflv2_result_count(r, 0);
        bool same = n == gflv2_result_count(reference, 0);
        for (size_t j = 0; same && j < n; ++j)
          same = gflv2_result_detections(r, 0)[j].score == gflv2_result_detections(reference, 0)[j].score;
        ok[t] += same;
        gflv2_result_release(r);
      }
      gflv2_detector_destroy(clone);
    });
  }
  for (auto& th : threads) th.join();
  gflv2_result_release(reference);
  EXPECT_EQ(ok, std::vector<int>(4, 5));
}

TEST_F(CApiDetect, SettingsAreBoundedByTheInputSizeRule) {
  gflv2_settings settings{sizeof(gflv2_settings)};
  ASSERT_EQ(gflv2_detector_get_settings(det_, &settings), GFLV2_OK);
  gflv2_settings huge = settings;
  huge.test_scale[0] = huge.test_scale[1] = 100000;  // accepted before, then a multi-GB allocation or an overflow
  EXPECT_EQ(gflv2_detector_set_settings(det_, &huge), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gflv2_last_error()).find("8192"), std::string::npos) << gflv2_last_error();
  gflv2_settings unchanged{sizeof(gflv2_settings)};
  ASSERT_EQ(gflv2_detector_get_settings(det_, &unchanged), GFLV2_OK);
  EXPECT_EQ(unchanged.test_scale[0], settings.test_scale[0]);  // a refused setting changes nothing
  const gflv2_image image = pixels();
  EXPECT_EQ(detect(&image, 1), GFLV2_OK);
}

// The struct of an older header: struct_size and the fields before score_thr; the rest keeps the detector's values.
struct SettingsV2Prefix {
  uint32_t struct_size;
  int32_t test_scale[2];
};

TEST_F(CApiDetect, VersionedStructsReadOnlyTheCallersBytes) {
  gflv2_settings full{sizeof(gflv2_settings)};
  ASSERT_EQ(gflv2_detector_get_settings(det_, &full), GFLV2_OK);
  EXPECT_EQ(full.struct_size, sizeof(gflv2_settings));
  EXPECT_GT(full.score_thr, 0.0);
  // an older, smaller struct: only its bytes are written and read
  alignas(gflv2_settings) unsigned char buffer[sizeof(gflv2_settings)];
  std::memset(buffer, 0xAB, sizeof buffer);
  auto* old = reinterpret_cast<SettingsV2Prefix*>(buffer);
  old->struct_size = sizeof(SettingsV2Prefix);
  ASSERT_EQ(gflv2_detector_get_settings(det_, reinterpret_cast<gflv2_settings*>(buffer)), GFLV2_OK);
  EXPECT_EQ(old->test_scale[0], full.test_scale[0]);
  EXPECT_EQ(buffer[sizeof(SettingsV2Prefix)], 0xAB);  // nothing written past the caller's struct
  old->test_scale[0] = old->test_scale[1] = 640;
  ASSERT_EQ(gflv2_detector_set_settings(det_, reinterpret_cast<gflv2_settings*>(buffer)), GFLV2_OK) << gflv2_last_error();
  gflv2_settings after{sizeof(gflv2_settings)};
  ASSERT_EQ(gflv2_detector_get_settings(det_, &after), GFLV2_OK);
  EXPECT_EQ(after.test_scale[0], 640);
  EXPECT_EQ(after.score_thr, full.score_thr);  // the 0xAB bytes past the caller's struct were not read
  EXPECT_EQ(after.max_per_img, full.max_per_img);
  // unset or too large (a newer header) is refused with a message naming the struct
  gflv2_settings unset{};
  EXPECT_EQ(gflv2_detector_get_settings(det_, &unset), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gflv2_last_error()).find("gflv2_settings.struct_size is 0"), std::string::npos) << gflv2_last_error();
  gflv2_settings newer = full;
  newer.struct_size = sizeof(gflv2_settings) + 8;
  EXPECT_EQ(gflv2_detector_set_settings(det_, &newer), GFLV2_E_INVALID_ARGUMENT);
  gflv2_options options = gflv2_options_default();
  EXPECT_EQ(options.struct_size, sizeof(gflv2_options));
  options.struct_size = 0;
  gflv2_detector* det = reinterpret_cast<gflv2_detector*>(0x1);
  EXPECT_EQ(gflv2_detector_create(model("tiny_prenms.onnx").c_str(), &options, &det), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_EQ(det, nullptr);
  EXPECT_NE(std::string(gflv2_last_error()).find("gflv2_options.struct_size"), std::string::npos) << gflv2_last_error();
  EXPECT_STREQ(gflv2_version(), GFLV2_TEST_VERSION);
}

TEST_F(CApiDetect, PreprocessReportsTheShapeThenFills) {
  const gflv2_image image = pixels();
  int64_t shape[4] = {};
  ASSERT_EQ(gflv2_detector_preprocess(det_, &image, 1, nullptr, 0, shape), GFLV2_OK);
  EXPECT_EQ(shape[0], 1);
  EXPECT_EQ(shape[2] % 32, 0);
  std::vector<float> buffer(static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]));
  EXPECT_EQ(gflv2_detector_preprocess(det_, &image, 1, buffer.data(), buffer.size() - 1, shape), GFLV2_E_INVALID_ARGUMENT);
  EXPECT_EQ(gflv2_detector_preprocess(det_, &image, 1, buffer.data(), buffer.size(), shape), GFLV2_OK);
}

}  // namespace
