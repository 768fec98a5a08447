// THE preprocessing of the contract (docs/contract.md, "The resize and letterbox rule"), equal to
// gflv2_deploy/data/preprocess.py: keep-ratio bilinear resize on uint8 (cv::resize INTER_LINEAR), the
// letterbox bound for a fixed input_hw, BGR -> RGB, (x - mean) / std through per-channel tables rounded
// once from double, top-left placement, padding with pad_value to input_hw or to a multiple of pad_divisor.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "contract.hpp"

namespace gflv2 {

// Geometry of one picture in the batch; sizes are (height, width) in pixels.
struct ImageGeometry {
  int ori_h = 0, ori_w = 0;  // as given
  int new_h = 0, new_w = 0;  // after the resize (img_shape)
  float scale_x = 1.f;       // float32(new_w / ori_w), as numpy's scale_factor
  float scale_y = 1.f;       // float32(new_h / ori_h)
};

// (new_h, new_w) of an h x w picture; gflv2::Error(kImage) for a non-positive size or one resized to 0 pixels.
std::array<int, 2> rescale_size(int height, int width, const PreprocessingSpec& spec);

struct BatchShape {
  int64_t n = 0, h = 0, w = 0;  // the images tensor is n x 3 x h x w (n x h x w x 3 for uint8 pictures)
};

class Preprocessor {
 public:
  explicit Preprocessor(const PreprocessingSpec& spec);

  // Geometry of every picture and the batch shape (checks sizes; no pixel work).
  BatchShape plan(const std::vector<cv::Mat>& images, std::vector<ImageGeometry>& geometry) const;

  // Write the batch planned by plan() into `out` (n * 3 * h * w floats, caller's reused buffer).
  // images: 8-bit BGR (CV_8UC3).
  void run(const std::vector<cv::Mat>& images, const std::vector<ImageGeometry>& geometry, const BatchShape& shape,
           float* out);

  // For a graph with input_format uint8_nhwc_bgr: the same resize, the BGR pixels placed top-left in `out`
  // (n * h * w * 3 bytes, n x h x w x 3), zero elsewhere; the graph normalises them itself.
  void run_pixels(const std::vector<cv::Mat>& images, const std::vector<ImageGeometry>& geometry,
                  const BatchShape& shape, uint8_t* out);

 private:
  PreprocessingSpec spec_;
  std::array<std::array<float, 256>, 3> lut_{};  // per RGB channel: float32((v - mean) / std) from double
  cv::Mat resized_;                             // reused resize target
};

}  // namespace gflv2
