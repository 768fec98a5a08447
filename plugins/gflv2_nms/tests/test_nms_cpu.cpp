// The CPU twin against cases with hand-computed answers (the contract in include/gflv2_nms/nms.h).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "gflv2_nms/nms.h"

namespace gflv2_nms {
namespace {

struct Result {
  std::vector<int32_t> num;
  std::vector<float> boxes;
  std::vector<float> scores;
  std::vector<int32_t> classes;
};

// boxes: B*A*4, scores: B*A*C.
Result run(const NmsAttributes& attrs, int64_t B, int64_t A, int64_t C, const std::vector<float>& boxes,
           const std::vector<float>& scores) {
  EXPECT_EQ(validate_attributes(attrs), "");
  const int64_t bd[3] = {B, A, 4};
  const int64_t sd[3] = {B, A, C};
  NmsShape shape;
  EXPECT_EQ(validate_shapes(attrs, bd, 3, sd, 3, &shape), "");
  const int64_t K = attrs.max_output_boxes;
  Result r{std::vector<int32_t>(B, -7), std::vector<float>(B * K * 4, 42.0F), std::vector<float>(B * K, 42.0F),
           std::vector<int32_t>(B * K, 42)};
  run_nms_cpu(attrs, shape, boxes.data(), scores.data(),
              NmsOutputs{r.num.data(), r.boxes.data(), r.scores.data(), r.classes.data()});
  return r;
}

NmsAttributes attrs_with(int32_t k, float score_thr = 0.05F, float iou_thr = 0.6F) {
  NmsAttributes a;
  a.max_output_boxes = k;
  a.score_threshold = score_thr;
  a.iou_threshold = iou_thr;
  return a;
}

void expect_padding(const Result& r, int64_t image, int64_t K) {
  for (int64_t i = r.num[image]; i < K; ++i) {
    EXPECT_EQ(r.scores[image * K + i], 0.0F);
    EXPECT_EQ(r.classes[image * K + i], -1);
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(r.boxes[(image * K + i) * 4 + j], 0.0F);
    }
  }
}

TEST(NmsCpu, IdenticalBoxesSameClassKeepOnlyTheBest) {
  // Two identical boxes, one class: IoU 1 > 0.6.
  Result r = run(attrs_with(4), 1, 2, 1, {0, 0, 10, 10, 0, 0, 10, 10}, {0.8F, 0.9F});
  ASSERT_EQ(r.num[0], 1);
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.classes[0], 0);
  expect_padding(r, 0, 4);
}

TEST(NmsCpu, IdenticalBoxesDifferentClassesAreKept) {
  // Box 0 scores class 1, box 1 scores class 0: class-aware, nothing suppressed.
  Result r = run(attrs_with(4), 1, 2, 2, {0, 0, 10, 10, 0, 0, 10, 10}, {0.0F, 0.7F, 0.9F, 0.0F});
  ASSERT_EQ(r.num[0], 2);
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.classes[0], 0);
  EXPECT_EQ(r.scores[1], 0.7F);
  EXPECT_EQ(r.classes[1], 1);
}

TEST(NmsCpu, MultiLabelBoxKeptOncePerClass) {
  Result r = run(attrs_with(4), 1, 1, 3, {1, 2, 3, 4}, {0.3F, 0.01F, 0.6F});
  ASSERT_EQ(r.num[0], 2);
  EXPECT_EQ(r.classes[0], 2);
  EXPECT_EQ(r.classes[1], 0);
  EXPECT_EQ(r.boxes[4], 1.0F);
  EXPECT_EQ(r.boxes[7], 4.0F);
}

TEST(NmsCpu, ExactScoreTiesFollowCandidateIndex) {
  // Three disjoint boxes, all 0.5, two classes each where scored: candidate index = a * C + c.
  // a=0,c=1 (index 1); a=1,c=0 (index 2); a=2,c=0 (index 4); a=2,c=1 (index 5).
  Result r = run(attrs_with(8), 1, 3, 2, {0, 0, 1, 1, 10, 10, 11, 11, 20, 20, 21, 21},
                 {0.0F, 0.5F, 0.5F, 0.0F, 0.5F, 0.5F});
  ASSERT_EQ(r.num[0], 4);
  const std::vector<int32_t> classes{1, 0, 0, 1};
  const std::vector<float> x1{0, 10, 20, 20};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r.classes[i], classes[i]) << i;
    EXPECT_EQ(r.boxes[i * 4], x1[i]) << i;
  }
}

