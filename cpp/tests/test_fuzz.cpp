// A bounded fuzz loop: mutated JPEG bytes through the C ABI (decode + detect) and mutated contract / manifest
// JSON through the parsers (run it under the sanitizer build too). Beyond "no crash", each outcome is checked:
// a picture is detected exactly when OpenCV decodes it and the truncation rule accepts it, its detections meet the
// contract's invariants and repeat bit for bit; a refusal is GFLV2_E_IMAGE / gflv2::Error with one line; what a
// parser accepts meets the contract's bounds and reads back. GFLV2_FUZZ_ITERATIONS sets the number of mutations
// per target (default 300).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

#include <opencv2/imgcodecs.hpp>

#include "contract.hpp"
#include "gflv2/error.hpp"
#include "gflv2/gflv2.h"
#include "image.hpp"
#include "manifest.hpp"
#include "test_support.hpp"

namespace {

int iterations() {
  const char* env = std::getenv("GFLV2_FUZZ_ITERATIONS");
  return env ? std::max(1, std::atoi(env)) : 300;
}

// Flip, overwrite, insert, delete or truncate a few bytes.
std::string mutate(std::string s, std::mt19937& rng) {
  std::uniform_int_distribution<int> op(0, 4), count(1, 8), byte(0, 255);
  const int n = count(rng);
  for (int k = 0; k < n && !s.empty(); ++k) {
    std::uniform_int_distribution<std::size_t> pos(0, s.size() - 1);
    switch (op(rng)) {
      case 0: s[pos(rng)] ^= static_cast<char>(1 << (byte(rng) % 8)); break;
      case 1: s[pos(rng)] = static_cast<char>(byte(rng)); break;
      case 2: s.insert(pos(rng), 1, "{}[]\",:0-e9"[byte(rng) % 11]); break;
      case 3: s.erase(pos(rng), 1 + byte(rng) % 16); break;
      case 4: s.resize(pos(rng)); break;
    }
  }
  return s;
}

// Invariants every detection list of the tiny model must meet (its contract: 6 classes, score_thr 0.05, 100 max).
void expect_valid(const gflv2_result* result, int iteration) {
  const size_t n = gflv2_result_count(result, 0);
  EXPECT_LE(n, 100u) << iteration;
  const gflv2_detection* d = gflv2_result_detections(result, 0);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_TRUE(d[i].score > 0.05f && d[i].score <= 1.f) << iteration << ": score " << d[i].score;
    EXPECT_TRUE(i == 0 || d[i - 1].score >= d[i].score) << iteration;
    EXPECT_TRUE(d[i].label >= 0 && d[i].label < 6) << iteration << ": label " << d[i].label;
    EXPECT_TRUE(std::isfinite(d[i].x1) && std::isfinite(d[i].y1) && std::isfinite(d[i].x2) && std::isfinite(d[i].y2))
        << iteration;
  }
}

bool same_detections(const gflv2_result* a, const gflv2_result* b) {
  const size_t n = gflv2_result_count(a, 0);
  if (n != gflv2_result_count(b, 0)) return false;
  return n == 0 || std::memcmp(gflv2_result_detections(a, 0), gflv2_result_detections(b, 0), n * sizeof(gflv2_detection)) == 0;
}

