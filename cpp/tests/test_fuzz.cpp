// A bounded fuzz loop: mutated JPEG bytes through the C ABI (decode + detect) and mutated contract / manifest
// JSON through the parsers. Every input must end in a status code or a gflv2::Error, never a crash (run it
// under the sanitizer build). GFLV2_FUZZ_ITERATIONS sets the number of mutations per target (default 300).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "contract.hpp"
#include "gflv2/error.hpp"
#include "gflv2/gflv2.h"
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

TEST(Fuzz, MutatedPicturesNeverCrash) {
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
  int decoded = 0, refused = 0;
  for (int i = 0; i < iterations(); ++i) {
    const std::string bytes = mutate(jpeg, rng);
    const gflv2_image image = {reinterpret_cast<const uint8_t*>(bytes.data()), 0, 0, 0, 0, static_cast<int64_t>(bytes.size())};
    gflv2_result* result = nullptr;
    const gflv2_status s = gflv2_detector_detect(det, &image, 1, &result);
    if (s == GFLV2_OK) {
      ++decoded;
      gflv2_result_release(result);
    } else {
      ASSERT_EQ(s, GFLV2_E_IMAGE) << gflv2_last_error();
      ++refused;
    }
  }
  gflv2_detector_destroy(det);
  std::cout << "[ fuzz ] pictures: " << iterations() << " mutations, " << decoded << " decoded, " << refused << " refused\n";
}

template <typename Parse>
void fuzz_json(const std::string& seed, Parse parse, const char* what) {
  std::mt19937 rng(99);
  int accepted = 0, refused = 0;
  for (int i = 0; i < iterations() * 10; ++i) {
    try {
      parse(mutate(seed, rng));
      ++accepted;
    } catch (const gflv2::Error&) {
      ++refused;
    }
  }
  std::cout << "[ fuzz ] " << what << ": " << accepted + refused << " mutations, " << accepted << " accepted, "
            << refused << " refused\n";
}

TEST(Fuzz, MutatedContractsAndManifestsNeverCrash) {
  const std::string contract = gflv2::testing::sample_contract().dump(1);
  fuzz_json(contract, [](const std::string& s) { gflv2::parse_contract(s, "fuzz"); }, "contracts");
  nlohmann::json manifest = {{"format", "gflv2-deploy/engine-manifest"}, {"format_version", 2},
                             {"runtime", {{"flavour", "tensorrt"}, {"version", "10.16.0"}, {"major", 10}}},
                             {"target", {{"kind", "gpu"}, {"compute_capability", "9.0"}}},
                             {"build", {{"plugins_initialised", true}}}, {"plugin_libraries", {"a.so"}},
                             {"contract", gflv2::testing::sample_contract()}};
  fuzz_json(manifest.dump(1), [](const std::string& s) { gflv2::parse_manifest(s, "fuzz.json"); }, "manifests");
}

}  // namespace
