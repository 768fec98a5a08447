#include "preprocess.hpp"

#include <algorithm>
#include <string>

#include <opencv2/imgproc.hpp>

#include "gflv2/error.hpp"

namespace gflv2 {
namespace {

int64_t round_up(int64_t value, int64_t divisor) { return (value + divisor - 1) / divisor * divisor; }

}  // namespace

std::array<int, 2> rescale_size(int height, int width, const PreprocessingSpec& spec) {
  if (height <= 0 || width <= 0) {
    throw Error(Status::kImage, "cannot resize an image of size " + std::to_string(height) + " x " +
                                    std::to_string(width) + ": both sides must be positive");
  }
  const double long_bound = std::max(spec.test_scale[0], spec.test_scale[1]);
  const double short_bound = std::min(spec.test_scale[0], spec.test_scale[1]);
  const double h = height, w = width;
  double s = std::min(long_bound / std::max(h, w), short_bound / std::min(h, w));
  if (spec.input_hw) {  // the letterbox rule: the picture always fits the fixed input
    s = std::min({s, (*spec.input_hw)[0] / h, (*spec.input_hw)[1] / w});
  }
  int new_h = static_cast<int>(h * s + 0.5);
  int new_w = static_cast<int>(w * s + 0.5);
  if (spec.input_hw) {  // h * (H / h) + 0.5 never rounds above H; kept as a guard against rounding surprises
    new_h = std::min(new_h, (*spec.input_hw)[0]);
    new_w = std::min(new_w, (*spec.input_hw)[1]);
  }
  if (new_h == 0 || new_w == 0) {
    throw Error(Status::kImage, "image of size " + std::to_string(height) + " x " + std::to_string(width) +
                                    " is too elongated: resizing it leaves a side of 0 pixels");
  }
  return {new_h, new_w};
}

Preprocessor::Preprocessor(const PreprocessingSpec& spec) : spec_(spec) {
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      lut_[c][v] = static_cast<float>((static_cast<double>(v) - spec.mean[c]) / spec.std[c]);
    }
  }
}

BatchShape Preprocessor::plan(const std::vector<cv::Mat>& images, std::vector<ImageGeometry>& geometry) const {
  if (images.empty()) throw Error(Status::kInvalidArgument, "detect needs at least one image, got none");
  geometry.resize(images.size());
  int64_t need_h = 0, need_w = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const cv::Mat& image = images[i];
    if (image.empty() || image.type() != CV_8UC3) {
      throw Error(Status::kImage, "image " + std::to_string(i) + " must be a non-empty 8-bit BGR picture with 3 channels");
    }
    const auto [new_h, new_w] = rescale_size(image.rows, image.cols, spec_);
    ImageGeometry& g = geometry[i];
    g.ori_h = image.rows;
    g.ori_w = image.cols;
    g.new_h = new_h;
    g.new_w = new_w;
    g.scale_x = static_cast<float>(static_cast<double>(new_w) / image.cols);
    g.scale_y = static_cast<float>(static_cast<double>(new_h) / image.rows);
    need_h = std::max<int64_t>(need_h, new_h);
    need_w = std::max<int64_t>(need_w, new_w);
  }
  BatchShape shape;
  shape.n = static_cast<int64_t>(images.size());
  if (spec_.input_hw) {
    shape.h = (*spec_.input_hw)[0];
    shape.w = (*spec_.input_hw)[1];
  } else {
    shape.h = round_up(need_h, spec_.pad_divisor);
    shape.w = round_up(need_w, spec_.pad_divisor);
  }
  // The contract and the settings bound test_scale and pad_divisor; this keeps any combination of them inside the
  // one size rule (spec.input_hw_problem's bound) before a buffer is sized from it.
  if (shape.h > kMaxInputSide || shape.w > kMaxInputSide) {
    throw Error(Status::kInvalidArgument, "the pictures would make a network input of " + std::to_string(shape.h) + "x" +
                                              std::to_string(shape.w) + ", over the limit of " +
                                              std::to_string(kMaxInputSide) + " pixels a side: lower test_scale");
  }
  if (shape.n > kMaxInputElements / (3 * shape.h * shape.w)) {
    throw Error(Status::kInvalidArgument, "a batch of " + std::to_string(shape.n) + " pictures at " + std::to_string(shape.h) +
                                              "x" + std::to_string(shape.w) + " is over the limit of " +
                                              std::to_string(kMaxInputElements) + " input elements: detect in smaller batches");
  }
  return shape;
}

void Preprocessor::run(const std::vector<cv::Mat>& images, const std::vector<ImageGeometry>& geometry,
                       const BatchShape& shape, float* out) {
  const std::size_t plane = static_cast<std::size_t>(shape.h * shape.w);
  const float pad = static_cast<float>(spec_.pad_value);
  for (std::size_t i = 0; i < images.size(); ++i) {
    const ImageGeometry& g = geometry[i];
    const cv::Mat* source = &images[i];
    if (g.new_h != g.ori_h || g.new_w != g.ori_w) {
      cv::resize(images[i], resized_, cv::Size(g.new_w, g.new_h), 0, 0, cv::INTER_LINEAR);
      source = &resized_;
    }
    float* planes[3];
    for (int c = 0; c < 3; ++c) planes[c] = out + (i * 3 + c) * plane;
    const float* lut_r = lut_[0].data();
    const float* lut_g = lut_[1].data();
    const float* lut_b = lut_[2].data();
    for (int y = 0; y < g.new_h; ++y) {
      const uint8_t* px = source->ptr<uint8_t>(y);
      float* r = planes[0] + y * shape.w;
      float* gr = planes[1] + y * shape.w;
      float* b = planes[2] + y * shape.w;
      for (int x = 0; x < g.new_w; ++x, px += 3) {  // BGR in, RGB planes out
        b[x] = lut_b[px[0]];
        gr[x] = lut_g[px[1]];
        r[x] = lut_r[px[2]];
      }
      for (int c = 0; c < 3; ++c) std::fill(planes[c] + y * shape.w + g.new_w, planes[c] + (y + 1) * shape.w, pad);
    }
    for (int c = 0; c < 3; ++c) std::fill(planes[c] + static_cast<std::size_t>(g.new_h) * shape.w, planes[c] + plane, pad);
  }
}

void Preprocessor::run_pixels(const std::vector<cv::Mat>& images, const std::vector<ImageGeometry>& geometry,
                              const BatchShape& shape, uint8_t* out) {
  const std::size_t row_bytes = static_cast<std::size_t>(shape.w) * 3;
  const std::size_t picture_bytes = static_cast<std::size_t>(shape.h) * row_bytes;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const ImageGeometry& g = geometry[i];
    const cv::Mat* source = &images[i];
    if (g.new_h != g.ori_h || g.new_w != g.ori_w) {
      cv::resize(images[i], resized_, cv::Size(g.new_w, g.new_h), 0, 0, cv::INTER_LINEAR);
      source = &resized_;
    }
    uint8_t* picture = out + i * picture_bytes;
    const std::size_t used = static_cast<std::size_t>(g.new_w) * 3;
    for (int y = 0; y < g.new_h; ++y) {  // rows of BGR bytes, as read: no channel split, no normalisation
      std::copy_n(source->ptr<uint8_t>(y), used, picture + y * row_bytes);
      std::fill(picture + y * row_bytes + used, picture + (y + 1) * row_bytes, uint8_t{0});
    }
    std::fill(picture + static_cast<std::size_t>(g.new_h) * row_bytes, picture + picture_bytes, uint8_t{0});
  }
}

}  // namespace gflv2
