// Post-processing of hand-made graph outputs: every returned label indexes the contract's class names, and a model
// that disagrees with its contract (another class count, a label outside it) is refused instead of returned.
#include <gtest/gtest.h>

#include <limits>
#include <memory>

#include "gflv2/error.hpp"
#include "postprocess.hpp"

namespace gflv2 {
namespace {

template <typename T>
NamedTensor tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<T> values) {
  auto owner = std::make_shared<std::vector<T>>(std::move(values));
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = owner->data();
  t.owner = owner;
  return {name, t};
}

std::vector<ImageGeometry> one_picture() {
  ImageGeometry g;
  g.ori_h = g.new_h = 100;
  g.ori_w = g.new_w = 100;
  return {g};
}

// End-to-end outputs with two counted detections of classes `first`, `second` (K = 3, padding class -1).
std::vector<NamedTensor> end_to_end(int32_t first, int32_t second) {
  return {tensor<int32_t>("num_dets", DType::kInt32, {1, 1}, {2}),
          tensor<float>("det_boxes", DType::kFloat32, {1, 3, 4}, {0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 0, 0}),
          tensor<float>("det_scores", DType::kFloat32, {1, 3}, {0.9f, 0.8f, 0.f}),
          tensor<int32_t>("det_classes", DType::kInt32, {1, 3}, {first, second, -1})};
}

Status status_of(const std::vector<NamedTensor>& outputs, bool e2e, int64_t classes) {
  try {
    postprocess(e2e, PostprocessingSpec{}, outputs, one_picture(), classes);
  } catch (const Error& e) {
    return e.status();
  }
  return static_cast<Status>(0);
}

TEST(Postprocess, EndToEndLabelsMustIndexTheClassNames) {
  const auto dets = postprocess(true, PostprocessingSpec{}, end_to_end(5, 0), one_picture(), 6);
  ASSERT_EQ(dets.at(0).size(), 2u);  // cut at num_dets: the padding row (class -1) is not a detection
  EXPECT_EQ(dets[0][0].label, 5);
  EXPECT_EQ(status_of(end_to_end(6, 0), true, 6), Status::kBackend);   // one past the class list
  EXPECT_EQ(status_of(end_to_end(0, -3), true, 6), Status::kBackend);  // negative
  auto float_classes = end_to_end(0, 0);
  float_classes[3] = tensor<float>("det_classes", DType::kFloat32, {1, 3}, {0.f, std::numeric_limits<float>::quiet_NaN(), 0.f});
  EXPECT_EQ(status_of(float_classes, true, 6), Status::kBackend);  // NaN: refused, no undefined float-to-int cast
}

TEST(Postprocess, PreNmsScoresMustHaveTheContractsClassCount) {
  const std::vector<NamedTensor> outputs = {
      tensor<float>("boxes", DType::kFloat32, {1, 2, 4}, {0, 0, 10, 10, 50, 50, 60, 60}),
      tensor<float>("scores", DType::kFloat32, {1, 2, 3}, {0.9f, 0.f, 0.f, 0.f, 0.f, 0.7f})};
  const auto dets = postprocess(false, PostprocessingSpec{}, outputs, one_picture(), 3);
  ASSERT_EQ(dets.at(0).size(), 2u);
  EXPECT_EQ(dets[0][1].label, 2);
  EXPECT_EQ(status_of(outputs, false, 6), Status::kBackend);  // the graph scores 3 classes, the contract names 6
}

}  // namespace
}  // namespace gflv2
