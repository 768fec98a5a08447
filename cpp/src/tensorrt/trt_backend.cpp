// TensorRT backend (TensorRT 10 and 11: this file is compiled once against each header set, into
// libgflv2_tensorrt10.so / libgflv2_tensorrt11.so). NEVER EXECUTED on a GPU in this project so far: no TensorRT
// library exists on the development machines; it is compiled in CI against both header sets, and a test loads
// it against stub TensorRT libraries (tests/test_tensorrt_loader.cpp) up to the CUDA device query.
//
// Loading (gflv2_tensorrt_open_v2): the manifest's CUDA versions, the running TensorRT version and the GPU are
// checked against the manifest, the plugins it names are loaded BEFORE deserialising (standard plugins:
// libnvinfer_plugin.so.<major> opened here and initLibNvInferPlugins resolved with dlsym, so this library needs
// nothing but libnvinfer to load; plugin libraries through the plugin registry, after libgflv2 verified their
// SHA-256), then the engine is deserialised and every tensor the contract names is looked up by name.
// Running (TrtContext): one IExecutionContext and one CUDA stream per context (a Detector clone per thread),
// the options' CUDA device made current on every call (a clone may run on another thread), pinned host buffers
// and device buffers bound by name (setTensorAddress), inputs copied asynchronously, enqueueV3, outputs copied
// back, one synchronisation. For a shape set seen before, the enqueue is replayed as a CUDA graph (captured
// after one plain enqueue, as TensorRT requires); when capture or instantiation fails, the context falls back
// to plain enqueueV3 for good. Every call that libgflv2 makes is noexcept (entry.hpp): exceptions stop here.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include "backend.hpp"
#include "cuda_memory.hpp"
#include "device.hpp"
#include "entry.hpp"
#include "gflv2/error.hpp"
#include "manifest.hpp"

#ifndef GFLV2_TENSORRT_MAJOR
#error "compile with -DGFLV2_TENSORRT_MAJOR=10 or 11"
#endif
static_assert(NV_TENSORRT_MAJOR == GFLV2_TENSORRT_MAJOR, "TensorRT headers of another major version");

namespace gflv2 {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kERROR) {
      std::lock_guard<std::mutex> lock(mutex_);
      last_ = message;
    }
  }
  std::string last() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_;
  }

 private:
  mutable std::mutex mutex_;
  std::string last_;
};

Logger& logger() {
  static Logger instance;
  return instance;
}

std::string library_version() {
  const int32_t v = getInferLibVersion();  // major * 10000 + minor * 100 + patch (TensorRT >= 10)
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

DType from_trt(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return DType::kFloat32;
    case nvinfer1::DataType::kHALF: return DType::kFloat16;
    case nvinfer1::DataType::kINT32: return DType::kInt32;
    case nvinfer1::DataType::kINT64: return DType::kInt64;
    case nvinfer1::DataType::kINT8: return DType::kInt8;
    case nvinfer1::DataType::kUINT8: return DType::kUInt8;
    case nvinfer1::DataType::kBOOL: return DType::kBool;
    default: throw Error(Status::kModel, "the engine has a tensor of a type this runtime does not handle");
  }
}

nvinfer1::Dims dims_of(const std::vector<int64_t>& shape) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
  return d;
}

std::vector<int64_t> shape_of(const nvinfer1::Dims& d) { return std::vector<int64_t>(d.d, d.d + d.nbDims); }

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Status::kFileNotFound, "engine file not found: " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

// Run `body`; a thrown exception becomes *error (status + one line) and false. Never throws.
template <typename F>
bool guarded(BoundaryError* error, F&& body) noexcept {
  try {
    body();
    return true;
  } catch (const Error& e) {
    *error = {static_cast<int>(e.status()), e.what()};
  } catch (const std::bad_alloc&) {
    *error = {GFLV2_E_INTERNAL, "TensorRT backend: out of memory"};
  } catch (const std::exception& e) {
    *error = {GFLV2_E_INTERNAL, std::string("TensorRT backend: ") + e.what()};
  } catch (...) {
    *error = {GFLV2_E_INTERNAL, "TensorRT backend: unknown exception"};
  }
  return false;
}

// initLibNvInferPlugins from libnvinfer_plugin.so.<major>, resolved at run time: linking it would leave the
// symbol unresolved in this library, and dlopen(RTLD_NOW) of the library would then fail wherever
// libnvinfer_plugin is not loaded, even for engines that use no standard plugin.
using InitPluginsFn = bool (*)(void* logger, const char* plugin_namespace);

