// Preprocessing against golden values written by gflv2_deploy/data/preprocess.py (opencv-python 5.0) for a
// 5 x 7 synthetic picture, pixel (y, x, c) = (31 y + 17 x + 53 c) mod 256.
#include <gtest/gtest.h>

#include <numeric>

#include <opencv2/imgproc.hpp>

#include "gflv2/error.hpp"
#include "preprocess.hpp"

namespace gflv2 {
namespace {

cv::Mat synthetic() {
  cv::Mat img(5, 7, CV_8UC3);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) img.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>((y * 31 + x * 17 + c * 53) % 256);
  return img;
}

PreprocessingSpec spec(int long_edge, int short_edge) {
  PreprocessingSpec s;
  s.test_scale = {long_edge, short_edge};
  s.mean = {123.675, 116.28, 103.53};
  s.std = {58.395, 57.12, 57.375};
  return s;
}

std::vector<float> run(const PreprocessingSpec& s, const std::vector<cv::Mat>& images, BatchShape& shape,
                       std::vector<ImageGeometry>& geometry) {
  Preprocessor p(s);
  shape = p.plan(images, geometry);
  std::vector<float> out(static_cast<std::size_t>(shape.n * 3 * shape.h * shape.w), -99.f);
  p.run(images, geometry, shape, out.data());
  return out;
}

TEST(Preprocess, RescaleSizeFollowsMmcv) {
  EXPECT_EQ(rescale_size(480, 640, spec(1333, 800)), (std::array<int, 2>{800, 1067}));
  EXPECT_EQ(rescale_size(480, 640, spec(800, 1333)), (std::array<int, 2>{800, 1067}));  // bounds in any order
  EXPECT_EQ(rescale_size(5, 7, spec(1333, 800)), (std::array<int, 2>{800, 1120}));
  EXPECT_THROW(rescale_size(0, 7, spec(1333, 800)), Error);
  EXPECT_THROW(rescale_size(1, 100000, spec(10, 5)), Error);  // too elongated: a side of 0 pixels
}

TEST(Preprocess, LetterboxRuleFitsAFixedInput) {
  PreprocessingSpec s = spec(1333, 800);
  s.input_hw = std::array<int, 2>{32, 64};
  EXPECT_EQ(rescale_size(5, 7, s), (std::array<int, 2>{32, 45}));  // s = min(160, 32/5, 64/7) = 6.4
  s.input_hw = std::array<int, 2>{256, 384};
  EXPECT_EQ(rescale_size(640, 480, s), (std::array<int, 2>{256, 192}));  // portrait into a landscape input
  EXPECT_EQ(rescale_size(480, 640, s), (std::array<int, 2>{256, 341}));
  for (int h = 10; h < 2000; h += 37)
    for (int w = 10; w < 2000; w += 41) {
      const auto hw = rescale_size(h, w, s);
      EXPECT_LE(hw[0], 256);
      EXPECT_LE(hw[1], 384);
    }
  std::vector<ImageGeometry> g;
  BatchShape shape;
  run(s, {cv::Mat(640, 480, CV_8UC3, cv::Scalar(1, 2, 3))}, shape, g);
  EXPECT_EQ(shape.h, 256);
  EXPECT_EQ(shape.w, 384);
}

TEST(Preprocess, WithoutResizeEqualsTheNormalisationTable) {
  BatchShape shape;
  std::vector<ImageGeometry> g;
  const auto out = run(spec(7, 5), {synthetic()}, shape, g);
  ASSERT_EQ(shape.h, 32);
  ASSERT_EQ(shape.w, 32);
  const auto at = [&](int c, int y, int x) { return out[(c * 32 + y) * 32 + x]; };
  EXPECT_EQ(at(0, 0, 0), -0.30268001556396484f);
  EXPECT_EQ(at(0, 0, 1), -0.01155920885503292f);
  EXPECT_EQ(at(0, 0, 2), 0.2795616090297699f);
  EXPECT_EQ(at(2, 4, 6), 2.1345534f);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(at(c, 5, 0), 0.f);  // padding
  EXPECT_EQ(at(1, 31, 31), 0.f);
  EXPECT_EQ(g[0].scale_x, 1.f);
}

TEST(Preprocess, ResizedEqualsPython) {
  BatchShape shape;
  std::vector<ImageGeometry> g;
  const auto out = run(spec(14, 10), {synthetic()}, shape, g);
  ASSERT_EQ(g[0].new_h, 10);
  ASSERT_EQ(g[0].new_w, 14);
  EXPECT_EQ(g[0].scale_x, 2.f);
  const double sums[3] = {70.30567635968328, 85.58823540853336, 22.689324187114835};
  const float row3[3][14] = {
      {0.36518537998199463f, 0.433684378862381f, 0.5706824064254761f, 0.7248051762580872f, 0.8618032336235046f,
       1.0159260034561157f, 1.1529240608215332f, 1.307046890258789f, 1.444044828414917f, 1.5981676578521729f,
       1.7351657152175903f, 1.6152924299240112f, 1.2042982578277588f, 1.0159260034561157f},
      {-0.42507001757621765f, -0.3550420105457306f, -0.21498599648475647f, -0.05742296949028969f, 0.08263305574655533f,
       0.2401960790157318f, 0.38025209307670593f, 0.5378151535987854f, 0.6778711676597595f, 0.8354341983795166f,
       0.9754902124404907f, 1.133053183555603f, 1.2731091976165771f, 1.3606442213058472f},
      {-1.1247059106826782f, -1.0549890995025635f, -0.9155555367469788f, -0.7586928009986877f, -0.619259238243103f,
       -0.462396502494812f, -0.3229629695415497f, -0.16610021889209747f, -0.02666666731238365f, 0.13019607961177826f,
       0.2696296274662018f, 0.4264923632144928f, 0.5659258961677551f, 0.6530718803405762f}};
  for (int c = 0; c < 3; ++c) {
    double sum = 0;
    for (int y = 0; y < 10; ++y)
      for (int x = 0; x < 14; ++x) sum += out[(c * 32 + y) * 32 + x];
    EXPECT_NEAR(sum, sums[c], 1e-4) << "channel " << c;
    for (int x = 0; x < 14; ++x) EXPECT_EQ(out[(c * 32 + 3) * 32 + x], row3[c][x]) << c << "," << x;
  }
}

TEST(Preprocess, BatchPadsToTheLargestAndReusesTheBuffer) {
  Preprocessor p(spec(7, 5));
  std::vector<ImageGeometry> g;
  const std::vector<cv::Mat> images{synthetic(), cv::Mat(40, 3, CV_8UC3, cv::Scalar(10, 20, 30))};
  const BatchShape shape = p.plan(images, g);
  EXPECT_EQ(shape.n, 2);
  EXPECT_EQ(g[1].new_h, 7);  // 40 x 3 -> s = min(7/40, 5/3)
  EXPECT_EQ(g[1].new_w, 1);
  std::vector<float> buffer(static_cast<std::size_t>(shape.n * 3 * shape.h * shape.w), 123.f);  // stale content
  p.run(images, g, shape, buffer.data());
  for (float v : buffer) EXPECT_NE(v, 123.f);  // every element written, padding included
}

TEST(Preprocess, PixelsAreTheResizedBgrRowsOfTheFloatPath) {
  // the uint8-input path: the same resize, no normalisation, BGR bytes n x h x w x 3, zero padding
  PreprocessingSpec s = spec(14, 10);
  s.uint8_input = true;
  Preprocessor p(s);
  std::vector<ImageGeometry> g;
  const std::vector<cv::Mat> images{synthetic(), cv::Mat(40, 3, CV_8UC3, cv::Scalar(10, 20, 30))};
  const BatchShape shape = p.plan(images, g);
  std::vector<uint8_t> out(static_cast<std::size_t>(shape.n * shape.h * shape.w * 3), 77);  // stale content
  p.run_pixels(images, g, shape, out.data());
  cv::Mat resized;
  cv::resize(images[0], resized, cv::Size(g[0].new_w, g[0].new_h), 0, 0, cv::INTER_LINEAR);
  for (int y = 0; y < shape.h; ++y)
    for (int x = 0; x < shape.w; ++x)
      for (int c = 0; c < 3; ++c) {
        const uint8_t want = (y < g[0].new_h && x < g[0].new_w) ? resized.at<cv::Vec3b>(y, x)[c] : 0;
        ASSERT_EQ(out[(y * shape.w + x) * 3 + c], want) << y << "," << x << "," << c;
      }
  const std::size_t second = static_cast<std::size_t>(shape.h * shape.w * 3);
  EXPECT_EQ(out[second + 0], 10);  // picture 2, pixel (0, 0): B G R as given
  EXPECT_EQ(out[second + 2], 30);
  EXPECT_EQ(out[second + 3], 0);   // (0, 1): right of its 1-pixel-wide resize, padding
}

TEST(Preprocess, RefusesEmptyOrWrongPictures) {
  Preprocessor p(spec(1333, 800));
  std::vector<ImageGeometry> g;
  EXPECT_THROW(p.plan({}, g), Error);
  EXPECT_THROW(p.plan({cv::Mat()}, g), Error);
  EXPECT_THROW(p.plan({cv::Mat(4, 4, CV_8UC1)}, g), Error);
  EXPECT_THROW(p.plan({cv::Mat(4, 4, CV_8UC4)}, g), Error);
  EXPECT_THROW(p.plan({cv::Mat(4, 4, CV_32FC3)}, g), Error);
}

TEST(Preprocess, NetworkInputStaysWithinTheSizeRule) {
  PreprocessingSpec s = spec(8192, 8192);
  s.pad_divisor = 5000;  // each bound allowed, together over the limit: 8192 padded to 10000
  std::vector<ImageGeometry> g;
  EXPECT_THROW(Preprocessor(s).plan({cv::Mat(64, 64, CV_8UC3)}, g), Error);
  s.pad_divisor = 32;
  EXPECT_EQ(Preprocessor(s).plan({cv::Mat(64, 64, CV_8UC3)}, g).h, 8192);
  const std::vector<cv::Mat> many(11, cv::Mat(64, 64, CV_8UC3));  // 11 x 3 x 8192 x 8192 floats: over 2^31
  EXPECT_THROW(Preprocessor(s).plan(many, g), Error);
}

}  // namespace
}  // namespace gflv2
