// IoU and class offsets in the reference's float32 operation order (gflv2_deploy/model/nms.py), shared by the
// CPU twin and the CUDA kernels. Both are compiled without FMA contraction (-ffp-contract=off, nvcc -fmad=false)
// so every step rounds like torch's elementwise float32 ops and the two implementations agree bit for bit.
#pragma once

#if defined(__CUDACC__)
#define GFLV2_HD __host__ __device__ __forceinline__
#else
#define GFLV2_HD inline
#endif

namespace gflv2_nms {

// torch.clamp(x, min=lo) for finite x.
GFLV2_HD float clamp_min(float x, float lo) { return x < lo ? lo : x; }

// torch's max()/min() propagate NaN (std::max / fmaxf do not, each in its own way): the reference's class-offset
// unit is NaN as soon as one candidate coordinate is NaN, and then nothing is suppressed (plugins/README.md).
GFLV2_HD float nan_max(float a, float b) { return (a != a || b != b) ? (a != a ? a : b) : (a < b ? b : a); }
GFLV2_HD float nan_min(float a, float b) { return (a != a || b != b) ? (a != a ? a : b) : (b < a ? b : a); }

// Largest and smallest of a box's four coordinates, NaN when one of them is NaN.
GFLV2_HD void box_extremes(const float* box, float* bmax, float* bmin) {
  *bmax = nan_max(nan_max(box[0], box[1]), nan_max(box[2], box[3]));
  *bmin = nan_min(nan_min(box[0], box[1]), nan_min(box[2], box[3]));
}

// Class offset unit of mmcv/our batched_nms: max - min(min, 0) + 1 over the image's candidate box coordinates.
GFLV2_HD float class_offset_unit(float box_max, float box_min) {
  const float low = box_min < 0.0F ? box_min : 0.0F;
  const float span = box_max - low;
  return span + 1.0F;
}

// Offset added to every coordinate of a class-c candidate: float(c) * unit.
GFLV2_HD float class_offset(int c, float unit) { return static_cast<float>(c) * unit; }

// IoU of two shifted x1 y1 x2 y2 boxes, as model.nms.box_iou: no +1, 0 when the union is not positive.
GFLV2_HD float box_iou(const float* a, const float* b) {
  const float area_a = clamp_min(a[2] - a[0], 0.0F) * clamp_min(a[3] - a[1], 0.0F);
  const float area_b = clamp_min(b[2] - b[0], 0.0F) * clamp_min(b[3] - b[1], 0.0F);
  const float lt_x = a[0] > b[0] ? a[0] : b[0];
  const float lt_y = a[1] > b[1] ? a[1] : b[1];
  const float rb_x = a[2] < b[2] ? a[2] : b[2];
  const float rb_y = a[3] < b[3] ? a[3] : b[3];
  const float w = clamp_min(rb_x - lt_x, 0.0F);
  const float h = clamp_min(rb_y - lt_y, 0.0F);
  const float inter = w * h;
  const float sum = area_a + area_b;
  const float uni = sum - inter;
  return uni > 0.0F ? inter / clamp_min(uni, 1e-12F) : 0.0F;
}

// The reference keeps a candidate when IoU <= threshold (so NaN suppresses, as rest[iou <= thr] drops it).
GFLV2_HD bool suppresses(float iou, float iou_threshold) { return !(iou <= iou_threshold); }

}  // namespace gflv2_nms