InitPluginsFn resolve_standard_plugins(const EngineManifest& manifest) {
  const std::string name = "libnvinfer_plugin.so." + std::to_string(GFLV2_TENSORRT_MAJOR);
  dlerror();
  void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);  // kept open: the plugins live in it
  if (library == nullptr) {
    const char* why = dlerror();
    throw Error(Status::kUnsupported, "the engine uses TensorRT's standard plugins (built with them initialised), and " +
                                          name + " cannot be loaded (" + (why ? why : "not found") +
                                          "): install TensorRT " + manifest.trt_version + "'s plugin library");
  }
  auto init = reinterpret_cast<InitPluginsFn>(dlsym(library, "initLibNvInferPlugins"));
  if (init == nullptr) {
    throw Error(Status::kUnsupported, name + " has no initLibNvInferPlugins: install TensorRT " + manifest.trt_version +
                                          "'s plugin library");
  }
  return init;
}

class TrtBackend;

struct Binding {
  std::string name;
  bool is_input = false;
  DType dtype = DType::kFloat32;
  cuda::PinnedBuffer host;
  cuda::DeviceBuffer device;
  std::vector<int64_t> shape;
  std::size_t bytes = 0;
};

class TrtContext final : public TrtContextApi {
 public:
  TrtContext(std::shared_ptr<const TrtBackend> backend, int device, bool cuda_graphs);
  void* images_buffer(std::size_t bytes, BoundaryError* error) noexcept override {
    void* buffer = nullptr;
    guarded(error, [&] {
      use_device();
      buffer = images(bytes);
    });
    return buffer;
  }
  bool infer(const std::vector<int64_t>& images_shape, const float* img_shape, std::vector<NamedTensor>* outputs,
             BoundaryError* error) noexcept override {
    return guarded(error, [&] {
      use_device();
      *outputs = run(images_shape, img_shape);
    });
  }

 private:
  // The options' device on the calling thread: CUDA's current device is per thread, and a clone may run anywhere.
  void use_device() const { made_current(device_); }
  static int made_current(int device) {  // members after device_ (the stream) are created on it
    cuda::check(cudaSetDevice(device), "cudaSetDevice");
    return device;
  }
  void* images(std::size_t bytes);
  std::vector<NamedTensor> run(const std::vector<int64_t>& images_shape, const float* img_shape);
  Binding& binding(const std::string& name);
  void enqueue();

  std::shared_ptr<const TrtBackend> backend_;
  int device_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cuda::Stream stream_;
  std::deque<Binding> bindings_;  // deque: a Binding owns CUDA buffers and never moves
  bool use_graphs_;                 // CUDA graphs: asked for, the images input fully static, capture not failed
  std::vector<int64_t> graph_key_;  // the input shape the graph was captured for
  cuda::GraphExec graph_;
};

