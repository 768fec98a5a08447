// Stand-ins for TensorRT's C entry points, built twice by tests/CMakeLists.txt: as libnvinfer.so.10
// (STUB_NVINFER: getInferLibVersion, createInferRuntime_INTERNAL) and as libnvinfer_plugin.so.10
// (STUB_NVINFER_PLUGIN: initLibNvInferPlugins). TensorRT cannot be installed on the development machines; these
// let test_tensorrt_loader.cpp exercise libgflv2's dlopen / dlsym logic with the real libgflv2_tensorrt10.so.
// They create nothing: a runtime request returns null.
#include <cstdint>

#if defined(STUB_NVINFER)
extern "C" __attribute__((visibility("default"))) int32_t getInferLibVersion() noexcept { return 101600; }  // 10.16.0
extern "C" __attribute__((visibility("default"))) void* createInferRuntime_INTERNAL(void*, int32_t) noexcept { return nullptr; }
#elif defined(STUB_NVINFER_PLUGIN)
extern "C" __attribute__((visibility("default"))) bool initLibNvInferPlugins(void*, const char*) noexcept { return true; }
#else
#error "define STUB_NVINFER or STUB_NVINFER_PLUGIN"
#endif
