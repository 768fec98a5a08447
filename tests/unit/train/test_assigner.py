"""ATSS assigner and training priors (spec §1.7, §1.9)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from gflv2_deploy.train.assigner import atss_assign, make_anchors, valid_anchor_mask

STRIDES = (8, 16, 32, 64, 128)


# tiny tensors on a shared 2-core machine: a second intra-op thread mostly spins against other processes
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _featmap_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Level sizes of a padded input (P3..P5 exact, P6/P7 from stride-2 pad-1 convolutions)."""
    sizes, h, w = [], height // 8, width // 8
    for level in range(5):
        if level > 0:
            h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def _pos_set(result, gt_index: int | None = None) -> set[int]:
    inds = result.assigned_gt_inds
    mask = inds >= 0 if gt_index is None else inds == gt_index
    return set(mask.nonzero().squeeze(1).tolist())


# --- priors ------------------------------------------------------------------------------------


def test_make_anchors_centres_on_stride_multiples_not_half_stride():
    anchors, points, counts = make_anchors([(2, 3), (1, 2)], (8, 16))
    assert counts == [6, 2]
    expected_points = [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8], [0, 0], [16, 0]]
    assert points.tolist() == expected_points  # (j*s, i*s), x fastest, levels concatenated
    assert anchors[0].tolist() == [-32, -32, 32, 32]  # 8 * 8 px square centred on (0, 0)
    assert anchors[4].tolist() == [8 - 32, 8 - 32, 8 + 32, 8 + 32]
    assert anchors[7].tolist() == [16 - 64, -64, 16 + 64, 64]  # 8 * 16 px at stride 16
    assert anchors.dtype == torch.float32


def test_make_anchors_count_matches_input_size():
    _, points, counts = make_anchors(_featmap_sizes(800, 1216), STRIDES)
    assert counts == [100 * 152, 50 * 76, 25 * 38, 13 * 19, 7 * 10]
    assert points.shape == (sum(counts), 2)


def test_valid_anchor_mask_cuts_rows_and_columns_beyond_own_pad_shape():
    sizes = [(4, 6), (2, 3)]  # batch tensor 32 x 48
    mask = valid_anchor_mask(sizes, (8, 16), pad_shape=(16, 40))
    level0 = mask[:24].reshape(4, 6)
    assert level0[:2, :5].all() and not level0[2:].any() and not level0[:, 5:].any()
    level1 = mask[24:].reshape(2, 3)  # ceil(16 / 16) = 1 row, ceil(40 / 16) = 3 columns
    assert level1[0].all() and not level1[1].any()


# --- assignment: hand-made cases -----------------------------------------------------------------


def test_no_gt_gives_all_background():
    anchors, _, counts = make_anchors(_featmap_sizes(64, 64), STRIDES)
    result = atss_assign(anchors, counts, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.long), 5)
    assert (result.assigned_gt_inds == -1).all()
    assert (result.labels == 5).all()
    assert (result.max_overlaps == 0).all()
    assert result.labels.shape == (anchors.shape[0],) and result.labels.dtype == torch.long


def test_single_box_gets_candidates_above_mean_plus_std_with_its_label():
    anchors, points, counts = make_anchors([(8, 8)], (8,))
    gt = torch.tensor([[4.0, 4.0, 60.0, 44.0]])  # centre (32, 24)
    result = atss_assign(anchors, counts, gt, torch.tensor([2]), num_classes=3)
    # candidates: the 9 centres x in {24, 32, 40}, y in {16, 24, 32}; IoUs are 2240 / 4096 = 0.547
    # for the middle column (its anchors cover the box) and 2080 / 4256 = 0.489 beside it
    # (52 x 40 overlap); mean + std = 0.524, so only the middle column passes.
    pos = sorted(_pos_set(result))
    assert pos == [20, 28, 36]
    assert points[pos].tolist() == [[32.0, 16.0], [32.0, 24.0], [32.0, 32.0]]
    assert (result.labels[pos] == 2).all()
    assert (result.labels[[i for i in range(64) if i not in pos]] == 3).all()
    assert result.max_overlaps[28].item() == pytest.approx(2240 / 4096)
    assert (result.max_overlaps[[i for i in range(64) if i not in pos]] == 0).all()


def test_anchor_claimed_by_two_boxes_goes_to_higher_iou_box():
    anchors, _, counts = make_anchors([(8, 8)], (8,))
    small = torch.tensor([4.0, 4.0, 28.0, 28.0])  # IoU with anchor 27 (centre (24, 24)) = 576 / 4096
    large = torch.tensor([12.0, 16.0, 52.0, 48.0])  # IoU with anchor 27 = 1280 / 4096
    alone_small = _pos_set(atss_assign(anchors, counts, small[None], torch.tensor([0]), 2))
    alone_large = _pos_set(atss_assign(anchors, counts, large[None], torch.tensor([1]), 2))
    assert alone_small & alone_large == {27}  # precondition: both boxes select anchor 27

    for order in ((small, large), (large, small)):
        gts = torch.stack(order)
        labels = torch.tensor([0, 1]) if order[0] is small else torch.tensor([1, 0])
        result = atss_assign(anchors, counts, gts, labels, 2)
        large_idx = 1 if order[0] is small else 0
        assert result.assigned_gt_inds[27].item() == large_idx
        assert result.labels[27].item() == 1
        assert result.max_overlaps[27].item() == pytest.approx(1280 / 4096)
        assert _pos_set(result, large_idx) == alone_large
        assert _pos_set(result, 1 - large_idx) == alone_small - {27}


