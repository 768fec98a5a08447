// The device option of DetectorOptions / gflv2_options, parsed in one place for every backend:
//   ""        the model's own device: cpu for an ONNX, cuda:0 for a TensorRT engine (the default)
//   "cpu"     ONNX only: a TensorRT engine runs on a GPU and is refused on "cpu"
//   "cuda", "cuda:N"  CUDA device 0 / N (N decimal digits)
// Anything else is refused instead of silently becoming device 0.
#pragma once

#include <cctype>
#include <string>

#include "gflv2/error.hpp"

namespace gflv2 {

struct Device {
  bool cuda = false;
  int index = 0;  // CUDA device ordinal (cuda only)
};

// `engine`: the model is a TensorRT engine (decides "" and refuses "cpu").
inline Device parse_device(const std::string& text, bool engine) {
  Device device;
  if (text.empty()) {
    device.cuda = engine;
  } else if (text == "cpu") {
    if (engine) {
      throw Error(Status::kInvalidArgument, "a TensorRT engine runs on an NVIDIA GPU: use device cuda or cuda:N, not cpu");
    }
  } else if (text == "cuda") {
    device.cuda = true;
  } else {
    const std::string digits = text.rfind("cuda:", 0) == 0 ? text.substr(5) : "";
    bool ok = !digits.empty() && digits.size() <= 4;  // at most 9999: no overflow, far above any machine
    for (char c : digits) ok = ok && std::isdigit(static_cast<unsigned char>(c)) != 0;
    if (!ok) throw Error(Status::kInvalidArgument, "device must be cpu, cuda or cuda:N (N a device number), got '" + text + "'");
    device = {true, std::stoi(digits)};
  }
  return device;
}

}  // namespace gflv2