class TrtBackend final : public TrtBackendApi, public std::enable_shared_from_this<TrtBackend> {
 public:
  TrtBackend(const std::string& path, const EngineManifest& manifest, const DetectorOptions& options)
      : contract_(manifest.contract), options_(options), device_(parse_device(options.device, /*engine=*/true).index) {
    // plugin library first: a missing one is found without touching the GPU
    const InitPluginsFn init_plugins = manifest.standard_plugins ? resolve_standard_plugins(manifest) : nullptr;
    int cuda_runtime = 0, cuda_driver = 0;
    cudaRuntimeGetVersion(&cuda_runtime);
    cudaDriverGetVersion(&cuda_driver);  // 0 without a driver
    check_cuda_versions(manifest, cuda_runtime, cuda_driver);
    int count = 0;
    const cudaError_t found = cudaGetDeviceCount(&count);
    if (found != cudaSuccess || count == 0) {
      throw Error(Status::kUnsupported, std::string("no usable CUDA GPU (") +
                                            (found != cudaSuccess ? cudaGetErrorString(found) : "no device") +
                                            "): a TensorRT engine needs an NVIDIA GPU and a driver for CUDA " +
                                            std::to_string(cuda_runtime / 1000) + " or newer");
    }
    if (device_ >= count) {
      throw Error(Status::kInvalidArgument, "device " + options.device + " does not exist: this machine has " +
                                                std::to_string(count) + " CUDA device(s), cuda:0 .. cuda:" + std::to_string(count - 1));
    }
    cuda::check(cudaSetDevice(device_), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda::check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
    check_manifest(manifest, library_version(), prop.name, std::to_string(prop.major) + "." + std::to_string(prop.minor));

    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime_) throw Error(Status::kUnsupported, "TensorRT could not create a runtime: " + logger().last());
    if (init_plugins != nullptr && !init_plugins(&logger(), "")) {
      throw Error(Status::kModel, "TensorRT's standard plugins did not initialise: " + logger().last());
    }
    for (const PluginLibrary& library : manifest.plugin_libraries) {  // verified (SHA-256) by libgflv2 before
      if (runtime_->getPluginRegistry().loadLibrary(library.path.c_str()) == nullptr) {
        throw Error(Status::kModel, "cannot load the plugin library " + library.path + " named by " + manifest.path + ": " +
                                        logger().last());
      }
    }
    const std::vector<char> plan = read_file(path);
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) {
      throw Error(Status::kModel, "TensorRT cannot deserialise " + path + ": " + logger().last() +
                                      " (a plugin missing, or the engine is corrupt: rebuild it)");
    }
    for (const auto* list : {&contract_.inputs, &contract_.outputs}) {
      for (const TensorSpec& t : *list) {
        if (engine_->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kNONE) {
          throw Error(Status::kContract, path + ": the contract names tensor '" + t.name + "', which the engine lacks");
        }
        if (from_trt(engine_->getTensorDataType(t.name.c_str())) != t.dtype) {
          throw Error(Status::kContract, path + ": tensor '" + t.name + "' has another type in the engine than in the contract");
        }
      }
    }
  }

  const Contract& contract() const noexcept override { return contract_; }
  std::unique_ptr<TrtContextApi> create_context(BoundaryError* error) noexcept override {
    std::unique_ptr<TrtContextApi> context;
    guarded(error, [&] { context = std::make_unique<TrtContext>(shared_from_this(), device_, options_.cuda_graphs); });
    return context;
  }
  nvinfer1::ICudaEngine& engine() const { return *engine_; }

 private:
  Contract contract_;
  DetectorOptions options_;
  int device_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;  // declared before the engine: destroyed after it
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
};

TrtContext::TrtContext(std::shared_ptr<const TrtBackend> backend, int device, bool cuda_graphs)
    : backend_(std::move(backend)), device_(made_current(device)), use_graphs_(cuda_graphs) {
  const TensorSpec* images = backend_->contract().find_input("images");
  for (std::size_t axis = 0; images != nullptr && axis < images->dims.size(); ++axis) {
    if (images->is_dynamic(axis)) use_graphs_ = false;  // graphs only for static shapes
  }
  context_.reset(backend_->engine().createExecutionContext());
  if (!context_) throw Error(Status::kBackend, "TensorRT could not create an execution context: " + logger().last());
  const Contract& c = backend_->contract();
  for (const auto* list : {&c.inputs, &c.outputs}) {
    for (const TensorSpec& t : *list) {
      Binding& b = bindings_.emplace_back();
      b.name = t.name;
      b.is_input = list == &c.inputs;
      b.dtype = t.dtype;
    }
  }
}

Binding& TrtContext::binding(const std::string& name) {
  for (Binding& b : bindings_) {
    if (b.name == name) return b;
  }
  throw Error(Status::kContract, "no tensor '" + name + "' in the engine's contract");
}

void* TrtContext::images(std::size_t bytes) {
  Binding& images = binding("images");
  if (images.host.reserve(bytes)) graph_.reset();
  return images.host.data();
}

void TrtContext::enqueue() {
  if (!context_->enqueueV3(stream_.get())) throw Error(Status::kBackend, "TensorRT enqueueV3 failed: " + logger().last());
}

