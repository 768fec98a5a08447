// gflv2::Detector: the C++ API. A model file in, detections in original-picture pixels out.
//
//   gflv2::Detector detector("model.onnx");                 // or an engine with <engine>.json beside it
//   cv::Mat bgr = cv::imread("dog.jpg");
//   auto dets = detector.detect(gflv2::ImageView::bgr(bgr.data, bgr.rows, bgr.cols, bgr.step));
//
// Threads: one Detector is used by one thread at a time. clone() returns a Detector for another thread that
// shares the loaded model (ONNX Runtime session / TensorRT engine) and owns its buffers and, for TensorRT,
// its execution context. Errors are gflv2::Error exceptions (error.hpp). No OpenCV, CUDA or TensorRT header
// is needed to use this one.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gflv2/error.hpp"

namespace gflv2 {

struct Detection {
  float x1, y1, x2, y2;  // original-picture pixels (not clamped to the picture)
  float score;           // joint class x quality score
  int32_t label;         // class index, see Detector::class_names()
};

using Detections = std::vector<Detection>;  // one picture's detections, by descending score

// A picture the caller owns: 8-bit BGR pixels (row stride in bytes), or an encoded file (JPEG, PNG, ...).
struct ImageView {
  const uint8_t* data = nullptr;
  int height = 0;
  int width = 0;
  int channels = 3;
  std::size_t stride = 0;        // bytes per row; 0 = width * channels
  std::size_t encoded_size = 0;  // > 0: data is an encoded file of this many bytes

  static ImageView bgr(const uint8_t* data, int height, int width, std::size_t stride = 0) {
    return ImageView{data, height, width, 3, stride, 0};
  }
  static ImageView encoded(const uint8_t* data, std::size_t size) { return ImageView{data, 0, 0, 3, 0, size}; }
};

struct DetectorOptions {
  int intra_op_threads = 0;   // ONNX Runtime intra-op threads; 0 = its choice
  std::string device;         // "" (the model's device: cpu for an ONNX, cuda:0 for an engine), "cpu" (ONNX
                              // only), "cuda" or "cuda:N"; gflv2::Error(kInvalidArgument) for anything else
  bool cuda_graphs = true;    // TensorRT: CUDA-graph replay for static shapes (falls back when capture fails)
};

// Settings a caller may change per detector (a copy of the contract's, which stays the default). The NMS
// settings apply to pre-NMS graphs; an end-to-end graph has its own baked in.
struct Settings {
  std::array<int, 2> test_scale{1333, 800};  // keep-ratio bounds (long, short), any order
  double score_thr = 0.05;
  double iou_thr = 0.6;
  int max_per_img = 100;
};

// One raw graph output (Detector::infer).
struct OutputTensor {
  std::string name;
  std::string dtype;  // "float32", "int32", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

struct Timings {
  double preprocess_ms = 0;
  double inference_ms = 0;
  double postprocess_ms = 0;
};

// The network input for a batch of pictures: N x 3 x H x W float32 (normalised RGB, padded); for a graph exported
// with --input uint8 (contract input_format uint8_nhwc_bgr) N x H x W x 3 BGR pixel values 0-255 (as floats).
struct InputTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class GFLV2_API Detector {
 public:
  explicit Detector(const std::string& model_path, const DetectorOptions& options = {});
  ~Detector();
  Detector(Detector&&) noexcept;
  Detector& operator=(Detector&&) noexcept;
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  // A detector for another thread: same model, its own buffers and execution context.
  Detector clone() const;

  // One batch; one Detections per picture, in input order.
  std::vector<Detections> detect(const std::vector<ImageView>& images);
  Detections detect(const ImageView& image);

  // The input tensor detect() would feed (parity checks, tools).
  InputTensor preprocess(const std::vector<ImageView>& images);

  // The graph alone on a preprocessed batch (n x 3 x h x w floats; for a uint8-input graph n x h x w x 3 pixel
  // values 0-255 as floats; img_shape n x 2 (height, width) of the unpadded pictures, or null: the whole h x w).
  // Outputs in the contract's order.
  std::vector<OutputTensor> infer(const float* images, const std::vector<int64_t>& shape, const float* img_shape);

  Settings settings() const;
  void set_settings(const Settings& settings);  // gflv2::Error(kInvalidArgument) for impossible values

  const std::vector<std::string>& class_names() const;
  const std::string& contract_json() const;
  std::string backend_name() const;
  Timings last_timings() const;

  struct Impl;

 private:
  explicit Detector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gflv2
