/* c_detect MODEL PICTURE: detections of one picture through the gflv2 C ABI (gflv2.h).
 * The picture is handed over encoded (JPEG/PNG bytes): the library decodes it, so this program needs no image
 * library. Prints the count, the time of the detect call and the five best detections. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <gflv2/gflv2.h>

static unsigned char* read_file(const char* path, long* size) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return NULL;
  unsigned char* data = NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (*size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
    data = malloc((size_t)*size);
    if (data != NULL && fread(data, 1, (size_t)*size, f) != (size_t)*size) {
      free(data);
      data = NULL;
    }
  }
  fclose(f);
  return data;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: c_detect MODEL PICTURE\n");
    return 2;
  }
  long size = 0;
  unsigned char* bytes = read_file(argv[2], &size);
  if (bytes == NULL) {
    fprintf(stderr, "error: cannot read %s\n", argv[2]);
    return 1;
  }
  gflv2_options options = gflv2_options_default(); /* sets struct_size */
  options.intra_op_threads = 2;
  gflv2_detector* detector = NULL;
  if (gflv2_detector_create(argv[1], &options, &detector) != GFLV2_OK) {
    fprintf(stderr, "error: %s\n", gflv2_last_error());
    free(bytes);
    return 1;
  }
  gflv2_image image = {bytes, 0, 0, 3, 0, size};
  gflv2_result* result = NULL;
  const double start = now_ms();
  const gflv2_status status = gflv2_detector_detect(detector, &image, 1, &result);
  const double elapsed = now_ms() - start;
  int rc = 0;
  if (status != GFLV2_OK) {
    fprintf(stderr, "error: %s\n", gflv2_last_error());
    rc = 1;
  } else {
    const size_t n = gflv2_result_count(result, 0);
    const gflv2_detection* d = gflv2_result_detections(result, 0);
    printf("c_detect: gflv2 %s, %zu detections in %.1f ms\n", gflv2_version(), n, elapsed);
    for (size_t i = 0; i < n && i < 5; ++i) {
      printf("  %-14s %.3f  [%.1f, %.1f, %.1f, %.1f]\n", gflv2_detector_class_name(detector, (size_t)d[i].label),
             d[i].score, d[i].x1, d[i].y1, d[i].x2, d[i].y2);
    }
    gflv2_result_release(result);
  }
  gflv2_detector_destroy(detector);
  free(bytes);
  return rc;
}
