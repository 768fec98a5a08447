// gflv2::Detector on the detecting tiny model (make_test_models.py) and the tiny50 photos: the three graph
// forms, clone() across threads, refusals.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <opencv2/imgcodecs.hpp>

#include "gflv2/detector.hpp"
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
  // an engine without its manifest, and one with a manifest but no TensorRT on this machine
  const std::string engine = testing::models_dir() + "/fake.plan";
  std::ofstream(engine) << "plan";
  std::filesystem::remove(engine + ".json");  // left by an earlier run
  EXPECT_EQ(status_of(engine), Status::kFileNotFound);
  nlohmann::json manifest = {{"format", "gflv2-deploy/engine-manifest"}, {"format_version", 2},
                             {"runtime", {{"flavour", "tensorrt"}, {"version", "10.16.0"}, {"major", 10}}},
                             {"target", {{"kind", "gpu"}, {"compute_capability", "9.0"}}},
                             {"contract", testing::sample_contract()}};
  std::ofstream(engine + ".json") << manifest.dump();
  EXPECT_EQ(status_of(engine), Status::kUnsupported);
  manifest["runtime"]["major"] = 8;
  std::ofstream(engine + ".json") << manifest.dump();
  EXPECT_EQ(status_of(engine), Status::kEngineMismatch);
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

}  // namespace
}  // namespace gflv2
