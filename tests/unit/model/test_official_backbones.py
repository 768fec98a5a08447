"""ResNeXt, Res2Net v1d and deformable-convolution backbones: parameter counts, official checkpoints (strict loading),
and C3-C5 against a functional computation written from the official layout (tests/unit/model/conftest.py).

The functional reference reads nothing but the state dict: stems, bottlenecks and Bottle2necks as mmdet defines
them, and deformable convolutions computed with ``F.grid_sample`` (bilinear, zeros outside, align_corners; the
formulation of ONNX's reference DeformConv), not with the gathers of model/deform_conv.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gflv2_deploy import build_model, load_checkpoint
from gflv2_deploy.config import load_config
from gflv2_deploy.errors import UserError

NEW_CONFIGS = ("gflv2_r101_dcn_fpn", "gflv2_x101_32x4d_fpn", "gflv2_x101_32x4d_dcn_fpn", "gflv2_r2n101_dcn_fpn")
FPN_AND_HEAD = 3_868_672 + 5_065_242  # spec §5.1: FPN, V2 head (80 classes)
FC = 2048 * 1000 + 1000  # the ImageNet classifier that published backbone counts include


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def offset_conv_params(channels: int) -> int:
    """mmcv DeformConv2dPack.conv_offset on ``channels`` inputs: 3x3 -> 18, with bias."""
    return 18 * channels * 9 + 18


def test_parameter_counts_from_the_architecture() -> None:
    """Exact counts: the plain models from the spec's numbers, DCN adds one offset conv per deformable 3x3 conv."""
    dcn_r101 = 4 * offset_conv_params(128) + 23 * offset_conv_params(256) + 3 * offset_conv_params(512)
    assert n_params(build_model("gflv2_r101_dcn_fpn")) == 51_434_074 + dcn_r101
    x101 = n_params(build_model("gflv2_x101_32x4d_fpn"))
    dcn_x101 = 23 * offset_conv_params(512) + 3 * offset_conv_params(1024)  # ResNeXt widths 512 / 1024 in c4 / c5
    assert n_params(build_model("gflv2_x101_32x4d_dcn_fpn")) == x101 + dcn_x101
    r2n = build_model("gflv2_r2n101_dcn_fpn")
    dcn_r2n = 3 * (23 * offset_conv_params(104) + 3 * offset_conv_params(208))  # 3 convs of width 104 / 208 per block
    plain_r2n = n_params(r2n) - dcn_r2n
    assert plain_r2n - FPN_AND_HEAD == n_params(r2n.backbone) - dcn_r2n


@pytest.mark.parametrize(("config", "published_m", "extra"), [
    # timm resnext101_32x4d (ResNeXt-B layout, as mmdet's): 44.2 M with its classifier
    ("gflv2_x101_32x4d_fpn", 44.2, 0),
    # mmpretrain Res2Net-101-26w-4s (converted from the official repo): 45.21 M with its classifier, 7x7 stem;
    # v1d's deep stem (3x3 32, 3x3 32, 3x3 64 + BNs) has 19,232 parameters more; the DCN offsets are not in it
    ("gflv2_r2n101_dcn_fpn", 45.21, 28_512 + 256 - 9_408 - 128),
])
def test_backbone_counts_match_published_imagenet_models(config: str, published_m: float, extra: int) -> None:
    backbone = build_model(config).backbone
    offsets = sum(n_params(m.conv_offset) for m in backbone.modules() if hasattr(m, "conv_offset"))
    total_m = (n_params(backbone) - offsets + FC - extra) / 1e6
    assert abs(total_m - published_m) < 0.5 * 10 ** -(len(str(published_m).split(".")[1])), total_m


# ---------------------------------------------------------------------------------------------------------------------
# functional reference from the official state dict


def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-5)


