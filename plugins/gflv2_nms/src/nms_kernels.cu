// CUDA kernels of GFLV2NMS_TRT: the same contract and arithmetic as the CPU twin (nms_cpu.cpp), per image:
//   1. gather   every (anchor, class) with score > threshold as a 64-bit sort key (score descending in the high
//               word, candidate index a * C + c ascending in the low word: a total, deterministic order), and the
//               max / min coordinate of the candidate boxes (the reference's class-offset unit);
//   2. sort     the keys of each image (CUB segmented radix sort);
//   3. greedy   one block per image walks the sorted candidates in chunks of kThreads: each candidate is first
//               checked against the detections already kept (the output rows, in parallel), then the chunk is
//               resolved in order, a kept candidate suppressing the later same-class candidates of its chunk
//               whose IoU exceeds the threshold. The walk stops after K kept, so the work is bounded by K
//               synchronisations plus one pass over the candidates, and memory by the key buffers;
//   4. pad      rows >= num_dets get box 0, score 0, class -1.
// Compiled with -fmad=false: IoU and offsets round exactly as in the CPU twin and torch (box_iou.h).
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cstdint>

#include "box_iou.h"
#include "nms_kernels.h"

namespace gflv2_nms {
namespace {

constexpr int kThreads = 256;         // threads per block: gather, and the chunk size of the greedy walk
constexpr size_t kAlign = 256;        // workspace sub-buffer alignment
constexpr uint32_t kMinInit = 0xFFFFFFFFU;
constexpr uint32_t kNanMax = 0xFFFFFFFFU;  // above every ordered float: atomicMax keeps it; decodes to NaN
constexpr uint32_t kNanMin = 0U;           // below every ordered float: atomicMin keeps it; decodes to NaN

// float -> uint32 whose unsigned order is the float order.
__device__ __forceinline__ uint32_t ordered_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000U) ? ~u : (u | 0x80000000U);
}

__device__ __forceinline__ float from_ordered_bits(uint32_t u) {
  return __uint_as_float((u & 0x80000000U) ? (u & 0x7FFFFFFFU) : ~u);
}

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Workspace layout (every part kAlign-aligned).
struct Workspace {
  int32_t* counts;         // [B] candidates per image
  uint32_t* box_max;       // [B] ordered bits of the largest candidate coordinate
  uint32_t* box_min;       // [B] ordered bits of the smallest candidate coordinate
  int32_t* seg_begin;      // [B] b * cap
  int32_t* seg_end;        // [B] b * cap + counts[b]
  uint64_t* keys_in;       // [B * cap]
  uint64_t* keys_out;      // [B * cap]
  void* sort_temp;
  size_t sort_temp_bytes;
  size_t total;
};

cudaError_t sort_temp_bytes(int64_t items, int64_t segments, size_t* bytes) {
  *bytes = 0;
  return cub::DeviceSegmentedRadixSort::SortKeys(nullptr, *bytes, static_cast<const uint64_t*>(nullptr),
                                                 static_cast<uint64_t*>(nullptr), items, segments,
                                                 static_cast<const int32_t*>(nullptr),
                                                 static_cast<const int32_t*>(nullptr), 0, 64);
}

cudaError_t plan(const NmsShape& shape, char* base, Workspace* ws) {
  const int64_t B = shape.batch;
  const int64_t cap = shape.anchors * shape.classes;
  if (B * cap > static_cast<int64_t>(INT32_MAX)) {
    return cudaErrorInvalidValue;  // the sort's segment offsets are int32: B * A * C must fit
  }
  size_t temp = 0;
  const cudaError_t err = sort_temp_bytes(B * cap, B, &temp);
  if (err != cudaSuccess) {
    return err;
  }
  size_t offset = 0;
  auto take = [&](size_t bytes) {
    char* p = base == nullptr ? nullptr : base + offset;
    offset += align_up(bytes);
    return p;
  };
  ws->counts = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * B));
  ws->box_max = reinterpret_cast<uint32_t*>(take(sizeof(uint32_t) * B));
  ws->box_min = reinterpret_cast<uint32_t*>(take(sizeof(uint32_t) * B));
  ws->seg_begin = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * B));
  ws->seg_end = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * B));
  ws->keys_in = reinterpret_cast<uint64_t*>(take(sizeof(uint64_t) * B * cap));
  ws->keys_out = reinterpret_cast<uint64_t*>(take(sizeof(uint64_t) * B * cap));
  ws->sort_temp = take(temp);
  ws->sort_temp_bytes = temp;
  ws->total = offset;
  return cudaSuccess;
}

