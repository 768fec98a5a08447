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
std::vector<Detections> postprocess(bool end_to_end, const PostprocessingSpec& post, const std::vector<NamedTensor>& outputs,
                                    const std::vector<ImageGeometry>& geometry);

}  // namespace gflv2
