"""Official GFocalV2 checkpoint layout, our own checkpoints, and checkpoint errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gflv2_deploy import build_model, load_checkpoint
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.checkpoint import checkpoint_config, save_checkpoint


def reference_head(sd: dict[str, torch.Tensor], x: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GFLV2 head of one level computed directly from the official tensors with functional ops (spec §1.4-§1.6)."""
    h = "bbox_head"
    feats = {}
    for tower in ("cls_convs", "reg_convs"):
        f = x
        for i in range(4):
            f = F.conv2d(f, sd[f"{h}.{tower}.{i}.conv.weight"], padding=1)
            f = F.relu(F.group_norm(f, 32, sd[f"{h}.{tower}.{i}.gn.weight"], sd[f"{h}.{tower}.{i}.gn.bias"], eps=1e-5))
        feats[tower] = f
    logits = F.conv2d(feats["cls_convs"], sd[f"{h}.gfl_cls.weight"], sd[f"{h}.gfl_cls.bias"], padding=1)[:, :80]
    reg = F.conv2d(feats["reg_convs"], sd[f"{h}.gfl_reg.weight"], sd[f"{h}.gfl_reg.bias"], padding=1)
    reg = reg * sd[f"{h}.scales.{level}.scale"]
    n, _, hh, ww = reg.shape
    stats = []
    for side in range(4):  # side-major: [top1..top4, mean] per side
        prob = reg[:, side * 17 : (side + 1) * 17].softmax(dim=1)
        top = prob.sort(dim=1, descending=True).values[:, :4]
        stats += [top, top.mean(dim=1, keepdim=True)]
    s = torch.cat(stats, dim=1)
    q = F.conv2d(F.relu(F.conv2d(s, sd[f"{h}.reg_conf.0.weight"], sd[f"{h}.reg_conf.0.bias"])), sd[f"{h}.reg_conf.2.weight"], sd[f"{h}.reg_conf.2.bias"])
    return logits.sigmoid() * q.sigmoid(), reg


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory, official_state_dict) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = official_state_dict("gflv2_r50_fpn")  # tests/unit/model/conftest.py: written from the spec, §6
    path = tmp_path_factory.mktemp("ckpt") / "gfocal_r50_fpn_1x.pth"
    torch.save({"meta": {"mmdet_version": "2.6.0", "epoch": 12, "CLASSES": ("person",) * 80}, "state_dict": sd}, path)
    return path, sd


def test_official_checkpoint_loads_and_head_matches_independent_computation(official_file) -> None:
    path, sd = official_file
    model = build_model("gflv2_r50_fpn").eval()
    meta = load_checkpoint(model, path)
    assert meta["meta"]["epoch"] == 12
    assert model.bbox_head.gfl_cls.weight.shape[0] == 80
    torch.manual_seed(0)
    feats = [torch.randn(1, 256, s, s + 1) for s in (8, 4, 2, 1, 1)]
    with torch.no_grad():
        cls_scores, bbox_preds = model.bbox_head(feats)
        for level, x in enumerate(feats):
            ref_cls, ref_reg = reference_head(sd, x, level)
            assert torch.allclose(cls_scores[level], ref_cls, atol=1e-5), level
            assert torch.allclose(bbox_preds[level], ref_reg, atol=1e-4), level
    # backbone and neck weights landed under the same names
    assert torch.equal(model.backbone.layer3[5].conv2.weight, sd["backbone.layer3.5.conv2.weight"])
    assert torch.equal(model.neck.fpn_convs[4].conv.bias, sd["neck.fpn_convs.4.conv.bias"])


def test_official_checkpoint_for_another_architecture_fails_clearly(official_file) -> None:
    path, _ = official_file
    with pytest.raises(UserError, match="does not fit this model.*(missing|unexpected)"):
        load_checkpoint(build_model("gflv2_r101_fpn"), path)
    with pytest.raises(UserError, match="shape mismatches.*gfl_cls"):
        load_checkpoint(build_model("gflv2_r50_fpn", num_classes=20), path)


def test_own_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model("gflv2_tiny", num_classes=6)
    path = tmp_path / "tiny.pth"
    save_checkpoint(path, model, model.config, epoch=3)
    other = build_model("gflv2_tiny", num_classes=6)
    meta = load_checkpoint(other, path)
    assert meta["epoch"] == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    cfg = checkpoint_config(path)
    assert cfg is not None and cfg.head.num_classes == 6 and cfg.name == "gflv2_tiny"
    with pytest.raises(UserError, match="shape mismatches"):
        load_checkpoint(build_model("gflv2_tiny", num_classes=80), path)


def test_bad_checkpoint_files(tmp_path: Path) -> None:
    model = build_model("gflv2_tiny")
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(model, tmp_path / "missing.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_checkpoint(model, empty)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04not a checkpoint" * 10)
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(model, corrupt)
    text = tmp_path / "notes.pth"
    text.write_text("hello, this is a text file\n")
    with pytest.raises(UserError, match="not a PyTorch checkpoint") as err:
        load_checkpoint(model, text)
    assert "unpickling" not in str(err.value)  # not mistaken for an unsafe pickle
    good = tmp_path / "good.pth"
    save_checkpoint(good, model, model.config)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(model, truncated)


class Arbitrary:
    pass


def test_checkpoint_needing_unpickling_is_refused(tmp_path: Path) -> None:
    model = build_model("gflv2_tiny")
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": model.state_dict(), "meta": Arbitrary()}, path, pickle_module=pickle)
    with pytest.raises(UserError, match="allow-unsafe-pickle"):
        load_checkpoint(model, path)
    load_checkpoint(model, path, allow_unsafe_pickle=True)
