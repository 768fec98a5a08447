// gflv2::Detector on the detecting tiny model (make_test_models.py) and the tiny50 photos: the three graph
// forms, clone() across threads, refusals.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "gflv2/detector.hpp"
#include "image.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

std::vector<cv::Mat> load_photos(std::size_t n) {
  std::vector<cv::Mat> images;
  for (const auto& f : testing::photos(n)) images.push_back(cv::imread(f, cv::IMREAD_COLOR));
  return images;
}

ImageView view(const cv::Mat& m) { return ImageView::bgr(m.data, m.rows, m.cols, m.step); }

bool same(const Detections& a, const Detections& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].x1 != b[i].x1 || a[i].y1 != b[i].y1 || a[i].x2 != b[i].x2 || a[i].y2 != b[i].y2 ||
        a[i].score != b[i].score || a[i].label != b[i].label)
      return false;
  }
  return true;
}

Status status_of(const std::string& path) {
  try {
    Detector d(path);
  } catch (const Error& e) {
    return e.status();
  }
  return static_cast<Status>(0);
}

TEST(Detector, DetectsOnPhotosWithEveryGraphForm) {
  const auto photos = load_photos(4);
  ASSERT_EQ(photos.size(), 4u) << "tiny50 photos not found";
  for (const char* name : {"tiny_prenms.onnx", "tiny_e2e.onnx", "tiny_static.onnx"}) {
    DetectorOptions options;
    options.intra_op_threads = 1;
    Detector detector(testing::model(name), options);
    EXPECT_EQ(detector.class_names().size(), 6u);
    std::size_t total = 0;
    for (const auto& photo : photos) {
      const Detections dets = detector.detect(view(photo));
      total += dets.size();
      EXPECT_LE(dets.size(), 100u);
      for (std::size_t i = 1; i < dets.size(); ++i) EXPECT_GE(dets[i - 1].score, dets[i].score);
      for (const auto& d : dets) {
        EXPECT_GE(d.label, 0);
        EXPECT_LT(d.label, 6);
        EXPECT_GT(d.score, 0.05f);
        EXPECT_GE(d.x1, -0.01f);  // clamped to img_shape, then scaled
        EXPECT_LE(d.x2, photo.cols * 1.01f);
      }
    }
    EXPECT_GT(total, 0u) << name;
    const Timings t = detector.last_timings();
    EXPECT_GT(t.inference_ms, 0.0);
  }
}

TEST(Detector, Uint8InputGraphGivesTheFloatGraphsDetectionsExactly) {
  // tiny_u8.onnx normalises in its first nodes, bit for bit as the float preprocessing: identical results
  const auto photos = load_photos(3);
  ASSERT_EQ(photos.size(), 3u);
  Detector f32(testing::model("tiny_prenms.onnx"));
  Detector u8(testing::model("tiny_u8.onnx"));
  std::vector<ImageView> views;
  for (const auto& p : photos) views.push_back(view(p));
  const auto want = f32.detect(views);
  const auto got = u8.detect(views);
  std::size_t total = 0;
  for (std::size_t i = 0; i < views.size(); ++i) {
    EXPECT_TRUE(same(want[i], got[i])) << "photo " << i;
    total += got[i].size();
  }
  EXPECT_GT(total, 0u);
  const InputTensor pixels = u8.preprocess({views[0]});  // n x h x w x 3 pixel values, a quarter of the bytes
  const InputTensor floats = f32.preprocess({views[0]});
  ASSERT_EQ(pixels.shape.size(), 4u);
  EXPECT_EQ(pixels.shape[3], 3);
  EXPECT_EQ(pixels.shape[1], floats.shape[2]);
  EXPECT_EQ(pixels.shape[2], floats.shape[3]);
  const auto raw = u8.infer(pixels.data.data(), pixels.shape, nullptr);
  const auto raw_f32 = f32.infer(floats.data.data(), floats.shape, nullptr);
  ASSERT_EQ(raw.size(), raw_f32.size());
  for (std::size_t i = 0; i < raw.size(); ++i) EXPECT_EQ(raw[i].bytes, raw_f32[i].bytes) << raw[i].name;
  EXPECT_THROW(u8.infer(floats.data.data(), floats.shape, nullptr), Error);  // n x 3 x h x w is not its layout
}

