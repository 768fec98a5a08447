#include "image.hpp"

#include <limits>
#include <string>

#include <opencv2/imgcodecs.hpp>

#include "gflv2/error.hpp"

namespace gflv2 {

bool jpeg_is_truncated(const uint8_t* data, std::size_t size) {
  constexpr uint8_t kSos = 0xDA, kEoi = 0xD9;
  if (size < 2 || data[0] != 0xFF || data[1] != 0xD8) return false;  // not a JPEG (no SOI)
  std::size_t pos = 2;
  while (true) {
    if (pos >= size) return true;
    if (data[pos] != 0xFF) return false;
    while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes before a marker
    if (pos >= size) return true;
    const uint8_t marker = data[pos++];
    if (marker == kEoi) return false;  // end of image before any scan: not a truncation
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // markers without a length field
    if (pos + 2 > size) return true;
    const std::size_t length = (std::size_t{data[pos]} << 8) | data[pos + 1];
    if (length < 2) return false;
    if (marker == kSos) {
      for (std::size_t i = pos + length; i + 1 < size; ++i) {
        if (data[i] == 0xFF && data[i + 1] == kEoi) return false;
      }
      return true;
    }
    pos += length;
  }
}

cv::Mat image_to_mat(const ImageView& image, std::size_t index) {
  const std::string which = "image " + std::to_string(index);
  if (image.data == nullptr) throw Error(Status::kImage, which + " has no data (null pointer)");
  if (image.encoded_size > 0) {
    if (image.encoded_size > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      throw Error(Status::kImage, which + " is larger than 2 GiB");
    }
    const cv::Mat bytes(1, static_cast<int>(image.encoded_size), CV_8UC1, const_cast<uint8_t*>(image.data));
    cv::Mat decoded;
    try {
      decoded = cv::imdecode(bytes, cv::IMREAD_COLOR);
    } catch (const cv::Exception&) {
      decoded.release();
    }
    if (decoded.empty()) throw Error(Status::kImage, which + " cannot be decoded (corrupt or not a picture format OpenCV reads)");
    if (jpeg_is_truncated(image.data, image.encoded_size)) {
      throw Error(Status::kImage, which + " is truncated (JPEG without its end-of-image marker)");
    }
    return decoded;
  }
  if (image.height <= 0 || image.width <= 0) {
    throw Error(Status::kImage, which + " is empty (" + std::to_string(image.height) + " x " + std::to_string(image.width) + ")");
  }
  if (image.channels != 3) {
    throw Error(Status::kImage, which + " has " + std::to_string(image.channels) +
                                    " channel(s); the detector takes 8-bit BGR pictures with 3 channels (convert it first)");
  }
  const std::size_t row = static_cast<std::size_t>(image.width) * 3;
  const std::size_t stride = image.stride == 0 ? row : image.stride;
  if (stride < row) {
    throw Error(Status::kImage, which + " has a row stride of " + std::to_string(stride) + " bytes, less than width x 3 = " +
                                    std::to_string(row));
  }
  return cv::Mat(image.height, image.width, CV_8UC3, const_cast<uint8_t*>(image.data), stride);
}

std::vector<cv::Mat> images_to_mats(const std::vector<ImageView>& images) {
  std::vector<cv::Mat> mats;
  mats.reserve(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) mats.push_back(image_to_mat(images[i], i));
  return mats;
}

}  // namespace gflv2