__global__ void init_kernel(int32_t* counts, uint32_t* box_max, uint32_t* box_min, int64_t B) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < B) {
    counts[b] = 0;
    box_max[b] = 0U;
    box_min[b] = kMinInit;
  }
}

// grid (ceil(A*C / kThreads), B)
__global__ void gather_kernel(const float* __restrict__ boxes, const float* __restrict__ scores, int64_t A,
                              int64_t C, float score_threshold, int32_t* counts, uint32_t* box_max,
                              uint32_t* box_min, uint64_t* keys) {
  const int64_t b = blockIdx.y;
  const int64_t cap = A * C;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  bool candidate = false;
  float s = 0.0F;
  uint32_t hi = 0U;
  uint32_t lo = kMinInit;
  if (idx < cap) {
    s = scores[b * cap + idx];
    candidate = s > score_threshold;
    if (candidate) {
      const float* box = boxes + (b * A + idx / C) * 4;
      float bmax = 0.0F;
      float bmin = 0.0F;
      box_extremes(box, &bmax, &bmin);
      // NaN wins both reductions, as in torch (plugins/README.md): the ordered extremes decode to NaN
      hi = bmax != bmax ? kNanMax : ordered_bits(bmax);
      lo = bmin != bmin ? kNanMin : ordered_bits(bmin);
    }
  }
  // One atomic per warp for the count and for each extreme.
  const unsigned mask = __ballot_sync(0xFFFFFFFFU, candidate);
  const int lane = static_cast<int>(threadIdx.x & 31U);
  const uint32_t warp_hi = __reduce_max_sync(0xFFFFFFFFU, hi);
  const uint32_t warp_lo = __reduce_min_sync(0xFFFFFFFFU, lo);
  int32_t base = 0;
  if (lane == 0 && mask != 0U) {
    base = atomicAdd(&counts[b], __popc(mask));
    atomicMax(&box_max[b], warp_hi);
    atomicMin(&box_min[b], warp_lo);
  }
  base = __shfl_sync(0xFFFFFFFFU, base, 0);
  if (candidate) {
    const int32_t rank = __popc(mask & ((1U << lane) - 1U));
    // descending score; -0.0 keyed as +0.0 so that the two tie (lower index first), as in the CPU twin's sort
    const uint64_t score_key = static_cast<uint64_t>(~ordered_bits(s == 0.0F ? 0.0F : s)) << 32;
    keys[b * cap + base + rank] = score_key | static_cast<uint64_t>(static_cast<uint32_t>(idx));
  }
}

__global__ void segments_kernel(const int32_t* counts, int64_t B, int64_t cap, int32_t* begin, int32_t* end) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < B) {
    begin[b] = static_cast<int32_t>(b * cap);
    end[b] = static_cast<int32_t>(b * cap + counts[b]);
  }
}

__device__ __forceinline__ void shifted_box(const float* box, int32_t cls, float unit, float* out) {
  const float off = class_offset(cls, unit);
  for (int i = 0; i < 4; ++i) {
    out[i] = box[i] + off;
  }
}