TEST(Detector, BatchOfSameSizePicturesEqualsSingles) {
  // pictures of one size, so that the batch has no extra padding (padding changes activations near the border)
  const auto photos = load_photos(50);
  std::vector<cv::Mat> same_size;
  for (const auto& p : photos)
    if (p.size() == cv::Size(640, 480) && same_size.size() < 3) same_size.push_back(p);
  ASSERT_EQ(same_size.size(), 3u);
  Detector detector(testing::model("tiny_prenms.onnx"));
  std::vector<ImageView> views;
  for (const auto& p : same_size) views.push_back(view(p));
  const auto batched = detector.detect(views);
  for (std::size_t i = 0; i < views.size(); ++i) {
    const auto single = detector.detect(views[i]);
    ASSERT_EQ(single.size(), batched[i].size());
    for (std::size_t j = 0; j < single.size(); ++j) EXPECT_NEAR(single[j].score, batched[i][j].score, 1e-5);
  }
}

TEST(Detector, FourThreadsGiveTheResultsOfOne) {
  const auto photos = load_photos(50);
  ASSERT_EQ(photos.size(), 50u);
  DetectorOptions options;
  options.intra_op_threads = 1;
  Detector detector(testing::model("tiny_prenms.onnx"), options);
  std::vector<Detections> reference;
  for (const auto& p : photos) reference.push_back(detector.detect(view(p)));

  std::vector<std::vector<Detections>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t, clone = detector.clone()]() mutable {
      for (std::size_t i = 0; i < photos.size(); ++i) {
        const std::size_t k = (i + t * 13) % photos.size();  // each thread in its own order
        results[t].resize(photos.size());
        results[t][k] = clone.detect(view(photos[k]));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t)
    for (std::size_t i = 0; i < photos.size(); ++i) EXPECT_TRUE(same(results[t][i], reference[i])) << t << "/" << i;
}

TEST(Detector, LetterboxesPortraitPhotosIntoAFixedInput) {
  cv::Mat portrait(640, 480, CV_8UC3, cv::Scalar(90, 120, 150));
  Detector detector(testing::model("tiny_static.onnx"));
  const InputTensor input = detector.preprocess({view(portrait)});
  EXPECT_EQ(input.shape, (std::vector<int64_t>{1, 3, 256, 384}));
  EXPECT_NO_THROW(detector.detect(view(portrait)));
}

