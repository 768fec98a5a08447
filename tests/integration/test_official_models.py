"""The official GFLV2 models beyond ResNet (R-101-DCN, X-101-32x4d +-DCN, Res2Net-101-DCN) from torch to onnxruntime
on real photos, and what FP16 / INT8 do to a DCN model's accuracy.

Random weights with a detecting head (tests/conftest.py ``detecting_model``; the deformable convs get offsets of
about 1.5 px) at a test scale of 320 x 224, so each 101-layer model costs a minute or two on the 2-core machine.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gflv2_deploy.config import BackboneConfig, load_config
from gflv2_deploy.export.onnx import export_onnx
from gflv2_deploy.model.checkpoint import save_checkpoint
from gflv2_deploy.runtime.evaluate import compare_backends, evaluate_on_coco
from gflv2_deploy.runtime.factory import make_detector
from gflv2_deploy.runtime.ort_runner import load_onnx_detector

NEW_CONFIGS = ("gflv2_r101_dcn_fpn", "gflv2_x101_32x4d_fpn", "gflv2_x101_32x4d_dcn_fpn", "gflv2_r2n101_dcn_fpn")


@pytest.mark.slow  # one 101-layer export and 2 x 3 inferences per configuration: 1-3 minutes each on 2 busy cores
@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_export_matches_torch_on_photos(name: str, detecting_model, tiny50: Path, tmp_path: Path) -> None:
    cfg = load_config(name)
    cfg = dataclasses.replace(cfg, test=dataclasses.replace(cfg.test, scale=(320, 224)))
    model = detecting_model(cfg, cls_std=0.02, reg_std=0.01)
    ckpt, path = tmp_path / f"{name}.pth", tmp_path / f"{name}.prenms.onnx"
    save_checkpoint(ckpt, model, model.config)
    result = export_onnx(model, path, nms="none", dynamic_hw=True)
    assert result.opset == (19 if cfg.backbone.has_dcn else 17)
    threads = torch.get_num_threads()
    try:
        ref = make_detector("torch", ckpt, threads=2)
        test = make_detector("onnxruntime", path, threads=2, expose_pre_nms=True)
        report = compare_backends(ref, test, image_paths=[tiny50 / "val2017"], limit=3, progress=False)
    finally:
        torch.set_num_threads(threads)
    d, t = report["detections"], report["tensors"]
    print(f"\n{name}: {d['num_ref']} detections, matched {d['matched']}, max |d score| {d['score_delta_max']:.2e}, "
          f"max |d box| {d['box_delta_max']:.2e} px; pre-NMS max |d| scores {t['scores']['max_abs']:.2e}, "
          f"boxes {t['boxes']['max_abs']:.2e} px")
    assert report["passed"], report["failures"]  # the fp32 budgets of eval/compare.py
    assert d["num_ref"] >= 20 and d["matched"] == d["num_ref"] == d["num_test"]


@pytest.mark.slow  # one export, six conversions and seven COCO evaluations of a small DCN model: about 3 minutes
def test_fp16_and_int8_of_a_dcn_model_against_the_ap_budgets(detecting_model, write_pseudo_gt, tmp_path: Path) -> None:
    """AP (pseudo ground truth: the fp32 model's own confident detections) of the default recipes, which keep the
    deformable convs and their offset convs in float32, and of the variants that do not. Printed for docs/models.md;
    asserted: the fp32 graph reproduces the ground truth, and every variant still detects."""
    from gflv2_deploy.data.synth import generate_synthetic_coco
    from gflv2_deploy.export.fp16 import convert_fp16
    from gflv2_deploy.export.quantize import quantize_int8

    tiny = load_config("gflv2_tiny")
    backbone = BackboneConfig(depth=50, base_width=16, frozen_stages=-1, norm_eval=False, stage_with_dcn=(False, True, True, True))
    model = detecting_model(dataclasses.replace(tiny, name="tiny_r50_dcn", backbone=backbone), num_classes=6)
    ckpt, synth, data = tmp_path / "dcn.pth", tmp_path / "synth", tmp_path / "data"
    save_checkpoint(ckpt, model, model.config)
    generate_synthetic_coco(synth, 40, seed=3, image_size=(192, 256))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        write_pseudo_gt(ckpt, synth, data)
    finally:
        torch.set_num_threads(threads)
    prenms = tmp_path / "dcn.prenms.onnx"
    export_onnx(model, prenms, dynamic_hw=True)
    files = {"fp32": prenms,
             "fp16 (DCN fp32)": convert_fp16(prenms, tmp_path / "fp16.onnx").path,
             "fp16 (DCN fp16)": convert_fp16(prenms, tmp_path / "fp16_dcn.onnx", keep_deform_conv_fp32=False).path}
    for target in ("tensorrt", "onnxruntime"):
        for keep in (True, False):
            files[f"int8 {target} (offsets {'float' if keep else 'int8'})"] = quantize_int8(
                prenms, tmp_path / f"int8_{target}_{keep}.onnx", calib_data=synth / "train", calib_images=16, target=target,
                keep_deform_conv_float=keep, method="max").path
    ap = {}
    for name, path in files.items():
        metrics, _ = evaluate_on_coco(load_onnx_detector(path, providers=["CPUExecutionProvider"], threads=2), data, "val",
                                      progress=False)
        ap[name] = 100 * metrics["stats"][0]
    print("\n" + "\n".join(f"{name:32s} AP {value:6.2f}  drop {ap['fp32'] - value:5.2f}" for name, value in ap.items()))
    assert ap["fp32"] > 99.0
    assert all(value > 50.0 for value in ap.values())
