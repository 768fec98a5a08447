// Pictures the caller hands in (ImageView) as 8-bit BGR cv::Mat headers: pixels are wrapped without a copy,
// encoded files are decoded with cv::imdecode. gflv2::Error(kImage) for anything else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

#include "gflv2/detector.hpp"

namespace gflv2 {

// True when `data` is a JPEG whose first scan is not followed by an end-of-image marker (a cut-off file, which
// OpenCV 4 decodes into a partly grey picture with only a warning). The rule of gflv2_deploy/data/image_io.py
// (_jpeg_is_truncated), step for step: walk the header segments (APPn skipped by their length, so an EXIF
// thumbnail's markers are not mistaken for the picture's) up to the first start-of-scan, then look for FF D9
// after it (entropy-coded data stuffs every FF as FF 00). A header the walk cannot follow is left to the decoder.
bool jpeg_is_truncated(const uint8_t* data, std::size_t size);

// `index` names the picture in messages. Decoded pictures own their pixels; wrapped ones borrow the caller's.
// An encoded picture is refused (kImage) when OpenCV cannot decode it or when it is a truncated JPEG.
cv::Mat image_to_mat(const ImageView& image, std::size_t index);
std::vector<cv::Mat> images_to_mats(const std::vector<ImageView>& images);

}  // namespace gflv2