TEST(Detector, RefusesBadModelsWithOneClearError) {
  EXPECT_EQ(status_of(testing::model("missing.onnx")), Status::kFileNotFound);
  const std::string corrupt = testing::models_dir() + "/corrupt.onnx";
  std::ofstream(corrupt) << "this is not an onnx model";
  EXPECT_EQ(status_of(corrupt), Status::kModel);
  EXPECT_EQ(status_of(testing::model("tiny_no_contract.onnx")), Status::kContract);
  try {
    Detector d(testing::model("tiny_newer_contract.onnx"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kContract);
    EXPECT_NE(std::string(e.what()).find("upgrade"), std::string::npos) << e.what();
  }
  // an engine without its manifest; engines with the manifest the Python writer writes (make_test_models.py)
  const std::string engine = testing::models_dir() + "/fake.plan";
  std::ofstream(engine) << "plan";
  std::filesystem::remove(engine + ".json");  // left by an earlier run
  EXPECT_EQ(status_of(engine), Status::kFileNotFound);
  EXPECT_EQ(status_of(testing::model("tiny_trt10.plan")), Status::kUnsupported);  // no TensorRT on this machine
  std::stringstream text;
  text << std::ifstream(testing::model("tiny_trt10.plan.json")).rdbuf();
  const nlohmann::json written = nlohmann::json::parse(text.str());
  nlohmann::json other_major = written;
  other_major["runtime"]["major"] = 8;
  std::ofstream(engine + ".json") << other_major.dump();
  EXPECT_EQ(status_of(engine), Status::kEngineMismatch);
  // a plugin library changed since the build is refused before anything is loaded (the manifest names a copy)
  const std::string changed = testing::models_dir() + "/changed_plugin.so";
  std::ofstream(changed) << "not the library the engine was built with";
  nlohmann::json changed_plugin = written;
  changed_plugin["plugin_libraries"][0]["path"] = changed;
  std::ofstream(engine + ".json") << changed_plugin.dump();
  try {
    Detector d(engine);
    FAIL() << "a changed plugin library was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kEngineMismatch) << e.what();
    EXPECT_NE(std::string(e.what()).find("changed_plugin.so changed since the engine was built"), std::string::npos) << e.what();
  }
}

TEST(Detector, RefusesDevicesItCannotUse) {
  auto status = [](const std::string& model, const std::string& device) {
    DetectorOptions options;
    options.device = device;
    try {
      Detector d(testing::model(model), options);
    } catch (const Error& e) {
      return e.status();
    }
    return static_cast<Status>(0);
  };
  for (const char* device : {"cuda:abc", "cuda:", "cuda:1x", "gpu", "CPU"}) {
    EXPECT_EQ(status("tiny_prenms.onnx", device), Status::kInvalidArgument) << device;
  }
  EXPECT_EQ(status("tiny_prenms.onnx", ""), static_cast<Status>(0));  // the default: cpu for an ONNX
  EXPECT_EQ(status("tiny_trt10.plan", "cpu"), Status::kInvalidArgument);  // an engine never runs on the CPU
  EXPECT_EQ(status("tiny_trt10.plan", "cuda:x"), Status::kInvalidArgument);
}

TEST(Detector, RefusesBadPictures) {
  Detector detector(testing::model("tiny_prenms.onnx"));
  const uint8_t pixels[4 * 4 * 4] = {};
  auto status = [&](const ImageView& v) {
    try {
      detector.detect(v);
    } catch (const Error& e) {
      return e.status();
    }
    return static_cast<Status>(0);
  };
  EXPECT_EQ(status(ImageView{}), Status::kImage);
  EXPECT_EQ(status(ImageView{pixels, 0, 4, 3, 0, 0}), Status::kImage);
  EXPECT_EQ(status(ImageView{pixels, 4, 4, 4, 0, 0}), Status::kImage);
  EXPECT_EQ(status(ImageView{pixels, 4, 4, 1, 0, 0}), Status::kImage);
  EXPECT_EQ(status(ImageView{pixels, 4, 4, 3, 5, 0}), Status::kImage);  // stride < width * 3
  EXPECT_EQ(status(ImageView::encoded(pixels, sizeof(pixels))), Status::kImage);
  EXPECT_THROW(detector.detect(std::vector<ImageView>{}), Error);
}

Status error_status(const std::function<void()>& body, std::string* message = nullptr) {
  try {
    body();
  } catch (const Error& e) {
    if (message != nullptr) *message = e.what();
    return e.status();
  }
  return static_cast<Status>(0);
}

TEST(Detector, SettingsAndTensorSizesFollowTheInputSizeRule) {
  Detector detector(testing::model("tiny_prenms.onnx"));
  Settings s = detector.settings();
  s.test_scale = {100000, 100000};  // used to be accepted, then overflowed / allocated ~10 GB
  std::string message;
  EXPECT_EQ(error_status([&] { detector.set_settings(s); }, &message), Status::kInvalidArgument);
  EXPECT_NE(message.find("8192"), std::string::npos) << message;
  s.test_scale = {8192, 8192};
  EXPECT_NO_THROW(detector.set_settings(s));
  const float pixel = 0.f;
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{1, 3, 100000, 32}, std::vector<int64_t>{1, 3, 33, 32},
                                            std::vector<int64_t>{1, 3, 32, 1LL << 40}, std::vector<int64_t>{1LL << 40, 3, 32, 32}}) {
    EXPECT_EQ(error_status([&] { detector.infer(&pixel, shape, nullptr); }), Status::kInvalidArgument) << shape[0] << "x" << shape[2];
  }
}

