"""Model configurations: frozen dataclasses loaded from TOML files in ``gflv2_deploy/configs/``.

A configuration is chosen by name (``gflv2_r50_fpn`` -> ``gflv2_deploy/configs/gflv2_r50_fpn.toml``) or by a
path to a TOML file. Unknown keys fail with a close-match hint; there is no inheritance between
files, so everything that builds a model is visible in one file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gflv2_deploy import spec
from gflv2_deploy.errors import UserError

MODELS_DIR = Path(__file__).resolve().parent / "configs"


BACKBONE_TYPES = ("resnet", "resnext", "res2net")


@dataclass(frozen=True)
class BackboneConfig:
    """The backbone: ResNet, ResNeXt (grouped 3x3 convs) or Res2Net v1d, optionally with deformable 3x3 convs.

    The names follow mmdet's backbone arguments where they exist (``groups``, ``stage_with_dcn``,
    ``deform_groups``); ``width_per_group`` is mmdet ResNeXt's ``base_width`` and ``scale_width`` /
    ``scales`` Res2Net's ``base_width`` / ``scales`` (our ``base_width`` is the stem / layer1 width).
    """

    type: str = "resnet"  # resnet | resnext | res2net (v1d: deep stem, average-pool shortcuts)
    depth: int = 50  # 18, 34, 50 or 101 (resnext and res2net: 50 or 101)
    base_width: int = 64  # channels of the stem; torchvision ResNets use 64
    frozen_stages: int = 1  # stem + layer1 frozen (spec §1.2)
    norm_eval: bool = True  # every BatchNorm kept in eval mode while training
    groups: int = 1  # resnext: cardinality (32 for X-101-32x4d)
    width_per_group: int = 4  # resnext: channels per group at base_width planes (the "4d")
    scales: int = 4  # res2net: channel groups per 3x3 stage (the "4s")
    scale_width: int = 26  # res2net: channels per group at base_width planes (the "26w")
    stage_with_dcn: tuple[bool, ...] = (False, False, False, False)  # layer1..layer4 with deformable 3x3 convs
    deform_groups: int = 1  # offset groups of each deformable conv (mmcv deform_groups)

    def __post_init__(self) -> None:
        if self.type not in BACKBONE_TYPES:
            hint = difflib.get_close_matches(self.type, BACKBONE_TYPES, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise UserError(f"unknown backbone type '{self.type}'{extra} (choose one of {', '.join(BACKBONE_TYPES)})")
        if len(self.stage_with_dcn) != 4 or not all(isinstance(v, bool) for v in self.stage_with_dcn):
            raise UserError(f"backbone stage_with_dcn must be 4 booleans (layer1..layer4), got {list(self.stage_with_dcn)}")
        if self.type in ("resnext", "res2net") and self.depth not in (50, 101):
            raise UserError(f"a {self.type} backbone needs depth 50 or 101, got {self.depth}")
        if self.type == "resnext" and self.groups < 2:
            raise UserError(f"a resnext backbone needs groups >= 2, got {self.groups} (groups = 1 is a resnet)")
        if self.type != "resnext" and self.groups != 1:
            raise UserError(f"groups = {self.groups} needs backbone type 'resnext'")
        if self.type == "res2net" and self.scales < 2:
            raise UserError(f"a res2net backbone needs scales >= 2, got {self.scales}")
        if any(self.stage_with_dcn) and self.depth < 50:
            raise UserError(f"deformable convs replace bottleneck 3x3 convs: ResNet-{self.depth} has none (use depth 50 or 101)")

    @property
    def has_dcn(self) -> bool:
        return any(self.stage_with_dcn)

    def describe(self) -> str:
        """A short name: 'ResNet-50', 'ResNeXt-101 32x4d, DCN c4-c5', 'Res2Net-101 26w4s v1d, DCN c4-c5'."""
        name = {"resnet": f"ResNet-{self.depth}", "resnext": f"ResNeXt-{self.depth} {self.groups}x{self.width_per_group}d",
                "res2net": f"Res2Net-{self.depth} {self.scale_width}w{self.scales}s v1d"}[self.type]
        if self.base_width != 64:
            name += f" (width {self.base_width})"
        stages = [i + 2 for i, on in enumerate(self.stage_with_dcn) if on]  # layer k outputs C(k+1)
        if stages:
            name += f", DCN c{stages[0]}-c{stages[-1]}" if stages == list(range(stages[0], stages[-1] + 1)) else \
                ", DCN " + "/".join(f"c{s}" for s in stages)
        return name


@dataclass(frozen=True)
class NeckConfig:
    out_channels: int = 256


@dataclass(frozen=True)
class HeadConfig:
    num_classes: int = 80
    feat_channels: int = 256
    stacked_convs: int = 4
    gn_groups: int = 32
    reg_max: int = spec.REG_MAX
    reg_topk: int = spec.REG_TOPK
    reg_channels: int = 64
    add_mean: bool = spec.DGQP_ADD_MEAN


@dataclass(frozen=True)
class TestConfig:
    scale: tuple[int, int] = spec.TEST_SCALE  # (long, short) keep-ratio bound
    nms_pre: int = spec.NMS_PRE
    score_thr: float = spec.SCORE_THR
    iou_thr: float = spec.IOU_THR
    max_per_img: int = spec.MAX_PER_IMG


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (spec §4); scaled-down values live in the small configurations."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)  # epochs after which lr is multiplied by 0.1
    batch_size: int = 16  # images per iteration in total over all processes (official: 8 GPUs x 2)
    scale_range: tuple[int, int] = (800, 800)  # short-edge range, long edge bound = scale_long
    scale_long: int = 1333
    flip_prob: float = 0.5
    grad_clip: float = 0.0  # 0 = no clipping (official recipe)
    num_workers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    test: TestConfig = field(default_factory=TestConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    class_names: tuple[str, ...] = spec.COCO_CLASSES

    def with_num_classes(self, num_classes: int, class_names: tuple[str, ...] | None = None) -> "ModelConfig":
        """Return a copy whose head predicts ``num_classes`` classes."""
        names = class_names or (self.class_names if len(self.class_names) == num_classes
                                else tuple(f"class_{i}" for i in range(num_classes)))
        return dataclasses.replace(
            self, head=dataclasses.replace(self.head, num_classes=num_classes), class_names=names
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"backbone": BackboneConfig, "neck": NeckConfig, "head": HeadConfig,
             "test": TestConfig, "train": TrainConfig}


def _check_keys(given: dict[str, Any], allowed: list[str], where: str) -> None:
    for key in given:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(allowed)}"
            raise UserError(f"unknown key '{key}' in {where}{extra}")


def _build_section(cls: type, values: dict[str, Any], where: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    _check_keys(values, names, where)
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**converted)


def config_from_dict(data: dict[str, Any], name: str, where: str = "configuration") -> ModelConfig:
    """Build a ``ModelConfig`` from a parsed TOML/JSON mapping (sections as in ``configs/*.toml``)."""
    top_level = list(_SECTIONS) + ["name", "class_names"]
    _check_keys(data, top_level, where)
    kwargs: dict[str, Any] = {"name": data.get("name", name)}
    for section, cls in _SECTIONS.items():
        if section in data:
            kwargs[section] = _build_section(cls, data[section], f"[{section}] of {where}")
    if "class_names" in data:
        kwargs["class_names"] = tuple(data["class_names"])
    cfg = ModelConfig(**kwargs)
    if len(cfg.class_names) != cfg.head.num_classes:
        cfg = cfg.with_num_classes(cfg.head.num_classes)
    return cfg


def available_configs() -> list[str]:
    """Names of the configurations shipped in ``gflv2_deploy/configs/``."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def load_config(name_or_path: str | os.PathLike[str]) -> ModelConfig:
    """Load a configuration by name (``configs/NAME.toml``) or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = MODELS_DIR / f"{name_or_path}.toml"
        if not path.exists():
            names = available_configs()
            hint = difflib.get_close_matches(str(name_or_path), names, n=1)
            extra = f"; did you mean '{hint[0]}'?" if hint else ""
            raise UserError(f"unknown configuration '{name_or_path}'{extra} (available: {', '.join(names)})")
    if not path.exists():
        raise UserError(f"configuration file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"configuration file {path} is not valid TOML: {exc}") from None
    return config_from_dict(data, name=path.stem, where=str(path))
