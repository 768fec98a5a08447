// Multi-label, class-aware greedy NMS with the semantics of gflv2_deploy/model/nms.py (multiclass_nms):
// candidates are every (box, class) with score > score_thr, enumerated box-major then class; sorted by
// descending score, ties to the lower candidate index (stable); greedily kept, a kept candidate suppresses
// later ones of its class whose IoU > iou_thr (IoU without +1, 0 for an empty union); stop at max_num.
// Classes are separated as the Python code does it (mmcv batched_nms): every box is shifted by
// label * (max coordinate + 1) in float32, and IoU is computed in float32 on the shifted boxes, so the
// decisions are the same bit for bit, rounding included.
#pragma once

#include <cstdint>
#include <vector>

#include "gflv2/detector.hpp"

namespace gflv2 {

// boxes: num_boxes x 4 (x1, y1, x2, y2), scores: num_boxes x num_classes, both row-major float32.
// Returns at most max_num detections (max_num <= 0: all) by descending score, in the boxes' pixels.
std::vector<Detection> multiclass_nms(const float* boxes, const float* scores, int64_t num_boxes, int64_t num_classes,
                                      double score_thr, double iou_thr, int max_num);

}  // namespace gflv2
