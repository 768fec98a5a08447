"""Model structure, head invariants and batch consistency."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gflv2_deploy import build_model
from gflv2_deploy.config import load_config
from gflv2_deploy.model.distribution import dgqp_statistics, integral, side_probabilities
from gflv2_deploy.spec import num_points


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "expected"), [("gflv2_r50_fpn", 32_441_946), ("gflv2_r101_fpn", 51_434_074)])
def test_parameter_count_matches_spec(name: str, expected: int) -> None:
    assert n_params(build_model(name, num_classes=80)) == expected


def test_output_shapes_and_ranges() -> None:
    model = build_model("gflv2_tiny", num_classes=7).eval()
    with torch.no_grad():
        cls_scores, bbox_preds = model(torch.randn(2, 3, 96, 160))
    assert [tuple(c.shape[-2:]) for c in cls_scores] == [(12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]
    assert all(c.shape[:2] == (2, 7) for c in cls_scores)
    assert all(b.shape[:2] == (2, 68) and b.dtype == torch.float32 for b in bbox_preds)
    assert all(float(c.min()) >= 0 and float(c.max()) <= 1 for c in cls_scores)
    assert sum(c.shape[-1] * c.shape[-2] for c in cls_scores) == num_points(96, 160)


def test_num_points_spec_examples() -> None:
    assert num_points(800, 1344) == 22400
    assert num_points(800, 1216) == 20267
    assert num_points(640, 640) == 8525


def test_integral_of_one_hot_returns_its_bin() -> None:
    bins = torch.tensor([0, 3, 16, 9])
    logits = torch.full((1, 4, 17, 1, 1), -1e4)
    logits[0, torch.arange(4), bins, 0, 0] = 0.0
    prob = F.softmax(logits, dim=2)
    assert torch.allclose(integral(prob)[0, :, 0, 0], bins.float())


def test_dgqp_input_is_side_major_sorted_topk_and_mean() -> None:
    torch.manual_seed(0)
    bbox_pred = torch.randn(2, 68, 3, 4)
    stats = dgqp_statistics(side_probabilities(bbox_pred, 16), topk=4, add_mean=True)
    assert stats.shape == (2, 20, 3, 4)
    for side in range(4):
        p = F.softmax(bbox_pred[:, side * 17 : (side + 1) * 17], dim=1)
        top = p.sort(dim=1, descending=True).values[:, :4]
        assert torch.allclose(stats[:, side * 5 : side * 5 + 4], top, atol=1e-7)
        assert torch.allclose(stats[:, side * 5 + 4], top.mean(dim=1), atol=1e-7)


def test_batch_of_three_equals_three_batches_of_one() -> None:
    torch.manual_seed(1)
    model = build_model("gflv2_tiny", num_classes=5).eval()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        cls_b, reg_b = model(x)
        singles = [model(x[i : i + 1]) for i in range(3)]
    for level in range(5):
        assert torch.allclose(cls_b[level], torch.cat([s[0][level] for s in singles]), atol=1e-6)
        assert torch.allclose(reg_b[level], torch.cat([s[1][level] for s in singles]), atol=1e-5)


def test_frozen_stages_and_norm_eval_survive_train_mode() -> None:
    cfg = load_config("gflv2_tiny")
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, frozen_stages=1, norm_eval=True))
    model = build_model(cfg).train()
    bb = model.backbone
    assert not any(p.requires_grad for p in bb.conv1.parameters())
    assert not any(p.requires_grad for p in bb.layer1.parameters())
    assert all(p.requires_grad for p in bb.layer2.parameters())
    assert all(not m.training for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.bbox_head.training


def test_from_scratch_tiny_config_trains_everything() -> None:
    model = build_model("gflv2_tiny").train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_initial_joint_score_is_about_half_a_percent() -> None:
    torch.manual_seed(0)
    model = build_model("gflv2_tiny").eval()
    with torch.no_grad():
        cls_scores, _ = model(torch.randn(1, 3, 64, 64))
    mean = torch.cat([c.flatten() for c in cls_scores]).mean().item()
    assert 0.003 < mean < 0.007  # 0.01 * sigmoid(~0) (spec §1.8)