// grid (B), block (kThreads)
__global__ void __launch_bounds__(kThreads)
    greedy_kernel(const float* __restrict__ boxes, const float* __restrict__ scores, int64_t A, int64_t C,
                  float iou_threshold, int32_t K, const int32_t* counts, const uint32_t* box_max,
                  const uint32_t* box_min, const uint64_t* keys, int32_t* num_dets, float* det_boxes,
                  float* det_scores, int32_t* det_classes) {
  __shared__ float chunk_box[kThreads][4];  // shifted boxes of the chunk
  __shared__ int32_t chunk_cls[kThreads];
  __shared__ int32_t chunk_anchor[kThreads];
  __shared__ float chunk_score[kThreads];
  __shared__ int32_t alive[kThreads];

  const int64_t b = blockIdx.x;
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t cap = A * C;
  const int32_t n = counts[b];
  const float* img_boxes = boxes + b * A * 4;
  float* out_boxes = det_boxes + b * K * 4;
  float* out_scores = det_scores + b * K;
  int32_t* out_classes = det_classes + b * K;
  const float unit = n > 0 ? class_offset_unit(from_ordered_bits(box_max[b]), from_ordered_bits(box_min[b])) : 0.0F;

  int32_t kept = 0;  // uniform across the block
  for (int32_t base = 0; base < n && kept < K; base += kThreads) {
    const int32_t i = base + tid;
    int32_t ok = 0;
    if (i < n) {
      const uint64_t key = keys[b * cap + i];
      const int64_t cand = static_cast<int64_t>(key & 0xFFFFFFFFULL);
      const int32_t a = static_cast<int32_t>(cand / C);
      const int32_t c = static_cast<int32_t>(cand % C);
      chunk_anchor[tid] = a;
      chunk_cls[tid] = c;
      chunk_score[tid] = scores[b * cap + cand];
      shifted_box(img_boxes + static_cast<int64_t>(a) * 4, c, unit, chunk_box[tid]);
      ok = 1;
      // Against every detection kept by earlier chunks (the output rows written so far).
      for (int32_t j = 0; j < kept; ++j) {
        if (out_classes[j] != c) {
          continue;
        }
        float kept_box[4];
        shifted_box(out_boxes + static_cast<int64_t>(j) * 4, c, unit, kept_box);
        if (suppresses(box_iou(kept_box, chunk_box[tid]), iou_threshold)) {
          ok = 0;
          break;
        }
      }
    }
    alive[tid] = ok;
    __syncthreads();
    // Resolve the chunk in score order; only a kept candidate changes anything (and synchronises).
    const int32_t limit = min(kThreads, n - base);
    for (int t = 0; t < limit && kept < K; ++t) {
      if (alive[t] == 0) {
        continue;
      }
      if (tid == 0) {
        const float* src = img_boxes + static_cast<int64_t>(chunk_anchor[t]) * 4;
        for (int q = 0; q < 4; ++q) {
          out_boxes[static_cast<int64_t>(kept) * 4 + q] = src[q];
        }
        out_scores[kept] = chunk_score[t];
        out_classes[kept] = chunk_cls[t];
      }
      ++kept;
      if (tid > t && alive[tid] != 0 && chunk_cls[tid] == chunk_cls[t] &&
          suppresses(box_iou(chunk_box[t], chunk_box[tid]), iou_threshold)) {
        alive[tid] = 0;
      }
      __syncthreads();
    }
    __syncthreads();  // the chunk buffers are refilled next
  }
  for (int32_t j = kept + tid; j < K; j += kThreads) {
    for (int q = 0; q < 4; ++q) {
      out_boxes[static_cast<int64_t>(j) * 4 + q] = kPadBox;
    }
    out_scores[j] = kPadScore;
    out_classes[j] = kPadClass;
  }
  if (tid == 0) {
    num_dets[b] = kept;
  }
}

}  // namespace

cudaError_t cuda_workspace_size(const NmsShape& shape, size_t* bytes) {
  Workspace ws{};
  const cudaError_t err = plan(shape, nullptr, &ws);
  *bytes = ws.total;
  return err;
}

cudaError_t launch_nms_cuda(const NmsAttributes& attrs, const NmsShape& shape, const float* boxes,
                            const float* scores, const NmsOutputs& out, void* workspace, size_t workspace_bytes,
                            cudaStream_t stream) {
  const int64_t B = shape.batch;
  const int64_t A = shape.anchors;
  const int64_t C = shape.classes;
  const int64_t cap = A * C;
  if (B == 0) {
    return cudaSuccess;
  }
  Workspace ws{};
  cudaError_t err = plan(shape, static_cast<char*>(workspace), &ws);
  if (err != cudaSuccess) {
    return err;
  }
  if (workspace_bytes < ws.total) {
    return cudaErrorInvalidValue;
  }
  const unsigned small_grid = static_cast<unsigned>((B + kThreads - 1) / kThreads);
  init_kernel<<<small_grid, kThreads, 0, stream>>>(ws.counts, ws.box_max, ws.box_min, B);
  if (cap > 0) {
    const dim3 grid(static_cast<unsigned>((cap + kThreads - 1) / kThreads), static_cast<unsigned>(B));
    gather_kernel<<<grid, kThreads, 0, stream>>>(boxes, scores, A, C, attrs.score_threshold, ws.counts, ws.box_max,
                                                 ws.box_min, ws.keys_in);
  }
  segments_kernel<<<small_grid, kThreads, 0, stream>>>(ws.counts, B, cap, ws.seg_begin, ws.seg_end);
  size_t temp = ws.sort_temp_bytes;
  err = cub::DeviceSegmentedRadixSort::SortKeys(ws.sort_temp, temp, ws.keys_in, ws.keys_out, B * cap, B,
                                                ws.seg_begin, ws.seg_end, 0, 64, stream);
  if (err != cudaSuccess) {
    return err;
  }
  greedy_kernel<<<static_cast<unsigned>(B), kThreads, 0, stream>>>(
      boxes, scores, A, C, attrs.iou_threshold, attrs.max_output_boxes, ws.counts, ws.box_max, ws.box_min,
      ws.keys_out, out.num_dets, out.det_boxes, out.det_scores, out.det_classes);
  return cudaGetLastError();
}

}  // namespace gflv2_nms