TEST(NmsCpu, TiedOverlappingBoxesKeepTheLowerIndex) {
  // Same score, same class, IoU 1: the first candidate (box 0) wins.
  Result r = run(attrs_with(4), 1, 2, 1, {0, 0, 10, 10, 0, 0, 10, 10.0001F}, {0.5F, 0.5F});
  ASSERT_EQ(r.num[0], 1);
  EXPECT_EQ(r.boxes[3], 10.0F);
}

TEST(NmsCpu, IouEqualToThresholdIsKept) {
  // inter 1, union 2: IoU exactly 0.5. Suppression needs IoU > threshold.
  const std::vector<float> boxes{0, 0, 2, 1, 0, 0, 1, 1};
  EXPECT_EQ(run(attrs_with(4, 0.05F, 0.5F), 1, 2, 1, boxes, {0.9F, 0.8F}).num[0], 2);
  EXPECT_EQ(run(attrs_with(4, 0.05F, 0.49F), 1, 2, 1, boxes, {0.9F, 0.8F}).num[0], 1);
}

TEST(NmsCpu, ZeroAreaBoxesNeverSuppress) {
  // A point inside a box (inter 0) and two identical points (union 0 -> IoU 0).
  Result r = run(attrs_with(4), 1, 3, 1, {5, 5, 5, 5, 0, 0, 10, 10, 5, 5, 5, 5}, {0.9F, 0.8F, 0.7F});
  ASSERT_EQ(r.num[0], 3);
  EXPECT_EQ(r.scores[2], 0.7F);
}

TEST(NmsCpu, FlippedBoxesHaveZeroAreaAndDoNotOverlap) {
  // (10, 10, 0, 0) is not reordered: area 0, intersection with (0, 0, 10, 10) is empty.
  Result r = run(attrs_with(4), 1, 2, 1, {10, 10, 0, 0, 0, 0, 10, 10}, {0.9F, 0.8F});
  ASSERT_EQ(r.num[0], 2);
  EXPECT_EQ(r.boxes[0], 10.0F);  // the flipped box is returned as given
  EXPECT_EQ(r.boxes[2], 0.0F);
}

TEST(NmsCpu, EverythingAtOrBelowThresholdGivesPaddingOnly) {
  Result r = run(attrs_with(3, 0.5F), 1, 2, 2, {0, 0, 1, 1, 2, 2, 3, 3}, {0.5F, 0.1F, 0.49F, 0.0F});
  EXPECT_EQ(r.num[0], 0);
  expect_padding(r, 0, 3);
}

TEST(NmsCpu, MoreSurvivorsThanKKeepsTheTopK) {
  std::vector<float> boxes;
  for (int i = 0; i < 5; ++i) {
    boxes.insert(boxes.end(), {10.0F * static_cast<float>(i), 0, 10.0F * static_cast<float>(i) + 5, 5});
  }
  Result r = run(attrs_with(3), 1, 5, 1, boxes, {0.2F, 0.9F, 0.4F, 0.8F, 0.3F});
  ASSERT_EQ(r.num[0], 3);
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.scores[1], 0.8F);
  EXPECT_EQ(r.scores[2], 0.4F);
  EXPECT_EQ(r.boxes[0], 10.0F);
  EXPECT_EQ(r.boxes[4], 30.0F);
  EXPECT_EQ(r.boxes[8], 20.0F);
}

