// gflv2::Detector: preprocessing -> backend -> post-processing, with per-instance buffers and a shared model.
#include "gflv2/detector.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "backend.hpp"
#include "image.hpp"
#include "postprocess.hpp"
#include "preprocess.hpp"

namespace gflv2 {

struct Detector::Impl {
  std::shared_ptr<Backend> backend;
  std::unique_ptr<BackendContext> context;
  PreprocessingSpec pre;    // the contract's, with this detector's Settings applied
  PostprocessingSpec post;
  Preprocessor preprocessor;
  std::vector<ImageGeometry> geometry;
  std::vector<float> img_shape;
  Timings timings;

  explicit Impl(std::shared_ptr<Backend> b)
      : backend(std::move(b)),
        context(backend->create_context()),
        pre(backend->contract().preprocessing),
        post(backend->contract().postprocessing),
        preprocessor(pre) {}

  Impl(const Impl& other)  // a clone: same model and settings, its own context and buffers
      : backend(other.backend), context(backend->create_context()), pre(other.pre), post(other.post), preprocessor(pre) {}

  // Preprocess into the context's reused images buffer (*data: floats, or uint8 pictures for a graph whose
  // contract says input_format uint8_nhwc_bgr); returns the images shape (n x 3 x h x w, or n x h x w x 3).
  std::vector<int64_t> prepare(const std::vector<cv::Mat>& mats, void** data) {
    const BatchShape shape = preprocessor.plan(mats, geometry);
    const TensorSpec* images = backend->contract().find_input("images");
    if (!images->is_dynamic(0) && images->dims[0] != shape.n) {
      throw Error(Status::kInvalidArgument, "the model takes a fixed batch of " + std::to_string(images->dims[0]) +
                                                " images, got " + std::to_string(shape.n));
    }
    const std::size_t count = static_cast<std::size_t>(shape.n * 3 * shape.h * shape.w);
    if (pre.uint8_input) {
      *data = context->images_buffer(count);
      preprocessor.run_pixels(mats, geometry, shape, static_cast<uint8_t*>(*data));
    } else {
      *data = context->images_buffer(count * sizeof(float));
      preprocessor.run(mats, geometry, shape, static_cast<float*>(*data));
    }
    img_shape.resize(geometry.size() * 2);
    for (std::size_t i = 0; i < geometry.size(); ++i) {
      img_shape[2 * i] = static_cast<float>(geometry[i].new_h);
      img_shape[2 * i + 1] = static_cast<float>(geometry[i].new_w);
    }
    if (pre.uint8_input) return {shape.n, shape.h, shape.w, 3};
    return {shape.n, 3, shape.h, shape.w};
  }
};

namespace {
double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Detector::Detector(const std::string& model_path, const DetectorOptions& options)
    : impl_(std::make_unique<Impl>(open_backend(model_path, options))) {}

Detector::Detector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Detector::~Detector() = default;
Detector::Detector(Detector&&) noexcept = default;
Detector& Detector::operator=(Detector&&) noexcept = default;

Detector Detector::clone() const { return Detector(std::make_unique<Impl>(*impl_)); }

std::vector<Detections> Detector::detect(const std::vector<ImageView>& images) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<cv::Mat> mats = images_to_mats(images);
  void* data = nullptr;
  const std::vector<int64_t> shape = impl_->prepare(mats, &data);
  const double pre = ms_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<NamedTensor> outputs = impl_->context->infer(shape, impl_->img_shape.data());
  const double infer = ms_since(t1);
  const auto t2 = std::chrono::steady_clock::now();
  const Contract& contract = impl_->backend->contract();
  std::vector<Detections> result = postprocess(contract.end_to_end(), impl_->post, outputs, impl_->geometry,
                                               static_cast<int64_t>(contract.class_names.size()));
  impl_->timings = {pre, infer, ms_since(t2)};
  return result;
}

Detections Detector::detect(const ImageView& image) { return std::move(detect(std::vector<ImageView>{image}).at(0)); }

InputTensor Detector::preprocess(const std::vector<ImageView>& images) {
  const std::vector<cv::Mat> mats = images_to_mats(images);
  void* data = nullptr;
  InputTensor tensor;
  tensor.shape = impl_->prepare(mats, &data);
  const std::size_t count = static_cast<std::size_t>(tensor.shape[0] * tensor.shape[1] * tensor.shape[2] * tensor.shape[3]);
  if (impl_->pre.uint8_input) {  // pixel values 0-255, exact in float
    const auto* pixels = static_cast<const uint8_t*>(data);
    tensor.data.assign(pixels, pixels + count);
  } else {
    const auto* values = static_cast<const float*>(data);
    tensor.data.assign(values, values + count);
  }
  return tensor;
}

std::vector<OutputTensor> Detector::infer(const float* images, const std::vector<int64_t>& shape, const float* img_shape) {
  if (images == nullptr) throw Error(Status::kInvalidArgument, "images is a null pointer");
  const bool pixels = impl_->pre.uint8_input;  // n x h x w x 3 pixel values 0-255 (carried as floats)
  const int channel_axis = pixels ? 3 : 1, h_axis = pixels ? 1 : 2, w_axis = pixels ? 2 : 3;
  if (shape.size() != 4 || shape[0] < 1 || shape[channel_axis] != 3) {
    throw Error(Status::kInvalidArgument, pixels ? "this model takes uint8 pictures: the images tensor must be "
                                                   "n x h x w x 3 with n >= 1"
                                                 : "the images tensor must be n x 3 x h x w with n >= 1");
  }
  const std::string problem = input_hw_problem(shape[h_axis], shape[w_axis]);  // the one size rule (spec.py)
  if (!problem.empty()) throw Error(Status::kInvalidArgument, "images tensor: " + problem);
  if (shape[0] > kMaxInputElements / (3 * shape[h_axis] * shape[w_axis])) {
    throw Error(Status::kInvalidArgument, "images tensor: a batch of " + std::to_string(shape[0]) + " pictures of " +
                                              std::to_string(shape[h_axis]) + "x" + std::to_string(shape[w_axis]) +
                                              " is over the limit of " + std::to_string(kMaxInputElements) + " elements");
  }
  const TensorSpec* spec = impl_->backend->contract().find_input("images");
  const std::array<int, 3> axes = pixels ? std::array<int, 3>{0, 1, 2} : std::array<int, 3>{0, 2, 3};
  for (int axis : axes) {
    if (!spec->is_dynamic(axis) && spec->dims[axis] != shape[axis]) {
      throw Error(Status::kInvalidArgument, "the model takes images of fixed size " + std::to_string(spec->dims[axis]) +
                                                " on axis " + std::to_string(axis) + ", got " + std::to_string(shape[axis]));
    }
  }
  const std::size_t count = static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
  if (pixels) {
    auto* out = static_cast<uint8_t*>(impl_->context->images_buffer(count));
    for (std::size_t i = 0; i < count; ++i) {
      if (!(images[i] >= 0.f && images[i] <= 255.f)) {
        throw Error(Status::kInvalidArgument, "this model takes pixel values 0-255, got " + std::to_string(images[i]));
      }
      out[i] = static_cast<uint8_t>(images[i] + 0.5f);
    }
  } else {
    std::copy(images, images + count, static_cast<float*>(impl_->context->images_buffer(count * sizeof(float))));
  }
  std::vector<float> full;
  if (img_shape == nullptr) {
    const float h = static_cast<float>(shape[pixels ? 1 : 2]), w = static_cast<float>(shape[pixels ? 2 : 3]);
    for (int64_t i = 0; i < shape[0]; ++i) full.insert(full.end(), {h, w});
    img_shape = full.data();
  }
  std::vector<OutputTensor> result;
  for (const NamedTensor& t : impl_->context->infer(shape, img_shape)) {
    OutputTensor out{t.name, dtype_name(t.tensor.dtype), t.tensor.shape, {}};
    const auto* bytes = static_cast<const uint8_t*>(t.tensor.data);
    out.bytes.assign(bytes, bytes + t.tensor.numel() * static_cast<int64_t>(dtype_size(t.tensor.dtype)));
    result.push_back(std::move(out));
  }
  return result;
}

Settings Detector::settings() const {
  return {impl_->pre.test_scale, impl_->post.score_thr, impl_->post.iou_thr, impl_->post.max_per_img};
}

void Detector::set_settings(const Settings& s) {
  for (int side : s.test_scale) {
    if (side < 1 || side > kMaxInputSide) {
      throw Error(Status::kInvalidArgument, "test_scale must be in [1, " + std::to_string(kMaxInputSide) + "], got " +
                                                std::to_string(s.test_scale[0]) + " x " + std::to_string(s.test_scale[1]));
    }
  }
  if (!(s.iou_thr >= 0 && s.iou_thr <= 1)) throw Error(Status::kInvalidArgument, "iou_thr must be in [0, 1]");
  if (!(s.score_thr >= 0 && s.score_thr < 1)) throw Error(Status::kInvalidArgument, "score_thr must be in [0, 1)");
  if (s.max_per_img < 1) throw Error(Status::kInvalidArgument, "max_per_img must be >= 1");
  impl_->pre.test_scale = s.test_scale;
  impl_->post.score_thr = s.score_thr;
  impl_->post.iou_thr = s.iou_thr;
  impl_->post.max_per_img = s.max_per_img;
  impl_->preprocessor = Preprocessor(impl_->pre);
}

const std::vector<std::string>& Detector::class_names() const { return impl_->backend->contract().class_names; }
const std::string& Detector::contract_json() const { return impl_->backend->contract().json; }
std::string Detector::backend_name() const { return impl_->backend->name(); }
Timings Detector::last_timings() const { return impl_->timings; }

std::string runtime_library_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&runtime_library_folder), &info) == 0 || info.dli_fname == nullptr) return {};
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

std::shared_ptr<Backend> open_backend(const std::string& model_path, const DetectorOptions& options) {
  const std::string suffix = model_path.size() >= 5 ? model_path.substr(model_path.size() - 5) : "";
  if (suffix == ".onnx") return open_onnxruntime(model_path, options);
  return open_tensorrt(model_path, options);
}

}  // namespace gflv2
