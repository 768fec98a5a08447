#include "postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "gflv2/error.hpp"
#include "nms.hpp"

namespace gflv2 {
namespace {

const HostTensor& output(const std::vector<NamedTensor>& outputs, const char* name, std::size_t rank, int64_t batch) {
  for (const auto& o : outputs) {
    if (o.name != name) continue;
    if (o.tensor.shape.size() != rank || o.tensor.shape[0] != batch) {
      throw Error(Status::kBackend, std::string("output '") + name + "' has an unexpected shape");
    }
    return o.tensor;
  }
  throw Error(Status::kBackend, std::string("the backend returned no output '") + name + "'");
}

// Element i of an integer or float tensor as int64 (num_dets / det_classes may be int32 or int64).
int64_t int_at(const HostTensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::kInt32: return static_cast<const int32_t*>(t.data)[i];
    case DType::kInt64: return static_cast<const int64_t*>(t.data)[i];
    case DType::kFloat32: {  // NaN or out of range: a value no count or label check accepts (no UB cast)
      const float v = static_cast<const float*>(t.data)[i];
      return std::fabs(v) < 9.0e18F ? static_cast<int64_t>(v) : std::numeric_limits<int64_t>::min();
    }
    default: throw Error(Status::kBackend, std::string("unsupported output type ") + dtype_name(t.dtype));
  }
}

const float* floats(const HostTensor& t, const char* name) {
  if (t.dtype != DType::kFloat32) {
    throw Error(Status::kBackend, std::string("output '") + name + "' must be float32, got " + dtype_name(t.dtype));
  }
  return static_cast<const float*>(t.data);
}

void to_original(Detections& dets, const ImageGeometry& g) {
  for (Detection& d : dets) {
    d.x1 /= g.scale_x;
    d.y1 /= g.scale_y;
    d.x2 /= g.scale_x;
    d.y2 /= g.scale_y;
  }
}

}  // namespace

std::vector<Detections> postprocess(bool end_to_end, const PostprocessingSpec& post, const std::vector<NamedTensor>& outputs,
                                    const std::vector<ImageGeometry>& geometry, int64_t num_classes) {
  const auto n = static_cast<int64_t>(geometry.size());
  std::vector<Detections> result(geometry.size());
  if (end_to_end) {
    const HostTensor& num = output(outputs, "num_dets", 2, n);
    const HostTensor& boxes = output(outputs, "det_boxes", 3, n);
    const HostTensor& scores = output(outputs, "det_scores", 2, n);
    const HostTensor& classes = output(outputs, "det_classes", 2, n);
    const int64_t k = boxes.shape[1];
    if (boxes.shape[2] != 4 || scores.shape[1] != k || classes.shape[1] != k) {
      throw Error(Status::kBackend, "end-to-end outputs disagree on the number of slots");
    }
    const float* b = floats(boxes, "det_boxes");
    const float* s = floats(scores, "det_scores");
    for (int64_t i = 0; i < n; ++i) {
      const int64_t count = std::clamp<int64_t>(int_at(num, i * num.shape[1]), 0, k);
      Detections& dets = result[i];
      dets.reserve(count);
      for (int64_t j = 0; j < count; ++j) {
        const float* box = b + (i * k + j) * 4;
        const int64_t label = int_at(classes, i * k + j);
        if (label < 0 || label >= num_classes) {
          throw Error(Status::kBackend, "the model labelled a detection with class " + std::to_string(label) +
                                            ", outside the " + std::to_string(num_classes) + " classes of its contract (0 .. " +
                                            std::to_string(num_classes - 1) + "): the graph and its contract disagree; re-export it");
        }
        dets.push_back({box[0], box[1], box[2], box[3], s[i * k + j], static_cast<int32_t>(label)});
      }
      to_original(dets, geometry[i]);
    }
    return result;
  }
  const HostTensor& boxes = output(outputs, "boxes", 3, n);
  const HostTensor& scores = output(outputs, "scores", 3, n);
  const int64_t a = boxes.shape[1];
  const int64_t c = scores.shape[2];
  if (boxes.shape[2] != 4 || scores.shape[1] != a) throw Error(Status::kBackend, "boxes and scores disagree in shape");
  if (c != num_classes) {
    throw Error(Status::kBackend, "the model scores " + std::to_string(c) + " classes, its contract names " +
                                      std::to_string(num_classes) + ": the graph and its contract disagree; re-export it");
  }
  const float* b = floats(boxes, "boxes");
  const float* s = floats(scores, "scores");
  std::vector<float> clamped(static_cast<std::size_t>(a * 4));
  for (int64_t i = 0; i < n; ++i) {
    const float h = static_cast<float>(geometry[i].new_h), w = static_cast<float>(geometry[i].new_w);
    const float* src = b + i * a * 4;
    for (int64_t j = 0; j < a; ++j) {  // torch clamp(0, w): NaN stays NaN
      const float* box = src + j * 4;
      float* dst = &clamped[j * 4];
      auto clamp = [](float v, float hi) { return v < 0.f ? 0.f : (v > hi ? hi : v); };
      dst[0] = clamp(box[0], w);
      dst[1] = clamp(box[1], h);
      dst[2] = clamp(box[2], w);
      dst[3] = clamp(box[3], h);
    }
    result[i] = multiclass_nms(clamped.data(), s + i * a * c, a, c, post.score_thr, post.iou_thr, post.max_per_img);
    to_original(result[i], geometry[i]);
  }
  return result;
}

}  // namespace gflv2
