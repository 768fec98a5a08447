#include "nms.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace gflv2 {
namespace {

struct Candidate {
  int64_t box;
  int32_t label;
  float score;
};

// IoU of two x1y1x2y2 boxes in float32, operation by operation as torch evaluates box_iou.
float box_iou(const float* a, const float* b) {
  const float area_a = std::max(a[2] - a[0], 0.f) * std::max(a[3] - a[1], 0.f);
  const float area_b = std::max(b[2] - b[0], 0.f) * std::max(b[3] - b[1], 0.f);
  const float w = std::max(std::min(a[2], b[2]) - std::max(a[0], b[0]), 0.f);
  const float h = std::max(std::min(a[3], b[3]) - std::max(a[1], b[1]), 0.f);
  const float inter = w * h;
  const float sum = area_a + area_b;
  const float union_area = sum - inter;
  return union_area > 0.f ? inter / std::max(union_area, 1e-12f) : 0.f;
}

}  // namespace

std::vector<Detection> multiclass_nms(const float* boxes, const float* scores, int64_t num_boxes, int64_t num_classes,
                                      double score_thr, double iou_thr, int max_num) {
  // torch compares a float32 tensor with a Python float in float32
  const float score_threshold = static_cast<float>(score_thr);
  const float iou_threshold = static_cast<float>(iou_thr);
  std::vector<Candidate> cand;
  for (int64_t i = 0; i < num_boxes; ++i) {
    const float* row = scores + i * num_classes;
    for (int64_t c = 0; c < num_classes; ++c) {
      if (row[c] > score_threshold) cand.push_back({i, static_cast<int32_t>(c), row[c]});
    }
  }
  if (cand.empty()) return {};

  // offsets = label * (max - min(min, 0) + 1) over the candidates' boxes, float32 (mmcv batched_nms). torch's
  // max()/min() propagate NaN: one NaN coordinate makes the offsets NaN, every IoU 0, and nothing is suppressed
  // (the same holds for an infinite coordinate: 0 * inf is NaN). The rule is written once in plugins/README.md.
  float max_coord = boxes[cand[0].box * 4];
  float min_coord = max_coord;
  for (const Candidate& c : cand) {
    for (int k = 0; k < 4; ++k) {
      const float v = boxes[c.box * 4 + k];
      max_coord = std::isnan(v) || std::isnan(max_coord) ? std::numeric_limits<float>::quiet_NaN() : std::max(max_coord, v);
      min_coord = std::isnan(v) || std::isnan(min_coord) ? std::numeric_limits<float>::quiet_NaN() : std::min(min_coord, v);
    }
  }
  const float span = (max_coord - static_cast<float>(std::min(static_cast<double>(min_coord), 0.0))) + 1.f;
  std::vector<float> shifted(cand.size() * 4);
  bool finite = std::isfinite(span);
  for (std::size_t j = 0; j < cand.size(); ++j) {
    const float offset = static_cast<float>(cand[j].label) * span;
    for (int k = 0; k < 4; ++k) {
      shifted[j * 4 + k] = boxes[cand[j].box * 4 + k] + offset;
      finite = finite && std::isfinite(shifted[j * 4 + k]);
    }
  }

  std::vector<std::size_t> order(cand.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return cand[a].score > cand[b].score; });

  // Boxes of different classes are apart by at least 1 after the shift, so their IoU is exactly 0 and never
  // suppresses (iou_thr >= 0): each kept box only needs to be compared with later candidates of its own class.
  // That holds while the float32 sums stay exact to well under 1 (shifted coordinates < 2^23); beyond, every
  // later candidate is compared, as the Python loop does.
  int32_t max_label = 0;
  for (const Candidate& c : cand) max_label = std::max(max_label, c.label);
  const bool per_class = finite && static_cast<double>(max_label + 1) * span < 8388608.0 && iou_threshold >= 0.f;
  std::vector<std::vector<std::size_t>> by_label(per_class ? max_label + 1 : 1);  // positions in `order`
  for (std::size_t pos = 0; pos < order.size(); ++pos) by_label[per_class ? cand[order[pos]].label : 0].push_back(pos);
  std::vector<std::size_t> cursor(by_label.size(), 0);

  std::vector<Detection> kept;
  std::vector<char> removed(cand.size(), 0);
  for (std::size_t pos = 0; pos < order.size(); ++pos) {
    const std::size_t best = order[pos];
    if (removed[best]) continue;
    const float* b = boxes + cand[best].box * 4;
    kept.push_back({b[0], b[1], b[2], b[3], cand[best].score, cand[best].label});
    if (max_num > 0 && static_cast<int>(kept.size()) == max_num) break;
    const float* sb = &shifted[best * 4];
    const std::vector<std::size_t>& group = by_label[per_class ? cand[best].label : 0];
    std::size_t& start = cursor[per_class ? cand[best].label : 0];
    while (start < group.size() && group[start] <= pos) ++start;  // later candidates only
    for (std::size_t k = start; k < group.size(); ++k) {
      const std::size_t other = order[group[k]];
      // Python keeps `iou <= iou_thr`; written the same way so that a NaN IoU also removes
      if (!removed[other] && !(box_iou(sb, &shifted[other * 4]) <= iou_threshold)) removed[other] = 1;
    }
  }
  return kept;
}

}  // namespace gflv2
