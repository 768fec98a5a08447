// Attribute and shape checks shared by the ONNX Runtime op and the TensorRT plugin.
#include <cmath>
#include <sstream>

#include "gflv2_nms/nms.h"

namespace gflv2_nms {

std::string validate_attributes(const NmsAttributes& attrs) {
  std::ostringstream msg;
  if (!std::isfinite(attrs.score_threshold)) {
    msg << "score_threshold must be finite, got " << attrs.score_threshold;
  } else if (!(attrs.iou_threshold >= 0.0F && attrs.iou_threshold <= 1.0F)) {
    msg << "iou_threshold must be in [0, 1], got " << attrs.iou_threshold;
  } else if (attrs.max_output_boxes < 1) {
    msg << "max_output_boxes must be at least 1, got " << attrs.max_output_boxes;
  } else if (attrs.nms_pre < 0 || attrs.num_levels < 0) {
    msg << "nms_pre and num_levels must be >= 0, got " << attrs.nms_pre << " and " << attrs.num_levels;
  } else if (attrs.nms_pre > 0 && attrs.num_levels == 0) {
    msg << "nms_pre = " << attrs.nms_pre << " needs num_levels > 0";
  } else if (attrs.nms_pre > 0 && attrs.score_threshold < 0.0F) {
    // Pre-selected levels are padded with score 0: a negative threshold would turn padding into detections.
    msg << "score_threshold must be >= 0 when nms_pre > 0 (padding rows score 0), got " << attrs.score_threshold;
  }
  return msg.str();
}

std::string validate_shapes(const NmsAttributes& attrs, const int64_t* boxes_dims, int boxes_rank,
                            const int64_t* scores_dims, int scores_rank, NmsShape* shape) {
  std::ostringstream msg;
  if (boxes_rank != 3 || boxes_dims[2] != 4) {
    msg << "boxes must be [B, A, 4]";
  } else if (scores_rank != 3) {
    msg << "scores must be [B, A, C]";
  } else if (boxes_dims[0] != scores_dims[0] || boxes_dims[1] != scores_dims[1]) {
    msg << "boxes [" << boxes_dims[0] << ", " << boxes_dims[1] << ", 4] and scores [" << scores_dims[0] << ", "
        << scores_dims[1] << ", " << scores_dims[2] << "] disagree on B or A";
  } else if (scores_dims[2] < 1) {
    msg << "scores need at least one class";
  } else if (attrs.nms_pre > 0 && boxes_dims[1] != static_cast<int64_t>(attrs.nms_pre) * attrs.num_levels) {
    msg << "A = " << boxes_dims[1] << " but nms_pre * num_levels = " << attrs.nms_pre << " * " << attrs.num_levels
        << " = " << static_cast<int64_t>(attrs.nms_pre) * attrs.num_levels;
  } else if (boxes_dims[1] * scores_dims[2] > static_cast<int64_t>(INT32_MAX)) {
    msg << "A * C = " << boxes_dims[1] * scores_dims[2] << " candidates per image exceeds int32";
  }
  if (msg.tellp() > 0) {
    return msg.str();
  }
  if (shape != nullptr) {
    shape->batch = boxes_dims[0];
    shape->anchors = boxes_dims[1];
    shape->classes = scores_dims[2];
  }
  return {};
}

std::string validate_static_shapes(const NmsAttributes& attrs, const int64_t* boxes_dims, int boxes_rank,
                                   const int64_t* scores_dims, int scores_rank) {
  auto known = [](int64_t d) { return d >= 0; };
  std::ostringstream msg;
  if (boxes_rank != 3 || (known(boxes_dims[2]) && boxes_dims[2] != 4)) {
    msg << "boxes must be [B, A, 4]";
  } else if (scores_rank != 3) {
    msg << "scores must be [B, A, C]";
  } else if ((known(boxes_dims[0]) && known(scores_dims[0]) && boxes_dims[0] != scores_dims[0]) ||
             (known(boxes_dims[1]) && known(scores_dims[1]) && boxes_dims[1] != scores_dims[1])) {
    msg << "boxes [" << boxes_dims[0] << ", " << boxes_dims[1] << ", 4] and scores [" << scores_dims[0] << ", "
        << scores_dims[1] << ", " << scores_dims[2] << "] disagree on B or A";
  } else if (known(scores_dims[2]) && scores_dims[2] < 1) {
    msg << "scores need at least one class";
  } else {
    const int64_t anchors = known(boxes_dims[1]) ? boxes_dims[1] : scores_dims[1];
    if (attrs.nms_pre > 0 && known(anchors) && anchors != static_cast<int64_t>(attrs.nms_pre) * attrs.num_levels) {
      msg << "A = " << anchors << " but nms_pre * num_levels = " << attrs.nms_pre << " * " << attrs.num_levels << " = "
          << static_cast<int64_t>(attrs.nms_pre) * attrs.num_levels;
    } else if (known(anchors) && known(scores_dims[2]) && anchors * scores_dims[2] > static_cast<int64_t>(INT32_MAX)) {
      msg << "A * C = " << anchors * scores_dims[2] << " candidates per image exceeds int32";
    }
  }
  return msg.str();
}

}  // namespace gflv2_nms
