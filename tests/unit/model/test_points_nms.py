"""Prior points, decoding and NMS against a plain greedy reference."""

from __future__ import annotations

import torch

from gflv2_deploy.model.nms import batched_nms, box_iou, multiclass_nms, nms
from gflv2_deploy.model.points import bbox2distance, distance2bbox, level_points


def test_points_are_cell_corners_row_major() -> None:
    pts = level_points(torch.zeros(1, 1, 2, 3), stride=8)
    assert pts.tolist() == [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8]]


def test_decode_inverts_encode_and_clamps() -> None:
    torch.manual_seed(0)
    points = torch.rand(50, 2) * 100 + 50
    d = torch.rand(50, 4) * 40
    boxes = distance2bbox(points, d)
    assert torch.allclose(bbox2distance(points, boxes), d, atol=1e-4)
    clamped = distance2bbox(points, d * 10, max_shape=torch.tensor([120.0, 90.0]))
    assert float(clamped[:, 0::2].min()) >= 0 and float(clamped[:, 0::2].max()) <= 90
    assert float(clamped[:, 1::2].min()) >= 0 and float(clamped[:, 1::2].max()) <= 120


def greedy_nms_reference(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS, one box at a time with Python floats."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i].tolist(), boxes[j].tolist()
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 80 + 1
    return torch.cat([xy, xy + wh], dim=1), torch.rand(n, generator=g)


def test_nms_matches_greedy_reference_on_random_boxes() -> None:
    for seed in range(20):
        boxes, scores = random_boxes(150, seed)
        for thr in (0.3, 0.6):
            assert nms(boxes, scores, thr).tolist() == greedy_nms_reference(boxes, scores, thr)


def test_batched_nms_is_class_aware_and_matches_per_class_reference() -> None:
    for seed in range(5):
        boxes, scores = random_boxes(300, seed)
        labels = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(seed))
        keep = batched_nms(boxes, scores, labels, 0.5)
        expected = []
        for c in range(4):
            idx = torch.nonzero(labels == c).squeeze(1)
            expected += [int(idx[k]) for k in greedy_nms_reference(boxes[idx], scores[idx], 0.5)]
        assert sorted(keep.tolist()) == sorted(expected)
        assert torch.all(scores[keep][:-1] >= scores[keep][1:])


def test_max_num_gives_the_first_boxes_of_a_full_run() -> None:
    boxes, scores = random_boxes(3000, 3)
    labels = torch.randint(0, 3, (3000,), generator=torch.Generator().manual_seed(0))
    full = batched_nms(boxes, scores, labels, 0.6)
    assert torch.equal(batched_nms(boxes, scores, labels, 0.6, max_num=50), full[:50])
    for c in range(3):
        kept_c = full[labels[full] == c]
        iou = box_iou(boxes[kept_c], boxes[kept_c]).fill_diagonal_(0)
        assert float(iou.max()) <= 0.6


def test_chain_of_overlapping_boxes_keeps_every_other_box() -> None:
    # each box overlaps only its neighbours (IoU 1/3 > 0.3): greedy keeps 0, 2, 4, ...
    x = torch.arange(200, dtype=torch.float32) * 5
    boxes = torch.stack([x, torch.zeros(200), x + 10, torch.ones(200) * 10], dim=1)
    scores = torch.linspace(1, 0.5, 200)
    assert nms(boxes, scores, 0.3).tolist() == list(range(0, 200, 2))


def test_multiclass_nms_is_multi_label() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0], [0.0, 0.0, 0.04]])
    b, s, l = multiclass_nms(boxes, scores, score_thr=0.05, iou_thr=0.6, max_num=100)
    assert l.tolist() == [0, 1]  # box 0 kept for both classes; box 1 suppressed in class 0; 0.04 below thr
    assert torch.allclose(s, torch.tensor([0.9, 0.8]))
    assert torch.equal(b[0], boxes[0]) and torch.equal(b[1], boxes[0])
