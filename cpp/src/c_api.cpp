// The C ABI (include/gflv2/gflv2.h) over gflv2::Detector. Every entry point catches everything: a C++
// exception becomes a status code and the calling thread's last-error message.
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gflv2/detector.hpp"
#include "gflv2/gflv2.h"

struct gflv2_detector {
  gflv2::Detector detector;
};

struct gflv2_result {
  std::vector<std::vector<gflv2_detection>> images;
};

struct gflv2_tensors {
  std::vector<gflv2::OutputTensor> outputs;
};

namespace {

thread_local std::string g_last_error;

gflv2_status fail(gflv2_status status, const std::string& message) {
  g_last_error = message;
  return status;
}

template <typename F>
gflv2_status guarded(F&& body) noexcept {
  try {
    body();
    return GFLV2_OK;
  } catch (const gflv2::Error& e) {
    return fail(static_cast<gflv2_status>(e.status()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(GFLV2_E_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return fail(GFLV2_E_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(GFLV2_E_INTERNAL, "internal error (unknown exception)");
  }
}

std::vector<gflv2::ImageView> views(const gflv2_image* images, size_t n) {
  if (images == nullptr) throw gflv2::Error(gflv2::Status::kInvalidArgument, "images is a null pointer");
  if (n == 0) throw gflv2::Error(gflv2::Status::kInvalidArgument, "detect needs at least one image, got none");
  std::vector<gflv2::ImageView> out;
  for (size_t i = 0; i < n; ++i) {
    const gflv2_image& im = images[i];
    if (im.stride < 0 || im.encoded_size < 0) {
      throw gflv2::Error(gflv2::Status::kImage, "image " + std::to_string(i) + " has a negative stride or size");
    }
    out.push_back({im.data, im.height, im.width, im.channels, static_cast<size_t>(im.stride),
                   static_cast<size_t>(im.encoded_size)});
  }
  return out;
}

// A caller's versioned struct (gflv2.h: struct_size): its size checked (gflv2::Error otherwise, turned into
// GFLV2_E_INVALID_ARGUMENT by guarded) and that many bytes copied over `out`, which holds our defaults.
void check_struct_size(uint32_t size, std::size_t ours, const char* name) {
  if (size == 0 || size > ours) {
    throw gflv2::Error(gflv2::Status::kInvalidArgument,
                       std::string(name) + ".struct_size is " + std::to_string(size) +
                           (size == 0 ? "" : ", larger than this library's (a newer gflv2.h?)") + ": set it to sizeof(" +
                           name + ") of the gflv2.h of version " + GFLV2_VERSION);
  }
}

template <class T>
void read_versioned(const T& in, T* out, const char* name) {
  check_struct_size(in.struct_size, sizeof(T), name);
  std::memcpy(static_cast<void*>(out), static_cast<const void*>(&in), in.struct_size);
  out->struct_size = sizeof(T);
}

}  // namespace

extern "C" {

int32_t gflv2_abi_version(void) { return GFLV2_ABI_VERSION; }

const char* gflv2_version(void) { return GFLV2_VERSION; }

gflv2_options gflv2_options_default(void) { return gflv2_options{sizeof(gflv2_options), 0, "", 1}; }

const char* gflv2_last_error(void) { return g_last_error.c_str(); }

const char* gflv2_status_name(gflv2_status status) {
  switch (status) {
    case GFLV2_OK: return "ok";
    case GFLV2_E_INVALID_ARGUMENT: return "invalid argument";
    case GFLV2_E_FILE_NOT_FOUND: return "file not found";
    case GFLV2_E_MODEL: return "model not loadable";
    case GFLV2_E_CONTRACT: return "graph contract";
    case GFLV2_E_ENGINE_MISMATCH: return "engine mismatch";
    case GFLV2_E_IMAGE: return "bad image";
    case GFLV2_E_BACKEND: return "backend failure";
    case GFLV2_E_UNSUPPORTED: return "unsupported";
    case GFLV2_E_INTERNAL: return "internal error";
  }
  return "unknown status";
}

gflv2_status gflv2_detector_create(const char* model_path, const gflv2_options* options, gflv2_detector** out) {
  if (out == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "out is a null pointer");
  *out = nullptr;
  if (model_path == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "model_path is a null pointer");
  return guarded([&] {
    gflv2_options given = gflv2_options_default();
    if (options != nullptr) read_versioned(*options, &given, "gflv2_options");
    gflv2::DetectorOptions o;
    o.intra_op_threads = given.intra_op_threads;
    o.device = given.device != nullptr ? given.device : "";
    o.cuda_graphs = given.cuda_graphs != 0;
    auto handle = std::make_unique<gflv2_detector>(gflv2_detector{gflv2::Detector(model_path, o)});
    *out = handle.release();
  });
}

gflv2_status gflv2_detector_clone(const gflv2_detector* detector, gflv2_detector** out) {
  if (out == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "out is a null pointer");
  *out = nullptr;
  if (detector == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector is a null pointer");
  return guarded([&] { *out = std::make_unique<gflv2_detector>(gflv2_detector{detector->detector.clone()}).release(); });
}

void gflv2_detector_destroy(gflv2_detector* detector) { std::unique_ptr<gflv2_detector> owned(detector); }

size_t gflv2_detector_num_classes(const gflv2_detector* detector) {
  return detector == nullptr ? 0 : detector->detector.class_names().size();
}

const char* gflv2_detector_class_name(const gflv2_detector* detector, size_t label) {
  if (detector == nullptr || label >= detector->detector.class_names().size()) return nullptr;
  return detector->detector.class_names()[label].c_str();
}

const char* gflv2_detector_contract_json(const gflv2_detector* detector) {
  return detector == nullptr ? nullptr : detector->detector.contract_json().c_str();
}

gflv2_status gflv2_detector_detect(gflv2_detector* detector, const gflv2_image* images, size_t num_images,
                                   gflv2_result** out) {
  if (out == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "out is a null pointer");
  *out = nullptr;
  if (detector == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector is a null pointer");
  return guarded([&] {
    const auto dets = detector->detector.detect(views(images, num_images));
    auto result = std::make_unique<gflv2_result>();
    result->images.resize(dets.size());
    for (size_t i = 0; i < dets.size(); ++i) {
      for (const auto& d : dets[i]) result->images[i].push_back({d.x1, d.y1, d.x2, d.y2, d.score, d.label});
    }
    *out = result.release();
  });
}

size_t gflv2_result_num_images(const gflv2_result* result) { return result == nullptr ? 0 : result->images.size(); }

size_t gflv2_result_count(const gflv2_result* result, size_t image) {
  return (result == nullptr || image >= result->images.size()) ? 0 : result->images[image].size();
}

const gflv2_detection* gflv2_result_detections(const gflv2_result* result, size_t image) {
  if (result == nullptr || image >= result->images.size() || result->images[image].empty()) return nullptr;
  return result->images[image].data();
}

void gflv2_result_release(gflv2_result* result) { std::unique_ptr<gflv2_result> owned(result); }

gflv2_status gflv2_detector_get_settings(const gflv2_detector* detector, gflv2_settings* out) {
  if (detector == nullptr || out == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector or out is a null pointer");
  return guarded([&] {
    const uint32_t size = out->struct_size;
    check_struct_size(size, sizeof(gflv2_settings), "gflv2_settings");
    const gflv2::Settings s = detector->detector.settings();
    const gflv2_settings full{sizeof(gflv2_settings), {s.test_scale[0], s.test_scale[1]}, s.score_thr, s.iou_thr,
                              s.max_per_img};
    std::memcpy(static_cast<void*>(out), static_cast<const void*>(&full), size);  // only the fields the caller has
    out->struct_size = size;
  });
}

gflv2_status gflv2_detector_set_settings(gflv2_detector* detector, const gflv2_settings* settings) {
  if (detector == nullptr || settings == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector or settings is a null pointer");
  return guarded([&] {
    const gflv2::Settings now = detector->detector.settings();  // fields an older caller lacks stay as they are
    gflv2_settings given{sizeof(gflv2_settings), {now.test_scale[0], now.test_scale[1]}, now.score_thr, now.iou_thr,
                         now.max_per_img};
    read_versioned(*settings, &given, "gflv2_settings");
    detector->detector.set_settings({{given.test_scale[0], given.test_scale[1]}, given.score_thr, given.iou_thr,
                                     given.max_per_img});
  });
}

gflv2_status gflv2_detector_infer(gflv2_detector* detector, const float* images, const int64_t shape[4],
                                  const float* img_shape, gflv2_tensors** out) {
  if (out == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "out is a null pointer");
  *out = nullptr;
  if (detector == nullptr || shape == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector or shape is a null pointer");
  return guarded([&] {
    auto tensors = std::make_unique<gflv2_tensors>();
    tensors->outputs = detector->detector.infer(images, std::vector<int64_t>(shape, shape + 4), img_shape);
    *out = tensors.release();
  });
}

size_t gflv2_tensors_count(const gflv2_tensors* tensors) { return tensors == nullptr ? 0 : tensors->outputs.size(); }

gflv2_status gflv2_tensors_get(const gflv2_tensors* tensors, size_t index, const char** name, const char** dtype,
                               const int64_t** shape, size_t* rank, const void** data) {
  if (tensors == nullptr || index >= tensors->outputs.size()) {
    return fail(GFLV2_E_INVALID_ARGUMENT, "no output " + std::to_string(index));
  }
  const gflv2::OutputTensor& t = tensors->outputs[index];
  if (name) *name = t.name.c_str();
  if (dtype) *dtype = t.dtype.c_str();
  if (shape) *shape = t.shape.data();
  if (rank) *rank = t.shape.size();
  if (data) *data = t.bytes.data();
  return GFLV2_OK;
}

void gflv2_tensors_release(gflv2_tensors* tensors) { std::unique_ptr<gflv2_tensors> owned(tensors); }

gflv2_status gflv2_detector_last_timings(const gflv2_detector* detector, double out_ms[3]) {
  if (detector == nullptr || out_ms == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector or out_ms is a null pointer");
  const gflv2::Timings t = detector->detector.last_timings();
  out_ms[0] = t.preprocess_ms;
  out_ms[1] = t.inference_ms;
  out_ms[2] = t.postprocess_ms;
  return GFLV2_OK;
}

gflv2_status gflv2_detector_preprocess(gflv2_detector* detector, const gflv2_image* images, size_t num_images,
                                       float* buffer, size_t capacity, int64_t shape[4]) {
  if (detector == nullptr || shape == nullptr) return fail(GFLV2_E_INVALID_ARGUMENT, "detector or shape is a null pointer");
  return guarded([&] {
    const gflv2::InputTensor tensor = detector->detector.preprocess(views(images, num_images));
    for (int i = 0; i < 4; ++i) shape[i] = tensor.shape[i];
    if (buffer == nullptr) return;
    if (capacity < tensor.data.size()) {
      throw gflv2::Error(gflv2::Status::kInvalidArgument, "buffer holds " + std::to_string(capacity) + " floats, " +
                                                              std::to_string(tensor.data.size()) + " needed");
    }
    std::memcpy(buffer, tensor.data.data(), tensor.data.size() * sizeof(float));
  });
}

}  // extern "C"
