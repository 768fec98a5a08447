// GFLV2 batched multi-label, class-aware NMS with fixed-size outputs: the contract shared by the CPU twin
// (ONNX Runtime custom op), the CUDA kernels and the TensorRT IPluginV3 plugin. plugins/README.md has the table.
//
// Inputs  boxes  [B, A, 4] float32 (x1, y1, x2, y2 in input pixels), scores [B, A, C] float32 (probabilities).
// Outputs num_dets [B, 1] int32, det_boxes [B, K, 4] float32, det_scores [B, K] float32, det_classes [B, K] int32;
//         rows >= num_dets hold box 0, score 0, class -1.
// Per image, exactly gflv2_deploy.model.nms.multiclass_nms (the reference post-processing):
//   candidates = every (box a, class c) with score > score_threshold, enumerated box-major (index a * C + c);
//   order      = score descending, ties -> lower candidate index first;
//   greedy     = a candidate is dropped when its IoU with an already kept candidate of the same class is
//                > iou_threshold (IoU without +1, 0 when the union is empty); stop after K kept.
// IoU is computed on the reference's class-offset boxes (box + class * (max - min(min, 0) + 1), max and min over
// the candidate boxes of the image) in float32 with the same operation order, so results are bit-identical.
#pragma once

#include <cstdint>
#include <string>

namespace gflv2_nms {

inline constexpr char kOpName[] = "GFLV2NMS_TRT";     // ONNX op_type == TensorRT plugin name
inline constexpr char kOpDomain[] = "gflv2";          // ONNX domain (ORT custom op domain)
inline constexpr int kOpDomainVersion = 1;            // opset version of kOpDomain
inline constexpr char kPluginVersion[] = "1";         // TensorRT plugin version (node attribute plugin_version)
inline constexpr char kPluginNamespace[] = "";        // TensorRT plugin namespace (node attribute plugin_namespace)

inline constexpr float kPadBox = 0.0F;
inline constexpr float kPadScore = 0.0F;
inline constexpr int32_t kPadClass = -1;

// Node attributes (ONNX attribute names are the field names).
struct NmsAttributes {
  float score_threshold = 0.05F;  // candidate when score > score_threshold
  float iou_threshold = 0.6F;     // suppress when IoU > iou_threshold, in [0, 1]
  int32_t max_output_boxes = 100; // K
  int32_t nms_pre = 0;            // rows per level pre-selected by the graph (0: not pre-selected)
  int32_t num_levels = 0;         // levels of the pre-selection (A == num_levels * nms_pre when nms_pre > 0)
};

// Input extents; validate_shapes fills and checks them.
struct NmsShape {
  int64_t batch = 0;    // B
  int64_t anchors = 0;  // A
  int64_t classes = 0;  // C
};

// "" when the attributes are usable, else one line saying what is wrong.
std::string validate_attributes(const NmsAttributes& attrs);

// boxes_dims / scores_dims: the input shapes (rank boxes_rank / scores_rank). "" when they fit the contract and
// the attributes (shape filled), else one line saying what is wrong.
std::string validate_shapes(const NmsAttributes& attrs, const int64_t* boxes_dims, int boxes_rank,
                            const int64_t* scores_dims, int scores_rank, NmsShape* shape);

// The same checks on shapes that may hold dynamic dimensions (< 0, TensorRT's -1 at build time): every static
// dimension and every relation between static dimensions is checked; the rest is checked on the real shapes.
std::string validate_static_shapes(const NmsAttributes& attrs, const int64_t* boxes_dims, int boxes_rank,
                                   const int64_t* scores_dims, int scores_rank);

// Output buffers of one call (host or device memory, depending on the implementation).
struct NmsOutputs {
  int32_t* num_dets;     // [B, 1]
  float* det_boxes;      // [B, K, 4]
  float* det_scores;     // [B, K]
  int32_t* det_classes;  // [B, K]
};

// The CPU twin: runs the contract above on host memory. Attributes and shape must be valid.
void run_nms_cpu(const NmsAttributes& attrs, const NmsShape& shape, const float* boxes, const float* scores,
                 const NmsOutputs& out);

}  // namespace gflv2_nms
