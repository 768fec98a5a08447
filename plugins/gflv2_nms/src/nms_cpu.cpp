// The CPU twin of the CUDA kernels: the reference multiclass_nms per image, fixed-size padded outputs.
#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <vector>

#include "box_iou.h"
#include "gflv2_nms/nms.h"

namespace gflv2_nms {
namespace {

struct Candidate {
  int32_t anchor;
  int32_t cls;
  float score;
  std::array<float, 4> shifted;  // box + class offset (IoU only)
};

// One image: returns the number of detections written (<= K).
int32_t nms_image(const NmsAttributes& attrs, int64_t A, int64_t C, const float* boxes, const float* scores,
                  float* det_boxes, float* det_scores, int32_t* det_classes) {
  const int32_t K = attrs.max_output_boxes;
  // Candidates in torch.nonzero order: box-major, then class.
  std::vector<Candidate> cand;
  float box_max = 0.0F;
  float box_min = 0.0F;
  for (int64_t a = 0; a < A; ++a) {
    for (int64_t c = 0; c < C; ++c) {
      const float s = scores[a * C + c];
      if (!(s > attrs.score_threshold)) {
        continue;
      }
      const float* b = boxes + a * 4;
      float bmax = 0.0F;
      float bmin = 0.0F;
      box_extremes(b, &bmax, &bmin);
      box_max = cand.empty() ? bmax : nan_max(box_max, bmax);
      box_min = cand.empty() ? bmin : nan_min(box_min, bmin);
      cand.push_back({static_cast<int32_t>(a), static_cast<int32_t>(c), s, {}});
    }
  }
  if (cand.empty()) {
    return 0;
  }
  const float unit = class_offset_unit(box_max, box_min);
  for (Candidate& k : cand) {
    const float off = class_offset(k.cls, unit);
    const float* b = boxes + static_cast<int64_t>(k.anchor) * 4;
    for (int i = 0; i < 4; ++i) {
      k.shifted[i] = b[i] + off;
    }
  }
  // Score descending; stable, so ties (-0.0 == +0.0 included) keep the lower candidate index first.
  std::vector<int32_t> order(cand.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&cand](int32_t x, int32_t y) { return cand[x].score > cand[y].score; });
  std::vector<int32_t> kept;
  kept.reserve(static_cast<size_t>(K));
  for (int32_t idx : order) {
    const Candidate& k = cand[idx];
    bool keep = true;
    for (int32_t j : kept) {
      // Different classes never overlap after the offsets (IoU 0 <= threshold): skip them.
      if (cand[j].cls == k.cls && suppresses(box_iou(cand[j].shifted.data(), k.shifted.data()), attrs.iou_threshold)) {
        keep = false;
        break;
      }
    }
    if (!keep) {
      continue;
    }
    const int32_t slot = static_cast<int32_t>(kept.size());
    std::memcpy(det_boxes + static_cast<int64_t>(slot) * 4, boxes + static_cast<int64_t>(k.anchor) * 4,
                4 * sizeof(float));
    det_scores[slot] = k.score;
    det_classes[slot] = k.cls;
    kept.push_back(idx);
    if (static_cast<int32_t>(kept.size()) == K) {
      break;
    }
  }
  return static_cast<int32_t>(kept.size());
}

}  // namespace

void run_nms_cpu(const NmsAttributes& attrs, const NmsShape& shape, const float* boxes, const float* scores,
                 const NmsOutputs& out) {
  const int64_t K = attrs.max_output_boxes;
  const int64_t A = shape.anchors;
  const int64_t C = shape.classes;
  std::fill(out.det_boxes, out.det_boxes + shape.batch * K * 4, kPadBox);
  std::fill(out.det_scores, out.det_scores + shape.batch * K, kPadScore);
  std::fill(out.det_classes, out.det_classes + shape.batch * K, kPadClass);
  for (int64_t b = 0; b < shape.batch; ++b) {
    out.num_dets[b] = nms_image(attrs, A, C, boxes + b * A * 4, scores + b * A * C, out.det_boxes + b * K * 4,
                                out.det_scores + b * K, out.det_classes + b * K);
  }
}

}  // namespace gflv2_nms