def test_box_smaller_than_any_anchor_keeps_the_centre_inside_it():
    anchors, points, counts = make_anchors(_featmap_sizes(64, 64), STRIDES)
    # 4 x 4 px box around the stride-8 point (8, 8): that anchor has the highest IoU (16 / 4096)
    result = atss_assign(anchors, counts, torch.tensor([[6.0, 6.0, 10.0, 10.0]]), torch.tensor([0]), 1)
    pos = sorted(_pos_set(result))
    assert pos == [9] and points[9].tolist() == [8.0, 8.0]
    assert result.max_overlaps[9].item() == pytest.approx(16 / 4096)


def test_box_containing_no_prior_centre_gets_no_positive():
    anchors, _, counts = make_anchors(_featmap_sizes(64, 64), STRIDES)
    # [1, 5] x [1, 5] contains no multiple of 8 strictly inside, on any level: documented behaviour
    result = atss_assign(anchors, counts, torch.tensor([[1.0, 1.0, 5.0, 5.0]]), torch.tensor([0]), 1)
    assert _pos_set(result) == set()
    assert (result.labels == 1).all()


def test_centre_on_box_edge_is_not_inside():
    anchors, _, counts = make_anchors([(8, 8)], (8,))
    # the box's left edge passes exactly through centres x = 16: min(l, t, r, b) = 0, not > 0.01
    result = atss_assign(anchors, counts, torch.tensor([[16.0, 10.0, 30.0, 30.0]]), torch.tensor([0]), 1)
    pos = _pos_set(result)
    assert pos and all(i % 8 != 2 for i in pos)  # column 2 (x = 16) never positive
    assert pos == {19, 27}  # (24, 16) and (24, 24)


def test_nearly_uniform_candidate_ious_can_leave_a_box_without_positives():
    anchors, _, counts = make_anchors([(4, 4), (1, 1)], (8, 16))  # second level: 1 < 9 anchors
    # every stride-8 candidate covers the box (IoU a = 144 / 4096) and the stride-16 one has a / 4:
    # mean + std of {a x 9, a / 4} = 1.16 a > a, so no candidate passes although (8, 8) is inside.
    result = atss_assign(anchors, counts, torch.tensor([[2.0, 2.0, 14.0, 14.0]]), torch.tensor([0]), 1)
    assert result.assigned_gt_inds.shape == (17,)
    assert _pos_set(result) == set()


def test_level_smaller_than_topk_uses_all_its_anchors():
    anchors, _, counts = make_anchors(_featmap_sizes(64, 64), STRIDES)
    assert counts == [64, 16, 4, 1, 1]  # P5..P7 hold fewer than 9 anchors
    gts = [[4.0, 4.0, 60.0, 44.0], [20.0, 2.0, 62.0, 62.0], [6.0, 6.0, 10.0, 10.0]]
    result = atss_assign(anchors, counts, torch.tensor(gts), torch.tensor([0, 0, 0]), 1)
    expected = _reference_atss(anchors.tolist(), counts, gts)
    assert result.assigned_gt_inds.tolist() == expected
    assert any(g >= 0 for g in expected)


# --- assignment: against a loop-by-loop transcription of the spec ----------------------------------


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-6)


def _reference_atss(anchors: list[list[float]], counts: list[int], gts: list[list[float]], topk: int = 9):
    """Spec §1.9 step by step with Python floats; returns the 0-based GT index (or -1) per anchor."""
    best: list[tuple[float, int]] = [(-math.inf, -1)] * len(anchors)
    for g, gt in enumerate(gts):
        gcx, gcy = (gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2
        candidates, start = [], 0
        for count in counts:
            level = list(range(start, start + count))
            level.sort(key=lambda i: math.hypot((anchors[i][0] + anchors[i][2]) / 2 - gcx,
                                                (anchors[i][1] + anchors[i][3]) / 2 - gcy))
            candidates += level[: min(topk, count)]
            start += count
        ious = [_iou(anchors[i], gt) for i in candidates]
        threshold = statistics.mean(ious) + statistics.stdev(ious)
        for i, iou in zip(candidates, ious):
            cx, cy = (anchors[i][0] + anchors[i][2]) / 2, (anchors[i][1] + anchors[i][3]) / 2
            inside = min(cx - gt[0], cy - gt[1], gt[2] - cx, gt[3] - cy) > 0.01
            if iou >= threshold and inside and iou > best[i][0]:
                best[i] = (iou, g)
    return [g for _, g in best]


@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_transcription_on_random_boxes(seed):
    rng = random.Random(seed)
    height, width = 160, 224
    anchors, _, counts = make_anchors(_featmap_sizes(height, width), STRIDES)
    gts = []
    for _ in range(rng.randint(1, 6)):
        w, h = rng.uniform(3, 150), rng.uniform(3, 120)
        x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        gts.append([x1, y1, x1 + w, y1 + h])
    labels = torch.tensor([rng.randrange(4) for _ in gts])
    result = atss_assign(anchors, counts, torch.tensor(gts), labels, num_classes=4)
    expected = _reference_atss(anchors.tolist(), counts, gts)
    assert result.assigned_gt_inds.tolist() == expected
    assert sum(g >= 0 for g in expected) > 0  # the comparison is not vacuous
    pos = result.assigned_gt_inds >= 0
    assert torch.equal(result.labels[pos], labels[result.assigned_gt_inds[pos]])
    assert (result.labels[~pos] == 4).all()