TEST(Detector, PluginNmsGraphNeedsItsOnnxRuntimeLibrary) {
  const char* previous = std::getenv("GFLV2_NMS_ORT_LIBRARY");
  const std::string saved = previous != nullptr ? previous : "";
  unsetenv("GFLV2_NMS_ORT_LIBRARY");
  std::string message;
  EXPECT_EQ(error_status([&] { Detector d(testing::model("tiny_plugin.onnx")); }, &message), Status::kUnsupported);
  EXPECT_NE(message.find("GFLV2NMS_TRT"), std::string::npos) << message;
  EXPECT_NE(message.find("GFLV2_NMS_ORT_LIBRARY"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  setenv("GFLV2_NMS_ORT_LIBRARY", "/nonexistent/libgflv2_nms_ort.so", 1);
  EXPECT_EQ(error_status([&] { Detector d(testing::model("tiny_plugin.onnx")); }), Status::kFileNotFound);
  ASSERT_TRUE(std::filesystem::is_regular_file(GFLV2_TEST_NMS_ORT_LIBRARY))
      << GFLV2_TEST_NMS_ORT_LIBRARY << " missing: build plugins/gflv2_nms first (scripts/build_cpp.sh does)";
  setenv("GFLV2_NMS_ORT_LIBRARY", GFLV2_TEST_NMS_ORT_LIBRARY, 1);
  DetectorOptions options;
  options.intra_op_threads = 1;
  Detector plugin(testing::model("tiny_plugin.onnx"), options);
  Detector host(testing::model("tiny_prenms.onnx"), options);  // the same network with the NMS in C++
  std::size_t total = 0;
  for (const auto& photo : load_photos(4)) {
    const Detections got = plugin.detect(view(photo));
    total += got.size();
    EXPECT_TRUE(same(got, host.detect(view(photo))));  // the plugin's CPU twin is exactly the reference NMS
  }
  EXPECT_GT(total, 0u);
  if (saved.empty()) {
    unsetenv("GFLV2_NMS_ORT_LIBRARY");
  } else {
    setenv("GFLV2_NMS_ORT_LIBRARY", saved.c_str(), 1);
  }
}

TEST(Detector, TruncatedJpegsAreRefusedLikePython) {
  std::string jpeg;
  {
    std::ifstream in(testing::photos(1).at(0), std::ios::binary);
    jpeg.assign(std::istreambuf_iterator<char>(in), {});
  }
  Detector detector(testing::model("tiny_prenms.onnx"));
  auto status = [&](const std::string& bytes, std::string* message) {
    return error_status([&] { detector.detect(ImageView::encoded(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())); },
                        message);
  };
  std::string message;
  EXPECT_EQ(status(jpeg, &message), static_cast<Status>(0)) << message;
  for (std::size_t keep : {jpeg.size() - 2, jpeg.size() - 500, jpeg.size() / 2}) {
    // OpenCV 4 decodes these into a partly grey picture (and used to be detected on); Python refuses them
    EXPECT_EQ(status(jpeg.substr(0, keep), &message), Status::kImage) << keep;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  }
}

TEST(Detector, JpegTruncationRuleOfImageIo) {
  // gflv2_deploy/data/image_io.py _jpeg_is_truncated, case by case
  auto truncated = [](std::vector<uint8_t> b) { return jpeg_is_truncated(b.data(), b.size()); };
  EXPECT_FALSE(truncated({0x89, 'P', 'N', 'G'}));  // not a JPEG: left to the decoder
  EXPECT_TRUE(truncated({0xFF, 0xD8}));              // SOI only
  EXPECT_FALSE(truncated({0xFF, 0xD8, 0xFF, 0xD9}));  // end of image before any scan
  // an APP1 segment whose payload holds FF D9 (an EXIF thumbnail's end) is skipped by its length
  const std::vector<uint8_t> head{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD9, 0x00, 0x00,
                                  0xFF, 0xDA, 0x00, 0x04, 0x01, 0x02, 0x12, 0x34, 0xFF, 0x00, 0x56};
  EXPECT_TRUE(truncated(head));  // scan data without FF D9 after it
  std::vector<uint8_t> whole = head;
  whole.insert(whole.end(), {0xFF, 0xD9});
  EXPECT_FALSE(truncated(whole));
  EXPECT_TRUE(truncated({0xFF, 0xD8, 0xFF, 0xE0, 0x00}));  // a length cut in half
  EXPECT_FALSE(truncated({0xFF, 0xD8, 0x12, 0x34}));       // not a marker where one must be: the decoder judges
}

}  // namespace
}  // namespace gflv2
