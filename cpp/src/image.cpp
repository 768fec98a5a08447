#include "image.hpp"

#include <limits>
#include <string>

#include <opencv2/imgcodecs.hpp>

#include "gflv2/error.hpp"

namespace gflv2 {

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
