// NMS edge cases (semantics of gflv2_deploy/model/nms.py multiclass_nms) and invariants on random boxes.
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "nms.hpp"

namespace gflv2 {
namespace {

std::vector<Detection> nms(const std::vector<float>& boxes, const std::vector<float>& scores, int classes,
                           double score_thr = 0.05, double iou_thr = 0.6, int max_num = 100) {
  return multiclass_nms(boxes.data(), scores.data(), static_cast<int64_t>(boxes.size() / 4), classes, score_thr,
                        iou_thr, max_num);
}

TEST(Nms, NoCandidates) {
  EXPECT_TRUE(multiclass_nms(nullptr, nullptr, 0, 3, 0.05, 0.6, 100).empty());
  EXPECT_TRUE(nms({0, 0, 10, 10}, {0.01f, 0.05f}, 2).empty());  // 0.05 is not > 0.05
}

TEST(Nms, SameClassOverlapSuppressedOtherClassKept) {
  // two nearly equal boxes; box 0 scores class 0 and 1
  const auto dets = nms({0, 0, 10, 10, 0, 0, 10, 11}, {0.9f, 0.8f, 0.7f, 0.1f}, 2);
  ASSERT_EQ(dets.size(), 2u);
  EXPECT_EQ(dets[0].label, 0);
  EXPECT_FLOAT_EQ(dets[0].score, 0.9f);
  EXPECT_EQ(dets[1].label, 1);  // one box kept for two classes (multi-label)
  EXPECT_FLOAT_EQ(dets[1].score, 0.8f);
}

TEST(Nms, IouEqualToTheThresholdIsKept) {
  // IoU of [0,0,10,10] and [0,0,10,5] is 0.5 exactly
  EXPECT_EQ(nms({0, 0, 10, 10, 0, 0, 10, 5}, {0.9f, 0.8f}, 1, 0.05, 0.5).size(), 2u);
  EXPECT_EQ(nms({0, 0, 10, 10, 0, 0, 10, 5}, {0.9f, 0.8f}, 1, 0.05, 0.49).size(), 1u);
}

TEST(Nms, TiesKeepTheLowerCandidateIndexFirst) {
  const auto dets = nms({0, 0, 10, 10, 20, 20, 30, 30, 0, 0, 10, 10}, {0.5f, 0.5f, 0.5f}, 1);
  ASSERT_EQ(dets.size(), 2u);  // the third duplicates the first and is suppressed by it
  EXPECT_EQ(dets[0].x1, 0.f);
  EXPECT_EQ(dets[1].x1, 20.f);
}

TEST(Nms, EmptyBoxesNeverSuppress) {
  // zero-area boxes: union 0 -> IoU 0
  EXPECT_EQ(nms({5, 5, 5, 5, 5, 5, 5, 5}, {0.9f, 0.8f}, 1).size(), 2u);
}

TEST(Nms, StopsAtMaxNum) {
  std::vector<float> boxes, scores;
  for (int i = 0; i < 50; ++i) {
    boxes.insert(boxes.end(), {i * 20.f, 0, i * 20.f + 10, 10});
    scores.push_back(0.1f + i * 0.01f);
  }
  const auto dets = nms(boxes, scores, 1, 0.05, 0.6, 7);
  ASSERT_EQ(dets.size(), 7u);
  EXPECT_FLOAT_EQ(dets[0].score, 0.1f + 49 * 0.01f);
  EXPECT_EQ(nms(boxes, scores, 1, 0.05, 0.6, 0).size(), 50u);  // 0: no limit
}

TEST(Nms, HugeCoordinatesCompareEveryCandidateAndStillSeparateClasses) {
  // span * classes > 2^23: the per-class shortcut is off, every later candidate is compared (as in Python)
  const auto dets = nms({0, 0, 5e6f, 5e6f, 0, 0, 5e6f, 5e6f}, {0.9f, 0.8f, 0.7f, 0.6f}, 2);
  ASSERT_EQ(dets.size(), 2u);  // box 1 suppressed by box 0 within each class; classes never suppress each other
  EXPECT_EQ(dets[0].label, 0);
  EXPECT_EQ(dets[1].label, 1);
}

TEST(Nms, NonFiniteCoordinatesFollowTheReference) {
  // Expected: gflv2_deploy.model.nms.multiclass_nms on the same inputs. torch's max()/min() propagate NaN, so one
  // NaN (or infinite: 0 * inf) candidate coordinate makes every class offset non-finite, every IoU 0, and nothing
  // is suppressed; the rule is the one of plugins/README.md.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const std::vector<float>& boxes : {std::vector<float>{nan, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10},
                                          std::vector<float>{0, 0, 10, 10, 0, 0, 10, 10, 5, 5, nan, 10},
                                          std::vector<float>{0, 0, 10, 10, 0, 0, 10, 10, 0, 0, inf, 10}}) {
    const auto dets = nms(boxes, {0.9f, 0.8f, 0.7f}, 1);
    ASSERT_EQ(dets.size(), 3u);  // the identical boxes 0 and 1 both stay
    EXPECT_EQ(dets[0].score, 0.9f);
    EXPECT_EQ(dets[1].score, 0.8f);
    EXPECT_EQ(dets[2].score, 0.7f);
    EXPECT_EQ(dets[1].x2, 10.f);
  }
  EXPECT_EQ(nms({0, 0, 10, 10, 0, 0, 10, 10}, {0.9f, 0.8f}, 1).size(), 1u);  // the same pair, finite: suppressed
  EXPECT_EQ(nms({0, 0, 10, 10, 0, 0, 10, 10, nan, 0, 1, 1}, {0.9f, 0.8f, 0.01f}, 1).size(), 1u);  // not a candidate
}