TEST(NmsCpu, SuppressedBoxesDoNotSuppress) {
  // b overlaps a (suppressed), c overlaps b but not a: c survives (greedy, not transitive).
  Result r = run(attrs_with(4, 0.05F, 0.3F), 1, 3, 1, {0, 0, 10, 10, 4, 0, 14, 10, 8, 0, 18, 10}, {0.9F, 0.8F, 0.7F});
  ASSERT_EQ(r.num[0], 2);
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.scores[1], 0.7F);
}

TEST(NmsCpu, BatchWithDifferentCounts) {
  // Image 0: two disjoint boxes above threshold; image 1: nothing; image 2: identical boxes -> one.
  std::vector<float> boxes{0, 0, 1, 1, 5, 5, 6, 6, 0, 0, 1, 1, 5, 5, 6, 6, 0, 0, 4, 4, 0, 0, 4, 4};
  std::vector<float> scores{0.9F, 0.8F, 0.01F, 0.02F, 0.6F, 0.7F};
  Result r = run(attrs_with(2), 3, 2, 1, boxes, scores);
  EXPECT_EQ(r.num, (std::vector<int32_t>{2, 0, 1}));
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.scores[1], 0.8F);
  expect_padding(r, 1, 2);
  EXPECT_EQ(r.scores[4], 0.7F);
  expect_padding(r, 2, 2);
}

TEST(NmsCpu, LevelsSmallerThanNmsPreArePaddedWithZeroScores) {
  // nms_pre 2, two levels: level 0 has one real row, level 1 two; padding rows (score 0, box 0) are never candidates.
  NmsAttributes a = attrs_with(5, 0.0F);
  a.nms_pre = 2;
  a.num_levels = 2;
  Result r = run(a, 1, 4, 1, {0, 0, 2, 2, 0, 0, 0, 0, 10, 10, 12, 12, 20, 20, 22, 22}, {0.3F, 0.0F, 0.2F, 0.1F});
  ASSERT_EQ(r.num[0], 3);
  EXPECT_EQ(r.scores[2], 0.1F);
}

TEST(NmsCpu, NegativeCoordinatesAndClassOffsets) {
  // Same geometry in classes 0 and 1 with negative coordinates: each class keeps its best, IoU unaffected by offsets.
  Result r = run(attrs_with(4), 1, 2, 2, {-10, -10, 0, 0, -9, -10, 1, 0}, {0.9F, 0.5F, 0.8F, 0.6F});
  ASSERT_EQ(r.num[0], 2);
  EXPECT_EQ(r.scores[0], 0.9F);
  EXPECT_EQ(r.classes[0], 0);
  EXPECT_EQ(r.scores[1], 0.6F);
  EXPECT_EQ(r.classes[1], 1);
}

// The tie-break rules of plugins/README.md that the reference (torch) fixes and the CUDA kernels must follow; the
// expected outputs are those of gflv2_deploy.model.nms.multiclass_nms on the same inputs.
TEST(NmsCpu, NanCoordinateAnywhereMeansNothingIsSuppressed) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // torch's max() propagates NaN: the class-offset unit is NaN, every IoU 0, so the identical boxes 0 and 1 both stay.
  // The NaN is in the last candidate: an order-dependent max (std::max, fmaxf) would miss it and suppress box 1.
  for (int where : {0, 2}) {
    std::vector<float> boxes{0, 0, 10, 10, 0, 0, 10, 10, 5, 5, 20, 10};
    boxes[static_cast<size_t>(where) * 4 + 2] = nan;
    Result r = run(attrs_with(4), 1, 3, 1, boxes, {0.9F, 0.8F, 0.7F});
    ASSERT_EQ(r.num[0], 3) << "NaN in box " << where;
    EXPECT_EQ(r.scores[1], 0.8F);
    EXPECT_TRUE(std::isnan(r.boxes[static_cast<size_t>(where) * 4 + 2]));  // returned as given
  }
  // an infinite coordinate: the unit is inf, class 0's offset 0 * inf is NaN: nothing is suppressed either
  Result inf = run(attrs_with(4), 1, 3, 1, {0, 0, 10, 10, 0, 0, 10, 10, 0, 0, std::numeric_limits<float>::infinity(), 10},
                   {0.9F, 0.8F, 0.7F});
  EXPECT_EQ(inf.num[0], 3);
  // a NaN in a box that is not a candidate changes nothing
  Result below = run(attrs_with(4), 1, 3, 1, {0, 0, 10, 10, 0, 0, 10, 10, nan, 0, 1, 1}, {0.9F, 0.8F, 0.01F});
  EXPECT_EQ(below.num[0], 1);
}