TEST(Fuzz, MutatedPicturesAreDetectedOrRefusedByTheRule) {
  gflv2_detector* det = nullptr;
  gflv2_options options = gflv2_options_default();
  options.intra_op_threads = 1;
  ASSERT_EQ(gflv2_detector_create(gflv2::testing::model("tiny_prenms.onnx").c_str(), &options, &det), GFLV2_OK);
  std::string jpeg;
  {
    std::ifstream in(gflv2::testing::photos(1).at(0), std::ios::binary);
    jpeg.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937 rng(1234);
  int decoded = 0, refused = 0, repeated = 0;
  for (int i = 0; i < iterations(); ++i) {
    const std::string bytes = mutate(jpeg, rng);
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    const gflv2_image image = {data, 0, 0, 0, 0, static_cast<int64_t>(bytes.size())};
    // the oracle: OpenCV decodes it and it is not a truncated JPEG (the rule of image_io.py)
    const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<uint8_t*>(data));
    bool readable = false;
    try {
      readable = !cv::imdecode(raw, cv::IMREAD_COLOR).empty() && !gflv2::jpeg_is_truncated(data, bytes.size());
    } catch (const cv::Exception&) {
    }
    gflv2_result* result = nullptr;
    const gflv2_status s = gflv2_detector_detect(det, &image, 1, &result);
    EXPECT_EQ(s == GFLV2_OK, readable) << "mutation " << i << ": " << gflv2_last_error();
    if (s == GFLV2_OK) {
      ++decoded;
      expect_valid(result, i);
      if (decoded % 25 == 1) {  // the same bytes again: the same detections, bit for bit
        gflv2_result* again = nullptr;
        ASSERT_EQ(gflv2_detector_detect(det, &image, 1, &again), GFLV2_OK);
        EXPECT_TRUE(same_detections(result, again)) << "mutation " << i;
        gflv2_result_release(again);
        ++repeated;
      }
      gflv2_result_release(result);
    } else {
      ++refused;
      EXPECT_EQ(s, GFLV2_E_IMAGE) << gflv2_last_error();
      const std::string message = gflv2_last_error();
      EXPECT_NE(message.find("image 0"), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
  gflv2_detector_destroy(det);
  EXPECT_GT(decoded, 0);  // the mutations reach the network, and the refusals happen: both paths ran
  EXPECT_GT(refused, 0);
  std::cout << "[ fuzz ] pictures: " << iterations() << " mutations, " << decoded << " decoded (" << repeated
            << " repeated), " << refused << " refused\n";
}

// Parse each mutation; `check` asserts the invariants of what was accepted. A refusal must be gflv2::Error of
// `status`, one line naming the source.
template <typename Parse, typename Check>
void fuzz_json(const std::string& seed, Parse parse, Check check, gflv2::Status status, const char* what) {
  std::mt19937 rng(99);
  int accepted = 0, refused = 0;
  for (int i = 0; i < iterations() * 10; ++i) {
    const std::string text = mutate(seed, rng);
    try {
      check(parse(text));
      ++accepted;
    } catch (const gflv2::Error& e) {
      ++refused;
      const std::string message = e.what();
      EXPECT_TRUE(e.status() == status || e.status() == gflv2::Status::kContract) << message;
      EXPECT_NE(message.find("fuzz"), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 0);
  std::cout << "[ fuzz ] " << what << ": " << accepted + refused << " mutations, " << accepted << " accepted, "
            << refused << " refused\n";
}

void check_contract(const gflv2::Contract& c) {
  EXPECT_FALSE(c.class_names.empty());
  const gflv2::TensorSpec* images = c.find_input("images");
  ASSERT_NE(images, nullptr);
  EXPECT_EQ(images->dims.size(), 4u);
  for (int side : c.preprocessing.test_scale) EXPECT_TRUE(side >= 1 && side <= gflv2::kMaxInputSide) << side;
  for (double s : c.preprocessing.std) EXPECT_GT(s, 0.0);
  if (c.preprocessing.input_hw) {
    EXPECT_EQ(gflv2::input_hw_problem((*c.preprocessing.input_hw)[0], (*c.preprocessing.input_hw)[1]), "");
  }
  EXPECT_GE(c.postprocessing.max_per_img, 1);
  const gflv2::Contract again = gflv2::parse_contract(c.json, "fuzz (re-read)");  // what was accepted reads back
  EXPECT_EQ(again.class_names, c.class_names);
  EXPECT_EQ(again.preprocessing.test_scale, c.preprocessing.test_scale);
}

TEST(Fuzz, MutatedContractsAndManifestsAreReadOrRefusedWithOneLine) {
  const std::string contract = gflv2::testing::sample_contract().dump(1);
  fuzz_json(contract, [](const std::string& s) { return gflv2::parse_contract(s, "fuzz"); }, check_contract,
            gflv2::Status::kContract, "contracts");
  nlohmann::json manifest = {{"format", "gflv2-deploy/engine-manifest"}, {"format_version", 2},
                             {"runtime", {{"flavour", "tensorrt"}, {"version", "10.16.0"}, {"major", 10}}},
                             {"target", {{"kind", "gpu"}, {"compute_capability", "9.0"}}},
                             {"build", {{"plugins_initialised", true}}},
                             {"plugin_libraries", {{{"path", "a.so"}, {"sha256", std::string(64, 'e')}, {"bytes", 12}}}},
                             {"cuda", {{"runtime_version", "13.0"}}},
                             {"contract", gflv2::testing::sample_contract()}};
  auto check_manifest = [](const gflv2::EngineManifest& m) {
    for (const gflv2::PluginLibrary& lib : m.plugin_libraries) {
      EXPECT_EQ(lib.sha256.size(), 64u);
      EXPECT_FALSE(lib.path.empty());
    }
    check_contract(m.contract);
  };
  fuzz_json(manifest.dump(1), [](const std::string& s) { return gflv2::parse_manifest(s, "fuzz.json"); }, check_manifest,
            gflv2::Status::kModel, "manifests");
}

}  // namespace
