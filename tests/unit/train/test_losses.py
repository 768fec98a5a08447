"""Box geometry, QFL / DFL / GIoU and the GFLV2 criterion (spec §1.7, §2)."""

from __future__ import annotations

import math

import pytest
import torch

from gflv2_deploy.train.assigner import atss_assign, make_anchors
from gflv2_deploy.model.points import bbox2distance, distance2bbox
from gflv2_deploy.train.boxes import bbox_overlaps
from gflv2_deploy.train.losses import distribution_focal_loss, gflv2_loss, giou_loss, quality_focal_loss

STRIDES = (8, 16, 32, 64, 128)


# tiny tensors on a shared 2-core machine: a second intra-op thread mostly spins against other processes
pytestmark = pytest.mark.usefixtures("one_torch_thread")
BINS = 17


def _bce(p: float, y: float) -> float:
    return -(y * max(math.log(p), -100.0) + (1 - y) * max(math.log(1 - p), -100.0))


def _featmap_sizes(height: int, width: int) -> list[tuple[int, int]]:
    sizes, h, w = [], height // 8, width // 8
    for level in range(5):
        if level > 0:
            h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def _head_outputs(batch: int, num_classes: int, height: int, width: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    cls, box = [], []
    for h, w in _featmap_sizes(height, width):
        cls.append(torch.rand(batch, num_classes, h, w, generator=gen).mul(0.9).add(0.05).requires_grad_())
        box.append(torch.randn(batch, 4 * BINS, h, w, generator=gen).requires_grad_())
    return cls, box


# --- boxes -------------------------------------------------------------------------------------


def test_distance_box_round_trip_and_clamp():
    points = torch.tensor([[10.0, 20.0], [0.0, 0.0]])
    boxes = torch.tensor([[4.0, 15.0, 13.5, 30.0], [-1.0, -2.0, 3.0, 50.0]])
    dist = bbox2distance(points, boxes, max_dis=None)
    assert dist.tolist() == [[6.0, 5.0, 3.5, 10.0], [1.0, 2.0, 3.0, 50.0]]
    assert torch.equal(distance2bbox(points, dist), boxes)
    # the DFL target clamp used by gflv2_loss: [0, REG_MAX - 0.1] = [0, 15.9]
    assert bbox2distance(points, boxes, max_dis=16, eps=0.1)[1, 3].item() == pytest.approx(15.9)
    outside = bbox2distance(torch.tensor([[20.0, 0.0]]), torch.tensor([[0.0, 0.0, 10.0, 5.0]]), max_dis=16, eps=0.1)
    assert outside[0, 2].item() == 0.0  # point right of the box: clamped at 0
    clamped = distance2bbox(points, dist, max_shape=torch.tensor([40.0, 12.0]))
    assert clamped.tolist() == [[4.0, 15.0, 12.0, 30.0], [0.0, 0.0, 3.0, 40.0]]


def test_bbox_overlaps_matrix_matches_aligned_and_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    m = bbox_overlaps(a, b)
    assert m.shape == (2, 3)
    assert m[0, 0].item() == pytest.approx(1 / 7) and m[0, 1].item() == 0 and m[0, 2].item() == 1
    assert torch.allclose(bbox_overlaps(a, b[[0, 2]], aligned=True), m[[0, 1], [0, 2]])
    g = bbox_overlaps(a, b, mode="giou")
    assert g[0, 1].item() == pytest.approx(0 - (36 - 5) / 36)
    assert bbox_overlaps(a[:0], b).shape == (0, 3)


# --- QFL ---------------------------------------------------------------------------------------


def test_qfl_matches_hand_computation():
    probs = torch.tensor([[0.3, 0.6, 0.1], [0.2, 0.7, 0.05]])
    labels = torch.tensor([1, 3])  # row 0 positive for class 1, row 1 background (C = 3)
    scores = torch.tensor([0.8, 0.9])  # row 1's score must be ignored
    loss = quality_focal_loss(probs, labels, scores)
    row0 = _bce(0.3, 0) * 0.3**2 + _bce(0.6, 0.8) * 0.2**2 + _bce(0.1, 0) * 0.1**2
    row1 = sum(_bce(p, 0) * p**2 for p in (0.2, 0.7, 0.05))
    assert loss.shape == (2,)
    assert loss.tolist() == pytest.approx([row0, row1], rel=1e-5)


def test_qfl_uses_clamped_log_and_beta():
    probs = torch.tensor([[1.0, 0.5]])
    loss = quality_focal_loss(probs, torch.tensor([1]), torch.tensor([0.5]), beta=1.0)
    # BCE(1, 0) = -log(0) clamped to 100, times 1**1; the positive entry has |y - p| = 0
    assert loss.item() == pytest.approx(100.0)


def test_qfl_is_float32_under_autocast_and_has_gradient_toward_target():
    probs = torch.tensor([[0.2, 0.4]], dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = quality_focal_loss(probs, torch.tensor([0]), torch.tensor([0.9]))
    assert loss.dtype == torch.float32
    loss.sum().backward()
    assert probs.grad[0, 0] < 0 and probs.grad[0, 1] > 0  # raise the positive, lower the negative


# --- DFL ---------------------------------------------------------------------------------------


def test_dfl_on_a_bin_equals_cross_entropy_at_that_bin():
    logits = torch.randn(3, BINS, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0.0, 3.0, 15.0])
    expected = -logits.log_softmax(-1)[torch.arange(3), target.long()]
    assert torch.allclose(distribution_focal_loss(logits, target), expected, atol=1e-6)


def test_dfl_between_bins_weights_both_neighbours():
    logits = torch.randn(1, BINS, generator=torch.Generator().manual_seed(2))
    logp = logits.log_softmax(-1)[0]
    loss = distribution_focal_loss(logits, torch.tensor([3.25]))
    assert loss.item() == pytest.approx(-(0.75 * logp[3] + 0.25 * logp[4]).item(), rel=1e-6)
    # at the two-bin distribution whose expectation is the target, DFL is its entropy (the minimum)
    best = torch.full((1, BINS), -1e4)
    best[0, 3], best[0, 4] = math.log(0.75), math.log(0.25)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert distribution_focal_loss(best, torch.tensor([3.25])).item() == pytest.approx(entropy, rel=1e-5)


# --- GIoU --------------------------------------------------------------------------------------


def test_giou_loss_identical_disjoint_and_nested():
    box = torch.tensor([[1.0, 2.0, 5.0, 7.0]])
    assert giou_loss(box, box).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    # IoU 0, enclosing 3 x 1, union 2: GIoU = -1/3, loss 4/3 > 1
    assert giou_loss(a, b).item() == pytest.approx(4 / 3)
    inner, outer = torch.tensor([[1.0, 1.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    assert giou_loss(inner, outer).item() == pytest.approx(1 - 1 / 16)


# --- the criterion -----------------------------------------------------------------------------


def test_gflv2_loss_matches_hand_computation_on_a_2x2_level():
    # One level, stride 8, 2 x 2 priors at (0,0), (8,0), (0,8), (8,8); every 64 px anchor covers the
    # box, so all 4 candidates tie on IoU and pass; only (8, 8) lies strictly inside -> 1 positive.
    p = 0.3
    cls = [torch.full((1, 2, 2, 2), p, requires_grad=True)]
    box = [torch.zeros(1, 4 * BINS, 2, 2, requires_grad=True)]  # uniform bins -> distance 8 per side
    gt = [torch.tensor([[2.0, 2.0, 14.0, 14.0]])]
    losses = gflv2_loss(cls, box, gt, [torch.tensor([1])], num_classes=2, strides=(8,))
    # stride units: centre (1, 1), prediction [-7, -7, 9, 9], target [0.25, 0.25, 1.75, 1.75]
    iou = 1.5**2 / 16**2
    assert losses["loss_bbox"].item() == pytest.approx(2.0 * (1 - iou), rel=1e-5)  # GIoU = IoU: nested
    assert losses["loss_dfl"].item() == pytest.approx(0.25 * math.log(17), rel=1e-5)  # target 0.75/side
    qfl = 7 * _bce(p, 0) * p**2 + _bce(p, iou) * (iou - p) ** 2  # 8 entries, 1 positive, 1 sample
    assert losses["loss_qfl"].item() == pytest.approx(qfl, rel=1e-5)


def test_gflv2_loss_empty_ground_truth_gives_zero_box_losses_and_keeps_graph():
    cls, box = _head_outputs(2, 3, 64, 96)
    empty = [torch.zeros((0, 4)), torch.zeros((0, 4))]
    labels = [torch.zeros((0,), dtype=torch.long)] * 2
    losses = gflv2_loss(cls, box, empty, labels, num_classes=3)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_dfl"].item() == 0.0
    assert math.isfinite(losses["loss_qfl"].item()) and losses["loss_qfl"].item() > 0
    sum(losses.values()).backward()
    assert all(b.grad is not None and (b.grad == 0).all() for b in box)
    assert all(c.grad is not None and (c.grad > 0).all() for c in cls)  # every score pushed down


def test_gflv2_loss_random_outputs_finite_and_backpropagates_to_all_inputs():
    cls, box = _head_outputs(2, 4, 128, 160, seed=3)
    gts = [
        torch.tensor([[10.0, 20.0, 70.0, 90.0], [60.0, 5.0, 150.0, 120.0]]),
        torch.tensor([[30.0, 30.0, 44.0, 50.0]]),
    ]
    labels = [torch.tensor([0, 3]), torch.tensor([2])]
    losses = gflv2_loss(cls, box, gts, labels, num_classes=4)
    assert set(losses) == {"loss_qfl", "loss_bbox", "loss_dfl"}
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    for t in cls + box:
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert all(c.grad.abs().sum() > 0 for c in cls)
    assert sum(b.grad.abs().sum() for b in box) > 0


def test_gflv2_loss_gradients_follow_the_detached_targets():
    cls, box = _head_outputs(1, 3, 64, 64, seed=6)
    gts, labels = [torch.tensor([[8.0, 6.0, 50.0, 40.0]])], [torch.tensor([1])]
    losses = gflv2_loss(cls, box, gts, labels, num_classes=3)
    # the IoU target of QFL is computed from the detached prediction: QFL never reaches bbox_preds
    losses["loss_qfl"].backward()
    assert all(b.grad is None for b in box) and all(c.grad is not None for c in cls)
    for c in cls:
        c.grad = None
    # the weights w are detached joint scores: box losses never reach cls_scores
    (losses["loss_bbox"] + losses["loss_dfl"]).backward()
    assert all(c.grad is None for c in cls) and all(b.grad is not None for b in box)


def test_gflv2_loss_duplicate_images_and_process_averaging():
    cls, box = _head_outputs(1, 3, 64, 64, seed=4)
    gts, labels = [torch.tensor([[8.0, 6.0, 50.0, 40.0]])], [torch.tensor([1])]
    single = gflv2_loss(cls, box, gts, labels, num_classes=3)
    # a batch of the same image twice: every sum and every normaliser doubles
    double = gflv2_loss(
        [torch.cat([c, c]) for c in cls], [torch.cat([b, b]) for b in box], gts * 2, labels * 2, 3
    )
    for key in single:
        assert double[key].item() == pytest.approx(single[key].item(), rel=1e-5)
    # as if other processes had twice this process's positives and weight: every loss halves
    halved = gflv2_loss(cls, box, gts, labels, 3, world_size_avg=lambda t: 2 * t)
    for key in single:
        assert halved[key].item() == pytest.approx(single[key].item() / 2, rel=1e-5)


def test_gflv2_loss_counts_an_image_without_positives_as_one_sample():
    cls, box = _head_outputs(2, 3, 64, 64, seed=7)
    gts = [torch.tensor([[8.0, 6.0, 50.0, 40.0]]), torch.zeros((0, 4))]
    labels = [torch.tensor([1]), torch.zeros((0,), dtype=torch.long)]
    both = gflv2_loss(cls, box, gts, labels, num_classes=3)
    first = gflv2_loss([c[:1] for c in cls], [b[:1] for b in box], gts[:1], labels[:1], 3)
    second = gflv2_loss([c[1:] for c in cls], [b[1:] for b in box], gts[1:], labels[1:], 3)
    anchors, _, counts = make_anchors(_featmap_sizes(64, 64), STRIDES)
    num_pos = int(atss_assign(anchors, counts, gts[0], labels[0], 3).pos_mask.sum())
    assert num_pos > 0
    # num_total_samples = num_pos + max(0, 1): the empty image still counts once
    expected = (first["loss_qfl"] * num_pos + second["loss_qfl"] * 1) / (num_pos + 1)
    assert both["loss_qfl"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert both["loss_bbox"].item() == pytest.approx(first["loss_bbox"].item(), rel=1e-5)


def test_gflv2_loss_pad_shapes_ignore_priors_outside_an_image():
    cls, box = _head_outputs(1, 2, 64, 128, seed=5)
    gts, labels = [torch.tensor([[4.0, 4.0, 40.0, 44.0]])], [torch.tensor([0])]
    full = gflv2_loss(cls, box, gts, labels, num_classes=2)
    padded = gflv2_loss(cls, box, gts, labels, num_classes=2, pad_shapes=[(64, 64)])
    # identical to cropping the head outputs to the image's own 64 x 64 area (ceil(64 / s) columns)
    cropped = gflv2_loss(
        [c[..., : max(c.shape[-1] // 2, 1)] for c in cls], [b[..., : max(b.shape[-1] // 2, 1)] for b in box],
        gts, labels, 2,
    )
    for key in full:
        assert padded[key].item() == pytest.approx(cropped[key].item(), rel=1e-5)
    assert padded["loss_qfl"].item() < full["loss_qfl"].item()  # the right half's negatives drop out


def test_gflv2_loss_rejects_bad_shapes_and_labels():
    cls, box = _head_outputs(1, 3, 64, 64)
    with pytest.raises(ValueError, match="cls_scores"):
        gflv2_loss(cls, box, [torch.zeros((0, 4))], [torch.zeros((0,), dtype=torch.long)], num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        gflv2_loss(cls, box, [torch.tensor([[0.0, 0.0, 9.0, 9.0]])], [torch.tensor([3])], num_classes=3)


def test_losses_pull_a_free_prediction_onto_the_box():
    """Toy overfit: free per-level logits for one image and one box; the losses must fit them."""
    torch.manual_seed(0)
    sizes = _featmap_sizes(64, 64)
    cls_logits = [torch.full((1, 2, h, w), -4.6).requires_grad_() for h, w in sizes]
    box_logits = [(0.01 * torch.randn(1, 4 * BINS, h, w)).requires_grad_() for h, w in sizes]
    target = torch.tensor([[10.0, 12.0, 50.0, 44.0]])
    gts, labels = [target], [torch.tensor([1])]
    opt = torch.optim.Adam(cls_logits + box_logits, lr=0.1)

    def step() -> float:
        losses = gflv2_loss([c.sigmoid() for c in cls_logits], box_logits, gts, labels, num_classes=2)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        return total.item()

    first = step()
    for _ in range(99):
        last = step()
    assert last < 0.2 * first

    # decode the positives' predictions in pixels and compare with the target box
    anchors, points, counts = make_anchors(sizes, STRIDES)
    pos = atss_assign(anchors, counts, target, labels[0], 2).pos_mask
    assert pos.sum() >= 2
    strides = torch.repeat_interleave(torch.tensor(STRIDES, dtype=torch.float32), torch.tensor(counts))
    logits = torch.cat([b.detach().permute(0, 2, 3, 1).reshape(-1, 4, BINS) for b in box_logits])[pos]
    dist = (logits.softmax(-1) * torch.arange(BINS, dtype=torch.float32)).sum(-1) * strides[pos, None]
    decoded = distance2bbox(points[pos], dist)
    ious = bbox_overlaps(decoded, target.expand_as(decoded), aligned=True)
    assert ious.min() > 0.97
    scores = torch.cat([c.detach().sigmoid().permute(0, 2, 3, 1).reshape(-1, 2) for c in cls_logits])
    assert (scores[pos, 1] > 0.7).all()  # positives climb toward their IoU for their class ...
    assert scores[pos, 0].max() < 0.01 and scores[~pos].max() < 0.01  # ... everything else to 0