TEST(NmsCpu, NegativeAndPositiveZeroScoresTie) {
  // With a negative threshold zero scores are candidates; -0.0 and +0.0 are equal, so the lower index comes first.
  for (const std::vector<float>& scores : {std::vector<float>{-0.0F, 0.0F}, std::vector<float>{0.0F, -0.0F}}) {
    Result r = run(attrs_with(4, -0.5F), 1, 2, 1, {0, 0, 10, 10, 20, 20, 30, 30}, scores);
    ASSERT_EQ(r.num[0], 2);
    EXPECT_EQ(r.boxes[0], 0.0F);
    EXPECT_EQ(std::signbit(r.scores[0]), std::signbit(scores[0]));  // the score as given
    EXPECT_EQ(r.boxes[4], 20.0F);
  }
}

TEST(NmsValidation, RejectsBadAttributesAndShapes) {
  NmsAttributes a;
  a.iou_threshold = 1.5F;
  EXPECT_NE(validate_attributes(a), "");
  a = NmsAttributes{};
  a.max_output_boxes = 0;
  EXPECT_NE(validate_attributes(a), "");
  a = NmsAttributes{};
  a.nms_pre = 10;
  EXPECT_NE(validate_attributes(a), "");  // num_levels missing
  a.num_levels = 5;
  EXPECT_EQ(validate_attributes(a), "");
  const int64_t bd[3] = {2, 49, 4};
  const int64_t sd[3] = {2, 49, 80};
  EXPECT_NE(validate_shapes(a, bd, 3, sd, 3, nullptr).find("nms_pre * num_levels"), std::string::npos);
  const int64_t bd_ok[3] = {2, 50, 4};
  const int64_t sd_ok[3] = {2, 50, 80};
  NmsShape shape;
  EXPECT_EQ(validate_shapes(a, bd_ok, 3, sd_ok, 3, &shape), "");
  EXPECT_EQ(shape.classes, 80);
  const int64_t sd_bad[3] = {2, 51, 80};
  EXPECT_NE(validate_shapes(a, bd_ok, 3, sd_bad, 3, nullptr), "");
}

TEST(NmsValidation, StaticDimsAreCheckedUnderADynamicBatch) {
  // TensorRT's build-time dims: -1 where dynamic. Every static dimension (and relation) is still checked.
  NmsAttributes a;
  auto check = [&](std::vector<int64_t> boxes, std::vector<int64_t> scores) {
    return validate_static_shapes(a, boxes.data(), 3, scores.data(), 3);
  };
  EXPECT_EQ(check({-1, 100, 4}, {-1, 100, 80}), "");
  EXPECT_EQ(check({-1, -1, 4}, {-1, -1, 80}), "");
  EXPECT_NE(check({-1, 100, 5}, {-1, 100, 80}).find("[B, A, 4]"), std::string::npos);
  EXPECT_NE(check({-1, 100, 4}, {-1, 99, 80}).find("disagree"), std::string::npos);
  EXPECT_NE(check({2, -1, 4}, {3, -1, 80}).find("disagree"), std::string::npos);
  EXPECT_NE(check({-1, -1, 4}, {-1, -1, 0}).find("at least one class"), std::string::npos);
  EXPECT_NE(check({-1, 3000000, 4}, {-1, -1, 1000}).find("exceeds int32"), std::string::npos);
  a.nms_pre = 10;
  a.num_levels = 5;
  EXPECT_NE(check({-1, 49, 4}, {-1, -1, 80}).find("nms_pre * num_levels"), std::string::npos);
  EXPECT_EQ(check({-1, 50, 4}, {-1, 50, 80}), "");
}

}  // namespace
}  // namespace gflv2_nms