std::vector<NamedTensor> TrtContext::run(const std::vector<int64_t>& images_shape, const float* img_shape) {
  const int64_t n = images_shape.at(0);
  std::vector<int64_t> key = images_shape;
  // inputs: shapes, buffers, host -> device copies
  for (Binding& b : bindings_) {
    if (!b.is_input) continue;
    if (b.name == "images") {
      b.shape = images_shape;
    } else if (b.name == "img_shape") {
      b.shape = {n, 2};
      binding("img_shape").host.reserve(static_cast<std::size_t>(n) * 2 * sizeof(float));
      std::memcpy(b.host.data(), img_shape, static_cast<std::size_t>(n) * 2 * sizeof(float));
    } else {
      throw Error(Status::kContract, "the engine has an input '" + b.name + "' this runtime does not know how to feed");
    }
    if (!context_->setInputShape(b.name.c_str(), dims_of(b.shape))) {
      throw Error(Status::kInvalidArgument, "the engine does not accept input '" + b.name + "' of this shape (outside its "
                                                "optimisation profile): " + logger().last());
    }
    b.bytes = dtype_size(b.dtype);
    for (int64_t d : b.shape) b.bytes *= static_cast<std::size_t>(d);
    if (b.name != "images" && b.host.reserve(b.bytes)) graph_.reset();
    if (b.device.reserve(b.bytes)) graph_.reset();
  }
  // outputs: shapes follow from the inputs (our graphs have no data-dependent output shapes)
  for (Binding& b : bindings_) {
    if (b.is_input) continue;
    b.shape = shape_of(context_->getTensorShape(b.name.c_str()));
    b.bytes = dtype_size(b.dtype);
    for (int64_t d : b.shape) {
      if (d < 0) throw Error(Status::kModel, "output '" + b.name + "' has a data-dependent shape, which this runtime does not run");
      b.bytes *= static_cast<std::size_t>(d);
    }
    if (b.host.reserve(b.bytes)) graph_.reset();
    if (b.device.reserve(b.bytes)) graph_.reset();
  }
  for (Binding& b : bindings_) {
    if (!context_->setTensorAddress(b.name.c_str(), b.device.data())) {
      throw Error(Status::kBackend, "TensorRT refused the address of '" + b.name + "'");
    }
  }
  for (Binding& b : bindings_) {
    if (b.is_input) {
      cuda::check(cudaMemcpyAsync(b.device.data(), b.host.data(), b.bytes, cudaMemcpyHostToDevice, stream_.get()),
                  "cudaMemcpyAsync (input)");
    }
  }
  // the network: a replayed CUDA graph for a shape set seen before, else a plain enqueue
  if (use_graphs_ && graph_.ready() && graph_key_ == key) {
    graph_.launch(stream_.get());
  } else {
    enqueue();
    if (use_graphs_) {  // capture after one plain enqueue (TensorRT's requirement); that enqueue's outputs are used
      cudaGraph_t graph = nullptr;
      bool ok = cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal) == cudaSuccess;
      ok = ok && context_->enqueueV3(stream_.get());
      ok = (cudaStreamEndCapture(stream_.get(), &graph) == cudaSuccess) && ok && graph != nullptr;
      if (ok && graph_.instantiate(graph)) {
        graph_key_ = key;
      } else {
        if (graph != nullptr && !ok) cudaGraphDestroy(graph);
        cudaGetLastError();
        use_graphs_ = false;  // capture is not possible for this engine: plain enqueueV3 from now on
      }
    }
  }
  std::vector<NamedTensor> outputs;
  for (Binding& b : bindings_) {
    if (b.is_input) continue;
    cuda::check(cudaMemcpyAsync(b.host.data(), b.device.data(), b.bytes, cudaMemcpyDeviceToHost, stream_.get()),
                "cudaMemcpyAsync (output)");
  }
  stream_.synchronize();
  for (Binding& b : bindings_) {
    if (b.is_input) continue;
    HostTensor t;
    t.dtype = b.dtype;
    t.shape = b.shape;
    t.data = b.host.data();  // valid until the next infer() on this context
    outputs.push_back({b.name, std::move(t)});
  }
  return outputs;
}

}  // namespace
}  // namespace gflv2

extern "C" __attribute__((visibility("default"))) int gflv2_tensorrt_open_v2(
    const char* engine_path, const gflv2::EngineManifest* manifest, const gflv2::DetectorOptions* options,
    std::shared_ptr<gflv2::TrtBackendApi>* out, char* message, std::size_t message_size) noexcept {
  auto report = [&](int status, const std::string& text) {
    if (message != nullptr && message_size > 0) {
      std::snprintf(message, message_size, "%s", text.c_str());
    }
    return status;
  };
  try {
    *out = std::make_shared<gflv2::TrtBackend>(engine_path, *manifest, *options);
    return GFLV2_OK;
  } catch (const gflv2::Error& e) {
    return report(static_cast<int>(e.status()), e.what());
  } catch (const std::exception& e) {
    return report(GFLV2_E_INTERNAL, std::string("TensorRT backend: ") + e.what());
  } catch (...) {
    return report(GFLV2_E_INTERNAL, "TensorRT backend: unknown exception");
  }
}
