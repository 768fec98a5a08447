// The TensorRT plugin library (libgflv2_nms_trt<major>.so) driven through TensorRT's plugin interfaces without
// TensorRT: the creator from getCreators(), a logger through setLoggerFinder(), then the calls the builder and the
// runtime make. A plain program (exit 0 = passed), not gtest, because it is also the GPU check's plugin test
// (scripts/gpu_check.sh) and the GPU machine has no GTest.
//   Everywhere:  every static dimension is checked under a dynamic batch (configurePlugin).
//   No driver:   configurePlugin fails the build, naming the driver the statically linked CUDA runtime needs.
//   On a GPU:    configurePlugin stores the profile's workspace size, getWorkspaceSize returns it, the size is
//                serialised (field workspace_bytes), and a runtime plugin refuses in enqueue a shape that needs more.
#include <NvInfer.h>
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace {

int g_failures = 0;

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      ++g_failures;                                             \
      std::printf("FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                 \
      std::printf("\n");                                        \
    }                                                           \
  } while (0)

class Logger final : public ILogger {
 public:
  void log(Severity, AsciiChar const* msg) noexcept override { last = msg; }
  std::string take() {
    std::string out = last;
    last.clear();
    return out;
  }
  std::string last;
};

class Finder final : public ILoggerFinder {
 public:
  explicit Finder(Logger* logger) : logger_(logger) {}
  ILogger* findLogger() override { return logger_; }

 private:
  Logger* logger_;
};

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

Dims dims3(int64_t a, int64_t b, int64_t c) {
  Dims d{};
  d.nbDims = 3;
  d.d[0] = a;
  d.d[1] = b;
  d.d[2] = c;
  return d;
}

DynamicPluginTensorDesc desc(Dims dims, Dims max) {
  DynamicPluginTensorDesc d{};
  d.desc.dims = dims;
  d.desc.type = DataType::kFLOAT;
  d.desc.format = TensorFormat::kLINEAR;
  d.min = max;
  d.opt = max;
  d.max = max;
  return d;
}

struct PluginDeleter {
  void operator()(IPluginV3* p) const { delete p; }
};
using Plugin = std::unique_ptr<IPluginV3, PluginDeleter>;

Plugin create(IPluginCreatorV3One& creator, int32_t nms_pre, int32_t levels, TensorRTPhase phase, int64_t* workspace) {
  float score = 0.05F, iou = 0.6F;
  int32_t k = 100;
  std::vector<PluginField> fields{{"score_threshold", &score, PluginFieldType::kFLOAT32, 1},
                                  {"iou_threshold", &iou, PluginFieldType::kFLOAT32, 1},
                                  {"max_output_boxes", &k, PluginFieldType::kINT32, 1},
                                  {"nms_pre", &nms_pre, PluginFieldType::kINT32, 1},
                                  {"num_levels", &levels, PluginFieldType::kINT32, 1}};
  if (workspace != nullptr) fields.push_back({"workspace_bytes", workspace, PluginFieldType::kINT64, 1});
  PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  return Plugin(creator.createPlugin("nms", &fc, phase));
}

// configurePlugin of a fresh build-phase plugin on boxes / scores whose build dims may hold -1 (max: the profile's).
int32_t configure(IPluginCreatorV3One& creator, Dims boxes, Dims scores, Dims boxes_max, Dims scores_max,
                  int32_t nms_pre = 0, int32_t levels = 0, Plugin* keep = nullptr) {
  Plugin plugin = create(creator, nms_pre, levels, TensorRTPhase::kBUILD, nullptr);
  auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
  const DynamicPluginTensorDesc in[2] = {desc(boxes, boxes_max), desc(scores, scores_max)};
  DynamicPluginTensorDesc out[4] = {};
  const int32_t rc = build->configurePlugin(in, 2, out, 4);
  if (keep != nullptr) *keep = std::move(plugin);
  return rc;
}

}  // namespace

int main() {
  Logger logger;
  Finder finder(&logger);
  setLoggerFinder(&finder);
  int32_t count = 0;
  IPluginCreatorInterface* const* creators = getCreators(count);
  if (count != 1 || creators == nullptr) {
    std::printf("FAILED: getCreators returned %d creators\n", count);
    return 1;
  }
  auto& creator = *static_cast<IPluginCreatorV3One*>(creators[0]);

  // static dims are checked under a dynamic batch (they used to pass unchecked after the first -1)
  CHECK(configure(creator, dims3(-1, 100, 5), dims3(-1, 100, 80), dims3(8, 100, 5), dims3(8, 100, 80)) == -1, "box width 5");
  CHECK(contains(logger.take(), "boxes must be [B, A, 4]"), "message");
  CHECK(configure(creator, dims3(-1, 100, 4), dims3(-1, 99, 80), dims3(8, 100, 4), dims3(8, 99, 80)) == -1, "A differs");
  CHECK(contains(logger.take(), "disagree on B or A"), "message");
  CHECK(configure(creator, dims3(-1, 49, 4), dims3(-1, 49, 80), dims3(8, 49, 4), dims3(8, 49, 80), 10, 5) == -1,
        "A != nms_pre * num_levels");
  CHECK(contains(logger.take(), "nms_pre * num_levels"), "message");
  CHECK(configure(creator, dims3(-1, -1, 4), dims3(-1, -1, 0), dims3(8, 100, 4), dims3(8, 100, 0)) == -1, "C = 0");
  logger.take();

  int devices = 0;
  const bool gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  Plugin configured;
  const int32_t rc = configure(creator, dims3(-1, 1000, 4), dims3(-1, 1000, 80), dims3(8, 1000, 4), dims3(8, 1000, 80), 0, 0,
                               &configured);
  const std::string message = logger.take();
  if (!gpu) {
    // the size query of the statically linked CUDA runtime fails without a (new enough) driver: the build fails here
    CHECK(rc == -1, "configurePlugin accepted a profile whose workspace could not be sized");
    CHECK(contains(message, "needs an NVIDIA driver for CUDA"), "message: %s", message.c_str());
    std::printf("no CUDA device: checked the build-time refusal (%s)\n", message.c_str());
  } else {
    CHECK(rc == 0, "configurePlugin: %s", message.c_str());
    auto* build = static_cast<IPluginV3OneBuild*>(configured->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(configured->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    const size_t workspace = build->getWorkspaceSize(nullptr, 2, nullptr, 4);
    CHECK(workspace > 0, "stored workspace size");
    Plugin smaller;
    configure(creator, dims3(-1, 1000, 4), dims3(-1, 1000, 80), dims3(1, 1000, 4), dims3(1, 1000, 80), 0, 0, &smaller);
    const size_t workspace1 = static_cast<IPluginV3OneBuild*>(smaller->getCapabilityInterface(PluginCapabilityType::kBUILD))
                                  ->getWorkspaceSize(nullptr, 2, nullptr, 4);
    CHECK(workspace1 > 0 && workspace1 < workspace, "batch 1 needs less than batch 8: %zu vs %zu", workspace1, workspace);
    const PluginFieldCollection* fields = runtime->getFieldsToSerialize();
    int64_t serialised = -1;
    for (int32_t i = 0; i < fields->nbFields; ++i) {
      if (std::strcmp(fields->fields[i].name, "workspace_bytes") == 0) serialised = *static_cast<const int64_t*>(fields->fields[i].data);
    }
    CHECK(serialised == static_cast<int64_t>(workspace), "serialised %lld, stored %zu", static_cast<long long>(serialised), workspace);
    // an engine built for batch <= 1 run at batch 8: refused in enqueue before anything is launched
    int64_t small = static_cast<int64_t>(workspace1);
    Plugin deserialised = create(creator, 0, 0, TensorRTPhase::kRUNTIME, &small);
    auto* run = static_cast<IPluginV3OneRuntime*>(deserialised->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginTensorDesc in[2] = {};
    in[0].dims = dims3(8, 1000, 4);
    in[1].dims = dims3(8, 1000, 80);
    const int32_t enq = run->enqueue(in, nullptr, nullptr, nullptr, nullptr, nullptr);
    CHECK(enq == -1, "enqueue over the reserved workspace");
    const std::string refused = logger.take();
    CHECK(contains(refused, "workspace bytes, the engine reserved"), "message: %s", refused.c_str());
    std::printf("GPU: workspace batch 8 = %zu bytes, batch 1 = %zu bytes; enqueue over it refused\n", workspace, workspace1);
  }
  std::printf(g_failures == 0 ? "passed\n" : "%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
