/* gflv2 runtime: C ABI. A model file (an exported ONNX, or a TensorRT engine with its <engine>.json manifest)
 * in, detections in original-picture pixels out.
 *
 *   gflv2_detector* det = NULL;
 *   if (gflv2_detector_create("model.onnx", NULL, &det) != GFLV2_OK) puts(gflv2_last_error());
 *   gflv2_image img = {pixels, height, width, 3, 0, 0};           // BGR, 8 bits, row-major
 *   gflv2_result* res = NULL;
 *   if (gflv2_detector_detect(det, &img, 1, &res) == GFLV2_OK) {
 *     const gflv2_detection* d = gflv2_result_detections(res, 0);  // gflv2_result_count(res, 0) of them
 *     gflv2_result_release(res);
 *   }
 *   gflv2_detector_destroy(det);
 *
 * Every function returns a status; on failure gflv2_last_error() holds one line saying what happened and what
 * to do (thread-local: the message of the calling thread's last failed call). No C++ exception crosses this
 * boundary. Threads: a detector is used by one thread at a time; gflv2_detector_clone gives another thread its
 * own detector sharing the loaded model (the ONNX Runtime session or the TensorRT engine).
 */
#ifndef GFLV2_GFLV2_H
#define GFLV2_GFLV2_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define GFLV2_API __declspec(dllexport)
#else
#define GFLV2_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* 2: gflv2_options and gflv2_settings start with struct_size, so they can grow without breaking callers */
#define GFLV2_ABI_VERSION 2

typedef enum gflv2_status {
  GFLV2_OK = 0,
  GFLV2_E_INVALID_ARGUMENT = 1, /* a null pointer, a bad count or option */
  GFLV2_E_FILE_NOT_FOUND = 2,   /* the model (or the manifest beside an engine) does not exist */
  GFLV2_E_MODEL = 3,            /* the file is not a loadable model (corrupt, not ONNX, wrong engine) */
  GFLV2_E_CONTRACT = 4,         /* the graph contract is missing, malformed or of a version this library does not read */
  GFLV2_E_ENGINE_MISMATCH = 5,  /* the engine was built by another TensorRT version or for another GPU */
  GFLV2_E_IMAGE = 6,            /* an image is empty, undecodable or not 8-bit BGR with 3 channels */
  GFLV2_E_BACKEND = 7,          /* the inference backend failed while running */
  GFLV2_E_UNSUPPORTED = 8,      /* a feature this build or machine lacks (CUDA provider, TensorRT library) */
  GFLV2_E_INTERNAL = 9          /* a bug: please report it with the message */
} gflv2_status;

typedef struct gflv2_detector gflv2_detector; /* opaque */
typedef struct gflv2_result gflv2_result;     /* opaque: detections of one detect call */

/* Versioned structs: struct_size is sizeof the struct the caller was compiled with. The library reads (and writes)
 * only that many bytes; fields a caller's older header lacks keep their defaults. 0, or more than this library's
 * own size (a newer header), is refused with GFLV2_E_INVALID_ARGUMENT. */
typedef struct gflv2_options {
  uint32_t struct_size;     /* sizeof(gflv2_options); gflv2_options_default() sets it */
  int32_t intra_op_threads; /* ONNX Runtime intra-op threads; 0 = the library's choice */
  const char* device;       /* NULL or "" (default): the model's device, cpu for an ONNX and cuda:0 for an engine;
                               "cpu" (ONNX only: an engine is refused on cpu), "cuda" or "cuda:N" */
  int32_t cuda_graphs;      /* TensorRT: replay static-shape launches as CUDA graphs (default 1) */
} gflv2_options;

/* Settings a caller may change per detector; the contract's are the default (gflv2_detector_get_settings).
 * The NMS settings apply to pre-NMS graphs; an end-to-end graph has its own baked in. */
typedef struct gflv2_settings {
  uint32_t struct_size;  /* sizeof(gflv2_settings): set it before gflv2_detector_get_settings */
  int32_t test_scale[2]; /* keep-ratio bounds (long, short), any order */
  double score_thr;      /* candidates have score > score_thr */
  double iou_thr;        /* same-class suppression when IoU > iou_thr */
  int32_t max_per_img;
} gflv2_settings;

typedef struct gflv2_tensors gflv2_tensors; /* opaque: raw graph outputs of gflv2_detector_infer */

typedef struct gflv2_image {
  const uint8_t* data;  /* pixels (BGR, 8 bits, row-major) or, with encoded_size > 0, an encoded picture */
  int32_t height;       /* rows (pixels only) */
  int32_t width;        /* columns (pixels only) */
  int32_t channels;     /* must be 3 (pixels only) */
  int64_t stride;       /* bytes from one row to the next; 0 = width * channels (pixels only) */
  int64_t encoded_size; /* > 0: data holds a JPEG/PNG/... file of this many bytes, decoded to BGR */
} gflv2_image;