def _deform_conv_grid_sample(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, stride: int, groups: int) -> torch.Tensor:
    """3x3, pad 1, one offset group: each tap sampled by grid_sample at (row, col) + (dy, dx), zeros outside."""
    n, c, h, w = x.shape
    oh, ow = offset.shape[-2:]
    rows = (torch.arange(oh) * stride - 1).view(1, oh, 1).float()
    cols = (torch.arange(ow) * stride - 1).view(1, 1, ow).float()
    taps = []
    for a in range(3):
        for b in range(3):
            k = a * 3 + b
            py, px = rows + a + offset[:, 2 * k], cols + b + offset[:, 2 * k + 1]
            grid = torch.stack((2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1), dim=-1)
            taps.append(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))
    sampled = torch.stack(taps, dim=2).reshape(n, groups, (c // groups) * 9, oh * ow)
    out_c = weight.shape[0]
    out = torch.einsum("goi,ngil->ngol", weight.reshape(groups, out_c // groups, -1), sampled)
    return out.reshape(n, out_c, oh, ow)


def _conv3x3(x: torch.Tensor, sd: dict, p: str, stride: int, groups: int = 1) -> torch.Tensor:
    if f"{p}.conv_offset.weight" in sd:
        offset = F.conv2d(x, sd[f"{p}.conv_offset.weight"], sd[f"{p}.conv_offset.bias"], stride, 1)
        return _deform_conv_grid_sample(x, offset, sd[f"{p}.weight"], stride, groups)
    return F.conv2d(x, sd[f"{p}.weight"], None, stride, 1, 1, groups)


def reference_backbone(sd: dict, x: torch.Tensor, arch: dict) -> list[torch.Tensor]:
    """C3, C4, C5 of mmdet ResNet / ResNeXt / Res2Net (style 'pytorch') computed from the official keys."""
    b = "backbone."
    sd = {k[len(b):]: v for k, v in sd.items() if k.startswith(b)}
    if arch["type"] == "Res2Net":
        for i in (0, 3, 6):
            x = F.relu(_bn(F.conv2d(x, sd[f"stem.{i}.weight"], None, 2 if i == 0 else 1, 1), sd, f"stem.{i + 1}"))
    else:
        x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], None, 2, 3), sd, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for k in range(1, 5):
        j = 0
        while f"layer{k}.{j}.conv1.weight" in sd:
            p, stride = f"layer{k}.{j}", 2 if (k > 1 and j == 0) else 1
            out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            if arch["type"] == "Res2Net":
                scales = arch["scales"]
                parts = torch.split(out, out.shape[1] // scales, dim=1)
                pieces, sp = [], None
                for i in range(scales - 1):
                    sp = parts[i] if (i == 0 or j == 0) else sp + parts[i]  # the first block of a stage does not chain
                    sp = F.relu(_bn(_conv3x3(sp, sd, f"{p}.convs.{i}", stride), sd, f"{p}.bns.{i}"))
                    pieces.append(sp)
                last = parts[-1]
                pieces.append(F.avg_pool2d(last, 3, stride, 1) if (j == 0 and stride > 1) else last)
                out = torch.cat(pieces, dim=1)
                shortcut = ("downsample.1", "downsample.2")
            else:
                out = F.relu(_bn(_conv3x3(out, sd, f"{p}.conv2", stride, arch.get("groups", 1)), sd, f"{p}.bn2"))
                shortcut = ("downsample.0", "downsample.1")
            out = _bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            identity = x
            if f"{p}.{shortcut[0]}.weight" in sd:
                if arch["type"] == "Res2Net":  # v1d: average pool (ceil, padding excluded), then a stride-1 1x1 conv
                    pooled = F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)
                    identity = _bn(F.conv2d(pooled, sd[f"{p}.{shortcut[0]}.weight"]), sd, f"{p}.{shortcut[1]}")
                else:
                    identity = _bn(F.conv2d(x, sd[f"{p}.{shortcut[0]}.weight"], None, stride), sd, f"{p}.{shortcut[1]}")
            x = F.relu(out + identity)
            j += 1
        outs.append(x)
    return outs[1:]


@pytest.fixture(scope="module")
def official_files(tmp_path_factory: pytest.TempPathFactory, official_state_dict) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("official")
    files = {}
    for name in NEW_CONFIGS:
        sd = official_state_dict(name, seed=len(name))
        path = root / f"{name}.pth"
        torch.save({"meta": {"mmdet_version": "2.6.0", "epoch": 24}, "state_dict": sd}, path)
        files[name] = (path, sd)
    return files


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_official_checkpoint_loads_strictly_and_backbone_matches_functional_computation(
        name: str, official_files, official_backbone_args, one_torch_thread) -> None:
    path, sd = official_files[name]
    model = build_model(name).eval()
    assert load_checkpoint(model, path)["meta"]["epoch"] == 24  # strict: every key used, none missing
    assert model.bbox_head.gfl_cls.weight.shape[0] == 80
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    arch = official_backbone_args[name]
    with torch.no_grad():
        ours = model.backbone(x)
        reference = reference_backbone(sd, x, arch)
        plain = reference_backbone({k: v for k, v in sd.items() if "conv_offset" not in k}, x, arch)
    for level, (a, r, q) in enumerate(zip(ours, reference, plain)):
        scale = float(r.abs().max())
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5 * scale, msg=f"C{level + 3}")
        if "dcn" in arch and level > 0:  # the offsets move the sampling: C4/C5 differ from plain convolutions
            assert float((r - q).abs().max()) > 0.05 * scale


def test_plain_checkpoint_does_not_fit_the_dcn_configuration(official_files, official_state_dict, tmp_path: Path) -> None:
    """A checkpoint without offset convs (a plain R-101) for gflv2_r101_dcn_fpn: one message naming conv_offset keys."""
    path, sd = official_files["gflv2_r101_dcn_fpn"]
    plain = {k: v for k, v in sd.items() if "conv_offset" not in k}
    plain_path = tmp_path / "r101.pth"
    torch.save({"state_dict": plain}, plain_path)
    with pytest.raises(UserError, match=r"missing keys: backbone\.layer2\.0\.conv2\.conv_offset\.weight"):
        load_checkpoint(build_model("gflv2_r101_dcn_fpn"), plain_path)
    with pytest.raises(UserError, match=r"unexpected keys: .*conv_offset"):
        load_checkpoint(build_model("gflv2_x101_32x4d_fpn"), official_files["gflv2_x101_32x4d_dcn_fpn"][0])


def test_configurations_describe_the_official_backbones() -> None:
    described = {name: load_config(name).backbone.describe() for name in NEW_CONFIGS}
    assert described == {
        "gflv2_r101_dcn_fpn": "ResNet-101, DCN c3-c5",
        "gflv2_x101_32x4d_fpn": "ResNeXt-101 32x4d",
        "gflv2_x101_32x4d_dcn_fpn": "ResNeXt-101 32x4d, DCN c4-c5",
        "gflv2_r2n101_dcn_fpn": "Res2Net-101 26w4s v1d, DCN c4-c5",
    }
    assert math.isclose(load_config("gflv2_r101_dcn_fpn").train.lr, 0.01)


def test_imagenet_weights_initialise_a_dcn_backbone_with_zero_offsets(tmp_path: Path) -> None:
    """An ImageNet ResNet file has no offset convs: they stay at zero, and every other tensor must still fit."""
    from gflv2_deploy.model.backbone import ResNet
    from gflv2_deploy.train.pretrained import load_backbone_weights

    plain = ResNet(depth=50, base_width=16).state_dict()
    plain = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in plain.items()}
    path = tmp_path / "resnet50_w16.pth"
    torch.save({**plain, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}, path)
    dcn = ResNet(depth=50, base_width=16, stage_with_dcn=(False, True, True, True))
    assert load_backbone_weights(dcn, path) == len(plain) + 2 * (4 + 6 + 3)  # + the kept offset convs
    state = dcn.state_dict()
    assert all(torch.equal(state[k], v) for k, v in plain.items())
    assert all(float(v.abs().max()) == 0 for k, v in state.items() if "conv_offset" in k)
    torch.save({k: v for k, v in plain.items() if not k.startswith("layer4.2.")}, path)
    with pytest.raises(UserError, match=r"missing keys: layer4\.2\.conv1\.weight"):  # only offsets may be absent
        load_backbone_weights(dcn, path)
