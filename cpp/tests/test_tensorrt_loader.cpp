// Loading a TensorRT engine up to the GPU, against stub TensorRT libraries (tests/stubs/tensorrt_stubs.cpp):
// libgflv2.so opens libnvinfer.so.10 and the real libgflv2_tensorrt10.so, whose backend opens
// libnvinfer_plugin.so.10 and resolves initLibNvInferPlugins only for an engine built with the standard plugins.
// A stub is made visible by loading it by absolute path first (dlopen then finds it by its soname), so every
// test runs in its own process (ctest runs each gtest case alone); the stubs never run TensorRT.
// The engines are stand-in files with manifests written by the Python writer (make_test_models.py).
#include <gtest/gtest.h>

#include <dlfcn.h>

#include "gflv2/detector.hpp"
#include "test_support.hpp"

namespace gflv2 {
namespace {

void preload(const char* path) { ASSERT_NE(dlopen(path, RTLD_NOW | RTLD_GLOBAL), nullptr) << dlerror(); }

std::pair<Status, std::string> open_engine(const std::string& name, const std::string& device = "cuda") {
  DetectorOptions options;
  options.device = device;
  try {
    Detector detector(testing::model(name), options);
  } catch (const Error& e) {
    return {e.status(), e.what()};
  }
  return {static_cast<Status>(0), ""};
}

// Where loading stopped once the backend library is in: at the GPU (this machine has no driver), or, on a
// GPU machine, at the stub's null runtime or at the manifest's GPU check. Never at loading a library.
void expect_backend_reached(const std::pair<Status, std::string>& result) {
  const std::string& message = result.second;
  EXPECT_EQ(message.find("cannot load"), std::string::npos) << message;
  EXPECT_EQ(message.find("undefined symbol"), std::string::npos) << message;
  const bool at_gpu = message.find("no usable CUDA GPU") != std::string::npos;
  const bool at_runtime = message.find("TensorRT could not create a runtime") != std::string::npos;
  const bool at_target = message.find("engine was built for") != std::string::npos;
  EXPECT_TRUE(at_gpu || at_runtime || at_target) << message;
}

TEST(TensorrtLoader, WithoutLibnvinferSaysToInstallTensorrt) {
  const auto [status, message] = open_engine("tiny_trt10.plan");
  EXPECT_EQ(status, Status::kUnsupported);
  EXPECT_NE(message.find("cannot load TensorRT 10 (libnvinfer.so.10"), std::string::npos) << message;
  EXPECT_NE(message.find("install TensorRT 10.16.0"), std::string::npos) << message;
}

TEST(TensorrtLoader, BackendLoadsWithLibnvinferAlone) {
  // libgflv2_tensorrt10.so used to leave initLibNvInferPlugins (libnvinfer_plugin's) unresolved: dlopen(RTLD_NOW)
  // then failed wherever libnvinfer_plugin was not loaded, i.e. for every engine built without standard plugins
  preload(GFLV2_STUB_NVINFER);
  expect_backend_reached(open_engine("tiny_trt10.plan"));
}

TEST(TensorrtLoader, StandardPluginsNeedLibnvinferPlugin) {
  preload(GFLV2_STUB_NVINFER);
  const auto [status, message] = open_engine("tiny_trt10_std.plan");
  EXPECT_EQ(status, Status::kUnsupported);
  EXPECT_NE(message.find("standard plugins"), std::string::npos) << message;
  EXPECT_NE(message.find("libnvinfer_plugin.so.10 cannot be loaded"), std::string::npos) << message;
}

TEST(TensorrtLoader, StandardPluginsResolvedFromLibnvinferPlugin) {
  preload(GFLV2_STUB_NVINFER);
  preload(GFLV2_STUB_NVINFER_PLUGIN);
  expect_backend_reached(open_engine("tiny_trt10_std.plan"));
}

TEST(TensorrtLoader, RefusesCpuAndMalformedDevicesBeforeLoading) {
  preload(GFLV2_STUB_NVINFER);
  for (const char* device : {"cpu", "cuda:abc", "cuda:", "cuda:-1", "gpu"}) {
    const auto [status, message] = open_engine("tiny_trt10.plan", device);
    EXPECT_EQ(status, Status::kInvalidArgument) << device << ": " << message;
    EXPECT_NE(message.find("cuda"), std::string::npos) << message;
  }
  expect_backend_reached(open_engine("tiny_trt10.plan", ""));  // the default: cuda:0 for an engine
}

}  // namespace
}  // namespace gflv2