TEST(Nms, NegativeAndPositiveZeroScoresTie) {
  // zero scores are candidates under a negative threshold; -0.0 == +0.0, so the lower index comes first (torch's
  // stable descending argsort)
  for (const std::vector<float>& scores : {std::vector<float>{-0.0f, 0.0f}, std::vector<float>{0.0f, -0.0f}}) {
    const auto dets = nms({0, 0, 10, 10, 20, 20, 30, 30}, scores, 1, -0.5);
    ASSERT_EQ(dets.size(), 2u);
    EXPECT_EQ(dets[0].x1, 0.f);
    EXPECT_EQ(dets[1].x1, 20.f);
  }
}

TEST(Nms, RandomBoxesMeetTheInvariants) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> coord(0, 300), size(1, 80), score(0, 1);
  const int n = 300, c = 4;
  std::vector<float> boxes, scores;
  for (int i = 0; i < n; ++i) {
    const float x = coord(rng), y = coord(rng);
    boxes.insert(boxes.end(), {x, y, x + size(rng), y + size(rng)});
    for (int k = 0; k < c; ++k) scores.push_back(score(rng));
  }
  const auto dets = nms(boxes, scores, c, 0.3, 0.5, 1000);
  ASSERT_FALSE(dets.empty());
  for (std::size_t i = 1; i < dets.size(); ++i) EXPECT_GE(dets[i - 1].score, dets[i].score);
  auto iou = [](const Detection& a, const Detection& b) {
    const double w = std::max(0.0, double(std::min(a.x2, b.x2)) - std::max(a.x1, b.x1));
    const double h = std::max(0.0, double(std::min(a.y2, b.y2)) - std::max(a.y1, b.y1));
    const double u = double(a.x2 - a.x1) * (a.y2 - a.y1) + double(b.x2 - b.x1) * (b.y2 - b.y1) - w * h;
    return w * h / u;
  };
  for (std::size_t i = 0; i < dets.size(); ++i)
    for (std::size_t j = i + 1; j < dets.size(); ++j)
      if (dets[i].label == dets[j].label) EXPECT_LE(iou(dets[i], dets[j]), 0.5 + 1e-4);
  // every candidate is kept or overlaps a kept box of its class with a higher score
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < c; ++k) {
      const float s = scores[i * c + k];
      if (!(s > 0.3f)) continue;
      const Detection d{boxes[i * 4], boxes[i * 4 + 1], boxes[i * 4 + 2], boxes[i * 4 + 3], s, k};
      bool explained = false;
      for (const auto& kept : dets)
        explained |= kept.label == k && kept.score >= s && (iou(kept, d) > 0.5 - 1e-4 || (kept.x1 == d.x1 && kept.score == s));
      EXPECT_TRUE(explained) << "candidate " << i << "/" << k;
    }
  // a larger max_num keeps the same first detections
  const auto few = nms(boxes, scores, c, 0.3, 0.5, 5);
  ASSERT_EQ(few.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(few[i].score, dets[i].score);
}

}  // namespace
}  // namespace gflv2