typedef struct gflv2_detection {
  float x1, y1, x2, y2; /* original-picture pixels, not clamped to the picture */
  float score;          /* joint class x quality score in [0, 1] */
  int32_t label;        /* class index into gflv2_detector_class_name */
} gflv2_detection;

/* Lifetime of returned strings: gflv2_version, gflv2_status_name: static. gflv2_last_error: thread-local, valid until
 * the calling thread's next gflv2 call. gflv2_detector_class_name, gflv2_detector_contract_json: owned by the
 * detector, valid until gflv2_detector_destroy. gflv2_tensors_get's name and dtype: until gflv2_tensors_release. */
GFLV2_API int32_t gflv2_abi_version(void);
GFLV2_API const char* gflv2_version(void); /* "0.2.0": the version of the library and of gflv2-deploy it belongs to */
GFLV2_API gflv2_options gflv2_options_default(void);
GFLV2_API const char* gflv2_last_error(void);
GFLV2_API const char* gflv2_status_name(gflv2_status status);

/* options may be NULL (defaults). On failure *out is NULL. */
GFLV2_API gflv2_status gflv2_detector_create(const char* model_path, const gflv2_options* options, gflv2_detector** out);
/* A detector for another thread, sharing the loaded model, with its own buffers (and TensorRT context). */
GFLV2_API gflv2_status gflv2_detector_clone(const gflv2_detector* detector, gflv2_detector** out);
GFLV2_API void gflv2_detector_destroy(gflv2_detector* detector);

GFLV2_API size_t gflv2_detector_num_classes(const gflv2_detector* detector);
GFLV2_API const char* gflv2_detector_class_name(const gflv2_detector* detector, size_t label);
/* The graph contract as JSON (valid while the detector lives). */
GFLV2_API const char* gflv2_detector_contract_json(const gflv2_detector* detector);

/* Detect on num_images pictures as one batch. On success *out holds one entry per picture (release it). */
GFLV2_API gflv2_status gflv2_detector_detect(gflv2_detector* detector, const gflv2_image* images, size_t num_images,
                                             gflv2_result** out);
GFLV2_API size_t gflv2_result_num_images(const gflv2_result* result);
GFLV2_API size_t gflv2_result_count(const gflv2_result* result, size_t image);
GFLV2_API const gflv2_detection* gflv2_result_detections(const gflv2_result* result, size_t image);
GFLV2_API void gflv2_result_release(gflv2_result* result);

GFLV2_API gflv2_status gflv2_detector_get_settings(const gflv2_detector* detector, gflv2_settings* out);
GFLV2_API gflv2_status gflv2_detector_set_settings(gflv2_detector* detector, const gflv2_settings* settings);

/* The graph alone on a preprocessed batch: images n x 3 x h x w (shape[4]; for a graph exported with --input uint8,
 * n x h x w x 3 pixel values 0-255 carried as floats), img_shape n x 2 (height, width of
 * each unpadded picture; NULL = the whole h x w). *out holds the contract's outputs in order (release it). */
GFLV2_API gflv2_status gflv2_detector_infer(gflv2_detector* detector, const float* images, const int64_t shape[4],
                                            const float* img_shape, gflv2_tensors** out);
GFLV2_API size_t gflv2_tensors_count(const gflv2_tensors* tensors);
/* Output `index`: its name, dtype ("float32", "int32", ...), shape (rank dims) and data; valid until released. */
GFLV2_API gflv2_status gflv2_tensors_get(const gflv2_tensors* tensors, size_t index, const char** name, const char** dtype,
                                         const int64_t** shape, size_t* rank, const void** data);
GFLV2_API void gflv2_tensors_release(gflv2_tensors* tensors);

/* Milliseconds of the last detect call on this detector: preprocessing, inference, post-processing. */
GFLV2_API gflv2_status gflv2_detector_last_timings(const gflv2_detector* detector, double out_ms[3]);

/* The network input the detector would feed for these pictures (N x 3 x H x W float32; N x H x W x 3 pixel values
 * for a uint8-input graph), for parity checks.
 * Call with buffer NULL to get the shape in shape[4]; then with a buffer of at least `capacity` floats. */
GFLV2_API gflv2_status gflv2_detector_preprocess(gflv2_detector* detector, const gflv2_image* images,
                                                 size_t num_images, float* buffer, size_t capacity,
                                                 int64_t shape[4]);

#ifdef __cplusplus
}
#endif
#endif /* GFLV2_GFLV2_H */
