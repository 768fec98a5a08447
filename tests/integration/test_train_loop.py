"""The training loop end to end on a tiny synthetic dataset: outputs, learning, exact resume, ImageNet init, refusals."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from gflv2_deploy.config import ModelConfig, load_config
from gflv2_deploy.data.synth import generate_synthetic_coco
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.backbone import ResNet
from gflv2_deploy.model.checkpoint import read_checkpoint, save_checkpoint
from gflv2_deploy.runtime.evaluate import coco_evaluator
from gflv2_deploy.model.load import load_torch_model
from gflv2_deploy.train.loop import train
from gflv2_deploy.train.pretrained import load_backbone_weights
from gflv2_deploy.train.training_log import read_log


# tiny tensors on a shared 2-core machine: a second intra-op thread mostly spins against other processes
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    generate_synthetic_coco(root, num_images=10, seed=11, val_fraction=0.2, image_size=(112, 144))
    return root


def tiny(**train_overrides) -> ModelConfig:
    """gflv2_tiny at a small scale: short edge 128..160, test short edge 144; in-process data loading."""
    cfg = load_config("gflv2_tiny")
    recipe = dict(scale_range=(128, 160), scale_long=256, warmup_iters=3, num_workers=0, batch_size=4)
    recipe.update(train_overrides)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **recipe),
                               test=dataclasses.replace(cfg.test, scale=(256, 144)))


def _train_records(work: Path) -> list[dict]:
    return [r for r in read_log(work / "log.jsonl") if r["type"] == "train"]


def test_training_writes_log_checkpoints_curve_and_evaluates(data: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    summary = train(tiny(), data, work, epochs=2, log_interval=1, eval_interval=2, progress=False, evaluate=coco_evaluator(data))
    # 8 train images, batch 4: 2 iterations per epoch
    assert summary["iterations"] == 4 and summary["epochs"] == 2 and summary["num_classes"] == 6
    records = read_log(work / "log.jsonl")
    train_recs = [r for r in records if r["type"] == "train"]
    assert [r["iteration"] for r in train_recs] == [1, 2, 3, 4] and [r["epoch"] for r in train_recs] == [1, 1, 2, 2]
    for r in train_recs:
        assert {"lr", "loss", "loss_qfl", "loss_bbox", "loss_dfl", "time_per_iter", "data_time"} <= set(r)
        assert math.isfinite(r["loss"]) and 0 < r["loss"] < 10
        assert r["loss"] == pytest.approx(r["loss_qfl"] + r["loss_bbox"] + r["loss_dfl"])
    assert train_recs[0]["lr"] == pytest.approx(0.02 * 0.001) and train_recs[3]["lr"] == pytest.approx(0.02)
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) == 1 and evals[0]["iteration"] == 4 and len(evals[0]["stats"]) == 12 and evals[0]["split"] == "val"
    assert summary["metrics"]["stats"] == evals[0]["stats"]
    assert {p.name for p in work.iterdir()} >= {"log.jsonl", "latest.pth", "epoch_1.pth", "epoch_2.pth", "loss_curve.png"}
    assert (work / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(work.glob(".*tmp*"))  # atomic writes leave no temporary files
    ckpt = read_checkpoint(work / "latest.pth")
    assert ckpt["position"] == {"epoch": 2, "epoch_batch": 0, "iteration": 4}
    assert {"optimizer", "scheduler", "rng", "run"} <= set(ckpt)
    model = load_torch_model(work / "latest.pth")  # the inference path reads training checkpoints
    assert model.num_classes == 6 and model.config.class_names[0] == "disc"


def test_evaluation_epochs_are_numbered_like_training_epochs(data: Path, tmp_path: Path, capsys) -> None:
    """8 train images, batch 4: 2 iterations per epoch; 5 iterations stop one batch into epoch 3 (issue 9)."""
    seen: list[int] = []

    def evaluate(model: torch.nn.Module, cfg: ModelConfig) -> dict:
        seen.append(len(seen))
        return {"stats": [0.0] * 12, "split": "val", "num_images": 2}

    train(tiny(), data, tmp_path / "e", epochs=3, max_iters=5, eval_interval=2, log_interval=1, progress=False,
          evaluate=evaluate)
    evals = [r for r in read_log(tmp_path / "e" / "log.jsonl") if r["type"] == "eval"]
    assert [(r["iteration"], r["epoch"]) for r in evals] == [(4, 2), (5, 3)]
    err = capsys.readouterr().err
    assert "eval after epoch 2 (val" in err and "eval after epoch 3, 1 batches into it (val" in err


def test_loss_goes_down_when_fitting_a_few_images(data: Path, tmp_path: Path) -> None:
    # batch 8 = the whole train split at one scale, unflipped: every iteration sees the same batch
    cfg = tiny(scale_range=(128, 128), flip_prob=0.0, lr=0.02, warmup_iters=1)
    train(cfg, data, tmp_path / "fit", epochs=16, batch_size=8, log_interval=1, eval_interval=0,
          checkpoint_interval=0, progress=False)
    losses = [r["loss"] for r in _train_records(tmp_path / "fit")]
    assert len(losses) == 16 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_resume_continues_exactly_like_an_uninterrupted_run(data: Path, tmp_path: Path) -> None:
    cfg = tiny(lr_steps=(2,))  # lr drops inside the resumed part; flips and scales are random
    common = dict(epochs=3, log_interval=1, eval_interval=0, checkpoint_interval=0, deterministic=True, progress=False)
    whole = train(cfg, data, tmp_path / "whole", max_iters=5, **common)
    train(cfg, data, tmp_path / "part", max_iters=3, **common)  # stops in the middle of epoch 2
    assert read_checkpoint(tmp_path / "part" / "latest.pth")["position"] == {"epoch": 1, "epoch_batch": 1, "iteration": 3}
    resumed = train(cfg, data, tmp_path / "part", max_iters=5, resume=tmp_path / "part" / "latest.pth", **common)
    assert whole["iterations"] == resumed["iterations"] == 5
    a, b = _train_records(tmp_path / "whole"), _train_records(tmp_path / "part")
    assert [r["iteration"] for r in b] == [1, 2, 3, 4, 5]  # the resumed log reads as one run
    for ra, rb in zip(a, b):
        assert ra["lr"] == rb["lr"]
        for key in ("loss", "loss_qfl", "loss_bbox", "loss_dfl"):
            assert rb[key] == pytest.approx(ra[key], abs=1e-6, rel=0), (ra["iteration"], key)
    sd_a = read_checkpoint(tmp_path / "whole" / "latest.pth")["state_dict"]
    sd_b = read_checkpoint(tmp_path / "part" / "latest.pth")["state_dict"]
    for k in sd_a:
        torch.testing.assert_close(sd_b[k], sd_a[k], rtol=0, atol=1e-6)


def test_resume_with_another_batch_size_is_refused(data: Path, tmp_path: Path) -> None:
    train(tiny(), data, tmp_path / "r", max_iters=1, eval_interval=0, progress=False)
    with pytest.raises(UserError, match="same values"):
        train(tiny(), data, tmp_path / "r", max_iters=2, batch_size=2, eval_interval=0, progress=False,
              resume=tmp_path / "r" / "latest.pth")


def _torchvision_state_dict(width: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = ResNet(depth=18, base_width=width).state_dict()
    for k, v in sd.items():  # non-trivial BN statistics, as in a real ImageNet file
        if k.endswith(("running_mean", "running_var")):
            sd[k] = v + torch.rand_like(v)
    sd["fc.weight"] = torch.randn(1000, 8 * width)
    sd["fc.bias"] = torch.randn(1000)
    return sd


def test_backbone_weights_load_from_a_torchvision_file(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "resnet18_w16.pth"
    sd = _torchvision_state_dict(16, seed=3)
    torch.save(sd, path)
    cfg = tiny(warmup_iters=0)  # with the official frozen stem and frozen BatchNorm, as for ImageNet weights
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, frozen_stages=1, norm_eval=True))
    train(cfg, data, tmp_path / "pre", max_iters=1, eval_interval=0, backbone_weights=path, progress=False)
    trained = read_checkpoint(tmp_path / "pre" / "latest.pth")["state_dict"]
    for k, v in sd.items():
        if k.startswith("fc."):
            assert f"backbone.{k}" not in trained
        elif k.startswith(("conv1", "bn1", "layer1")) or "running" in k or "num_batches" in k:
            assert torch.equal(trained[f"backbone.{k}"], v), k  # frozen stages and BN statistics untouched
    moved = trained["backbone.layer4.1.conv2.weight"] - sd["layer4.1.conv2.weight"]
    assert 0 < moved.abs().max() < 0.1  # trained one step from the loaded weights, not from a fresh init


def test_wrong_backbone_files_fail_with_one_clear_message(tmp_path: Path) -> None:
    backbone = ResNet(depth=18, base_width=16)
    wide = tmp_path / "resnet18_w32.pth"
    torch.save(_torchvision_state_dict(32, seed=0), wide)
    with pytest.raises(UserError, match=r"do not fit .*shape mismatches: conv1.weight.*torchvision-format"):
        load_backbone_weights(backbone, wide)
    deeper = tmp_path / "resnet34.pth"
    torch.save(ResNet(depth=34, base_width=16).state_dict(), deeper)
    with pytest.raises(UserError, match=r"unexpected keys: layer1.2"):
        load_backbone_weights(backbone, deeper)
    detector = tmp_path / "detector.pth"
    model = load_torch_model(None, "gflv2_tiny")
    save_checkpoint(detector, model, model.config)
    with pytest.raises(UserError, match="detector checkpoint"):
        load_backbone_weights(backbone, detector)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(UserError, match="junk.pth"):  # read_checkpoint's own message
        load_backbone_weights(backbone, junk)
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights(backbone, tmp_path / "missing.pth")


def test_refusals_before_any_training(data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs a CUDA device"):
        train(tiny(), data, tmp_path / "a", amp=True)
    no_val = tmp_path / "no_val"
    no_val.mkdir()
    (no_val / "annotations").mkdir()
    (no_val / "annotations" / "instances_train.json").write_bytes((data / "annotations" / "instances_train.json").read_bytes())
    (no_val / "train").symlink_to(data / "train")
    with pytest.raises(UserError, match="--eval-interval 0"):
        coco_evaluator(no_val, "val")  # refused when made, i.e. before training starts
    empty = json.loads((data / "annotations" / "instances_train.json").read_text())
    empty["annotations"] = []
    (no_val / "annotations" / "instances_train.json").write_text(json.dumps(empty))
    with pytest.raises(UserError, match="training never silently trains on nothing"):
        train(tiny(), no_val, tmp_path / "c", eval_interval=0)
    assert not (tmp_path / "c").exists()
