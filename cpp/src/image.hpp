// Pictures the caller hands in (ImageView) as 8-bit BGR cv::Mat headers: pixels are wrapped without a copy,
// encoded files are decoded with cv::imdecode. gflv2::Error(kImage) for anything else.
#pragma once

#include <vector>

#include <opencv2/core.hpp>

#include "gflv2/detector.hpp"

namespace gflv2 {

// `index` names the picture in messages. Decoded pictures own their pixels; wrapped ones borrow the caller's.
cv::Mat image_to_mat(const ImageView& image, std::size_t index);
std::vector<cv::Mat> images_to_mats(const std::vector<ImageView>& images);

}  // namespace gflv2
