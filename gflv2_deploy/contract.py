"""The graph contract: one frozen, versioned description of how to feed an exported graph and read it.

Export writes it into the ONNX ``metadata_props`` (key ``CONTRACT_METADATA_KEY``) as JSON; the FP16/INT8
converters derive an updated copy through methods; ``build`` copies it into each engine manifest; every
runner (Python, C++, Triton) reads typed fields from it. Field by field documentation:
``docs/contract.md``; JSON Schema: ``gflv2_deploy/contract.schema.json`` (validated in the tests).

Each fact is stored once. Derived facts are properties (``end_to_end``, ``dynamic_batch``, ...).
This module imports neither torch nor onnx (runtimes without torch read it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gflv2_deploy import spec
from gflv2_deploy.errors import UserError

CONTRACT_METADATA_KEY = "gflv2_deploy.contract"
CONTRACT_FORMAT = "gflv2-deploy/graph-contract"
# Version 1 was the untyped "gflv2_deploy.spec" dict of earlier exports. Version 3 = version 2 plus the member
# ``preprocessing.input_format``; a writer emits the lowest version that can express the graph (2 for a float32
# NCHW input, 3 for uint8 pictures), so readers of version 2 keep running every graph they can run and refuse,
# in one line, the uint8-input graphs they would feed wrongly.
CONTRACT_VERSION = 3  # the newest version this reader understands
READABLE_VERSIONS: tuple[int, ...] = (2, 3)
# ``images`` input formats (docs/contract.md "Input formats"): normalised float32 N x 3 x H x W RGB (the host
# normalises), or letterboxed uint8 N x H x W x 3 BGR pictures whose normalisation is the graph's first nodes.
INPUT_FLOAT32 = "float32_nchw_rgb"
INPUT_UINT8 = "uint8_nhwc_bgr"
INPUT_FORMATS: tuple[str, ...] = (INPUT_FLOAT32, INPUT_UINT8)
SCHEMA_PATH = Path(__file__).resolve().parent / "contract.schema.json"
NMS_FORMS: tuple[str, ...] = ("none", "onnx", "trt", "plugin")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
_REEXPORT = "re-export it with `gflv2-deploy export`"

Dim = int | str  # a fixed size, or the name of a dynamic axis ("batch", "height", "width")


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, element type ("float32", "int32"), dims (ints or axis names)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class Preprocessing:
    """How pictures become the ``images`` input (spec §3.1) and how to fit a fixed-size input.

    Resize: s = min(max(test_scale) / max(h, w), min(test_scale) / min(h, w)); with a fixed
    ``input_hw`` = (H, W) also s = min(s, H / h, W / w) (the letterbox rule: the picture always fits);
    new size (int(h * s + 0.5), int(w * s + 0.5)), bilinear on uint8. BGR -> RGB, (x - mean) / std on
    the 0-255 scale, zero padding at the bottom/right to ``input_hw`` or to a multiple of ``pad_divisor``.
    ``input_format``: who normalises. ``INPUT_FLOAT32``: the host does all of the above and feeds
    N x 3 x H x W float32. ``INPUT_UINT8``: the host only resizes and pads (zeros) the BGR uint8 pictures and
    feeds N x H x W x 3 uint8; BGR -> RGB, the normalisation, NHWC -> NCHW and the padding value are the graph's
    first nodes (float32), which read ``img_shape`` to tell picture from padding.
    """

    test_scale: tuple[int, int] = spec.TEST_SCALE
    mean: tuple[float, float, float] = spec.PIXEL_MEAN_RGB
    std: tuple[float, float, float] = spec.PIXEL_STD_RGB
    pad_divisor: int = spec.PAD_DIVISOR
    input_hw: tuple[int, int] | None = None  # fixed (H, W) of a static graph, None when H and W are dynamic
    color: str = "RGB"
    resize: str = "keep_ratio_bilinear"
    pad_value: float = 0.0
    input_format: str = INPUT_FLOAT32

    @property
    def uint8_input(self) -> bool:
        """True when the graph takes letterboxed uint8 BGR pictures N x H x W x 3 and normalises them itself."""
        return self.input_format == INPUT_UINT8

    @property
    def hw_axes(self) -> tuple[int, int]:
        """Axes of height and width in the ``images`` tensor: (2, 3) for NCHW float32, (1, 2) for NHWC uint8."""
        return (1, 2) if self.uint8_input else (2, 3)

    def images_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """The ``images`` shape of a batch of ``n`` pictures padded to ``h`` x ``w``, in this input format."""
        return (n, h, w, 3) if self.uint8_input else (n, 3, h, w)


@dataclass(frozen=True)
class Postprocessing:
    """What the graph's tail does and what the host still has to do (spec §3.2).

    nms: "none" (outputs ``boxes``/``scores``, host NMS), "onnx" / "trt" / "plugin" (end-to-end outputs
    padded to ``max_per_img``). ``nms_pre_in_graph``: the graph already keeps the top ``nms_pre`` points
    per level (padded with score 0 to exactly ``nms_pre`` rows per level), so ``num_points`` =
    ``len(strides) * nms_pre``; otherwise it emits every point and the host applies no pre-selection.
    Boxes are x1 y1 x2 y2 in input pixels, clamped to ``img_shape`` when ``clamped``.
    """

    nms: str = "none"
    nms_pre: int = spec.NMS_PRE
    nms_pre_in_graph: bool = True
    score_thr: float = spec.SCORE_THR
    iou_thr: float = spec.IOU_THR
    max_per_img: int = spec.MAX_PER_IMG
    clamped: bool = True
    pad_box: float = 0.0
    pad_score: float = 0.0
    pad_class: int = -1


@dataclass(frozen=True)
class ModelInfo:
    config_name: str
    class_names: tuple[str, ...]
    strides: tuple[int, ...] = spec.STRIDES
    reg_max: int = spec.REG_MAX
    reg_topk: int = spec.REG_TOPK
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Producer:
    tool_version: str
    exporter: str = "torchscript"
    torch_version: str | None = None
    opset: int = 17


@dataclass(frozen=True)
class Precision:
    """Compute precision the graph carries ("fp32", "fp16" storage, "int8" Q/DQ) and its recipe (free-form)."""

    compute: str = "fp32"
    recipe: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GraphContract:
    model: ModelInfo
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    producer: Producer
    precision: Precision = field(default_factory=Precision)

    # --- derived facts ----------------------------------------------------------------------------
    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def end_to_end(self) -> bool:
        return self.postprocessing.nms != "none"

    @property
    def has_img_shape_input(self) -> bool:
        return spec.INPUT_IMAGE_SHAPE in self.input_names

    @property
    def dynamic_batch(self) -> bool:
        return isinstance(self.tensor(spec.INPUT_IMAGES).shape[0], str)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def tensor(self, name: str) -> TensorInfo:
        for t in (*self.inputs, *self.outputs):
            if t.name == name:
                return t
        raise UserError(f"the graph contract has no tensor '{name}' (it has {', '.join(self.input_names + self.output_names)})")

    # --- updates (return new contracts) ----------------------------------------------------------
    def with_precision(self, compute: str, recipe: Mapping[str, Any] | None) -> "GraphContract":
        if compute not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {compute!r}")
        return dataclasses.replace(self, precision=Precision(compute, dict(recipe) if recipe is not None else None))

    def with_nms(self, form: str, outputs: tuple[TensorInfo, ...], *, score_thr: float, iou_thr: float,
                 max_per_img: int) -> "GraphContract":
        if form not in NMS_FORMS:
            raise ValueError(f"nms must be one of {NMS_FORMS}, got {form!r}")
        post = dataclasses.replace(self.postprocessing, nms=form, score_thr=float(score_thr), iou_thr=float(iou_thr),
                                   max_per_img=int(max_per_img))
        return dataclasses.replace(self, postprocessing=post, outputs=tuple(outputs))

    # --- JSON ------------------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        """The lowest contract version that expresses this graph: 3 for uint8 pictures, else 2."""
        return 3 if self.preprocessing.input_format != INPUT_FLOAT32 else 2

    def to_dict(self) -> dict[str, Any]:
        pre = _plain(dataclasses.asdict(self.preprocessing))
        if self.format_version < 3:
            del pre["input_format"]  # version 2 has no such member; its readers refuse unknown versions only
        return {
            "format": CONTRACT_FORMAT,
            "format_version": self.format_version,
            "producer": dataclasses.asdict(self.producer),
            "model": {**_plain(dataclasses.asdict(self.model)), "num_classes": self.model.num_classes},
            "inputs": [_plain(dataclasses.asdict(t)) for t in self.inputs],
            "outputs": [_plain(dataclasses.asdict(t)) for t in self.outputs],
            "preprocessing": pre,
            "postprocessing": dataclasses.asdict(self.postprocessing),
            "precision": {"compute": self.precision.compute,
                          "recipe": dict(self.precision.recipe) if self.precision.recipe is not None else None},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "contract") -> "GraphContract":
        """Parse a contract object; UserError (one line) for another format, a newer version or bad members."""
        if not isinstance(data, Mapping) or data.get("format") != CONTRACT_FORMAT:
            raise UserError(f"{source}: not a gflv2-deploy graph contract; {_REEXPORT}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            newer = isinstance(version, int) and version > CONTRACT_VERSION
            raise UserError(
                f"{source} has graph contract version {version}, this gflv2-deploy reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}: " + ("upgrade gflv2-deploy" if newer else _REEXPORT))
        try:
            model = data["model"]
            pre = data["preprocessing"]
            post = data["postprocessing"]
            prec = data.get("precision") or {}
            contract = cls(
                model=ModelInfo(config_name=str(model["config_name"]), class_names=tuple(model["class_names"]),
                                strides=tuple(int(s) for s in model["strides"]), reg_max=int(model["reg_max"]),
                                reg_topk=int(model["reg_topk"]), checkpoint=model.get("checkpoint"),
                                checkpoint_sha256=model.get("checkpoint_sha256")),
                inputs=tuple(_tensor(t) for t in data["inputs"]),
                outputs=tuple(_tensor(t) for t in data["outputs"]),
                preprocessing=Preprocessing(
                    test_scale=_pair(pre["test_scale"]), mean=tuple(float(v) for v in pre["mean"]),  # type: ignore[arg-type]
                    std=tuple(float(v) for v in pre["std"]), pad_divisor=int(pre["pad_divisor"]),  # type: ignore[arg-type]
                    input_hw=_pair(pre["input_hw"]) if pre.get("input_hw") is not None else None,
                    color=str(pre["color"]), resize=str(pre["resize"]), pad_value=float(pre["pad_value"]),
                    input_format=str(pre["input_format"]) if version >= 3 else INPUT_FLOAT32),
                postprocessing=Postprocessing(
                    nms=str(post["nms"]), nms_pre=int(post["nms_pre"]), nms_pre_in_graph=bool(post["nms_pre_in_graph"]),
                    score_thr=float(post["score_thr"]), iou_thr=float(post["iou_thr"]),
                    max_per_img=int(post["max_per_img"]), clamped=bool(post["clamped"]),
                    pad_box=float(post["pad_box"]), pad_score=float(post["pad_score"]), pad_class=int(post["pad_class"])),
                producer=Producer(**data["producer"]),
                precision=Precision(compute=str(prec.get("compute", "fp32")), recipe=prec.get("recipe")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: malformed graph contract ({type(exc).__name__}: {exc}); {_REEXPORT}") from None
        if contract.postprocessing.nms not in NMS_FORMS or contract.precision.compute not in PRECISIONS \
                or contract.preprocessing.input_format not in INPUT_FORMATS:
            raise UserError(f"{source}: malformed graph contract (nms {contract.postprocessing.nms!r}, "
                            f"precision {contract.precision.compute!r}, input_format "
                            f"{contract.preprocessing.input_format!r}); {_REEXPORT}")
        images = next((t for t in contract.inputs if t.name == spec.INPUT_IMAGES), None)
        if contract.preprocessing.uint8_input and (images is None or images.dtype != "uint8" or len(images.shape) != 4
                                                   or images.shape[3] != 3):
            raise UserError(f"{source}: malformed graph contract (input_format {INPUT_UINT8} needs an 'images' input "
                            f"of uint8 N x H x W x 3); {_REEXPORT}")
        return contract

    @classmethod
    def from_json(cls, text: str | None, source: str = "contract") -> "GraphContract":
        if text is None:
            raise UserError(f"{source} carries no gflv2-deploy graph contract (metadata '{CONTRACT_METADATA_KEY}'); "
                            f"{_REEXPORT} (a graph from another tool has no contract)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}: graph contract is not valid JSON ({exc}); {_REEXPORT}") from None
        return cls.from_dict(data, source)


@functools.lru_cache(maxsize=1)
def _schema_validator() -> Any:
    """The JSON Schema validator of contracts, or None without the optional ``jsonschema`` package."""
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def check_schema(data: Mapping[str, Any]) -> None:
    """Raise ValueError when ``data`` breaks contract.schema.json (a bug of the writer, not a user mistake).

    Writers (export, the precision converters, engine manifests) call it before writing, so with
    ``jsonschema`` installed (the dev extra, CI) every contract the tests write is checked against the
    schema the C++ runtime and other readers rely on. Without it this is a no-op.
    """
    validator = _schema_validator()
    if validator is not None:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            raise ValueError(f"graph contract breaks its schema at {list(errors[0].path)}: {errors[0].message}")


def _tensor(data: Mapping[str, Any]) -> TensorInfo:
    return TensorInfo(name=str(data["name"]), dtype=str(data["dtype"]),
                      shape=tuple(d if isinstance(d, str) else int(d) for d in data["shape"]))


def _pair(value: Any) -> tuple[int, int]:
    a, b = value
    return int(a), int(b)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (JSON arrays)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

