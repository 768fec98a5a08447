// From the graph's named outputs to detections in original-picture pixels (docs/contract.md, Tensors):
// end-to-end graphs are cut at num_dets; pre-NMS graphs have their boxes clamped to img_shape and go through
// multiclass_nms (nms.hpp); then x is divided by scale_x and y by scale_y in float32 (no clamp afterwards),
// as gflv2_deploy/runtime/detector.py does.
#pragma once

#include <vector>

#include "backend.hpp"
#include "preprocess.hpp"

namespace gflv2 {

// end_to_end: the graph's outputs are num_dets/det_*; otherwise boxes/scores and `post` drives the NMS.
// num_classes: the contract's class count. A model that disagrees with it (a scores tensor with another number
// of classes, a detection labelled outside 0 .. num_classes - 1) is refused with gflv2::Error(kBackend), so
// every returned label indexes the class names.
std::vector<Detections> postprocess(bool end_to_end, const PostprocessingSpec& post, const std::vector<NamedTensor>& outputs,
                                    const std::vector<ImageGeometry>& geometry, int64_t num_classes);

}  // namespace gflv2
