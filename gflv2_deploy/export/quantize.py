"""INT8 post-training quantisation of the pre-NMS graph to an explicit Q/DQ ONNX.

``quantize_int8`` calibrates with onnxruntime's static quantiser (``onnxruntime.quantization.
quantize_static``, QDQ format) on images that go through THE shared preprocessing
(``data.preprocess.preprocess``) at the graph's input size, exactly as ``Detector`` feeds it. NMS is
attached afterwards on request (deploy_landscape §4).

Recipe (recorded under ``precision`` in the graph contract, which the engine
manifest copies):

- weights: int8, symmetric, per output channel (``per_channel=True``, ``WeightSymmetric``);
- activations, by ``target``:
  ``tensorrt``: int8 symmetric (S8S8, zero point 0: the only form TensorRT's Q/DQ import accepts),
  biases left float (``QuantizeBias=False``: the TensorRT parser rejects int32-bias DequantizeLinear,
  environment.md), Q/DQ on the INPUTS of Conv and of two-activation Add (residual and FPN top-down)
  only, outputs not quantised (``OpTypesToExcludeOutputQuantization``), the placement TensorRT fuses
  (a Q/DQ pair in front of every consumer, the producer's output left to the builder);
  ``onnxruntime``: uint8 asymmetric activations with int8 weights (U8S8, what onnxruntime's x86
  int8 kernels run fast: ~3.5x over fp32 on a ResNet-50 backbone while S8S8 ran slower than fp32,
  environment.md; ~3.2x on the whole gflv2_r50_fpn at 640x640 with one thread,
  scripts/precision_report.py), Conv/Relu/Add/MaxPool/Resize quantised with their outputs so int8
  chains stay int8; weights in 7 bits (``reduce_range``): x86 CPUs without VNNI (AVX2, AVX-512F) run U8S8 with
  VPMADDUBSW, whose int16 sums saturate with 8-bit weights. Measured on the DCN test model
  (tests/integration/test_official_models.py), AMD EPYC with AVX2 only: AP 40.9 with 8-bit weights, 80.6 with
  7-bit ones; 83.3 with 8-bit weights on a VNNI Xeon. A graph is made once and runs on any CPU, so 7 bits always;
- never quantised: deformable convolutions and the convs predicting their offsets (``precision.deform_conv_nodes``),
  the head tail (DFL softmax/integral, DGQP TopK/MLP/Sigmoid, decode, clamp,
  ``precision.find_head_tail``), GroupNorm's affine Add (a constant operand), and ``exclude``;
  Q/DQ pairs that onnxruntime puts on a tensor feeding the float region (the prediction convs'
  outputs) are removed again, so the tail reads float32 values, never dequantised ones;
- calibration ``method``: ``max`` (min/max; the default, as ModelOpt's TensorRT-11 path and
  Ultralytics use; on the trained gflv2_tiny all three were within 0.3 AP of fp32), ``entropy`` (KL
  divergence, TensorRT's legacy default) or ``percentile`` (99.999 by default). Ranges are collected
  by onnxruntime's calibrators one batch at a time, float region skipped (``calibrate``), and can be
  cached in onnxruntime's JSON format so that variants of one graph share one calibration.

Why not NVIDIA ModelOpt (``modelopt.onnx.quantization.quantize``, what Ultralytics uses for
TensorRT 11): on this CPU-only project it pulls onnxruntime-gpu 1.24 and cupy and downgrades onnx to
1.21 (environment.md); onnxruntime and onnxruntime-gpu both provide the module ``onnxruntime``, so
installing it would replace the runtime every other stage is tested with. Its Q/DQ output is the same
kind of file (explicit Q/DQ, int8 symmetric), so the rest of the pipeline would not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import onnx

from gflv2_deploy import spec as io_spec
from gflv2_deploy.contract import GraphContract
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.export.precision import (
    NMS_FORMS,
    STAGE_PREFIX,
    ConversionResult,
    compute_nodes,
    deform_conv_nodes,
    file_sha256,
    find_head_tail,
    find_stages,
    finish_precision_onnx,
    load_source,
    prepare_graph,
    select_nodes,
)
from gflv2_deploy.export.uint8_input import PREFIX as PIXEL_PREFIX
from gflv2_deploy.progress import progress_iter
from gflv2_deploy.onnx_ir import save_onnx

METHODS: tuple[str, ...] = ("entropy", "max", "percentile")
TARGETS: tuple[str, ...] = ("tensorrt", "onnxruntime")
DEFAULT_METHOD = "max"
DEFAULT_CALIB_IMAGES = 256
DEFAULT_PERCENTILE = 99.999
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_OP_TYPES = {"tensorrt": ("Conv", "Add"), "onnxruntime": ("Conv", "Relu", "Add", "MaxPool", "Resize")}
_ACTIVATIONS = {"tensorrt": "int8 symmetric (S8S8)", "onnxruntime": "uint8 asymmetric (U8S8)"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class CalibrationSet:
    """The images a calibration used: ``files`` (sorted), the folder they came from and a content hash.

    ``sha256`` hashes each file's path relative to ``root`` and its bytes, in order: the same images
    give the same hash wherever the folder lives.
    """

    root: Path
    files: tuple[Path, ...]
    sha256: str


def collect_calibration_images(root: str | os.PathLike[str], num_images: int, seed: int = 0) -> CalibrationSet:
    """Up to ``num_images`` image files under ``root`` (recursive), a seeded random choice when there are more.

    A COCO-format folder works too (its images are found under the split folders); point it at the
    train split, not at the images you evaluate on. UserError for a missing folder or no images.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise UserError(f"calibration folder not found: {folder}")
    if num_images < 1:
        raise UserError(f"--calib-images must be at least 1, got {num_images}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    if len(files) > num_images:
        files = sorted(random.Random(seed).sample(files, num_images))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
    return CalibrationSet(root=folder, files=tuple(files), sha256=digest.hexdigest())


def calibration_batches(calib: CalibrationSet, contract: GraphContract, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Input feeds for the graph described by ``contract``: each batch of images preprocessed by the
    shared preprocessing with the contract's settings (a fixed-size graph letterboxes every picture).

    A graph with a fixed batch N gets batches of exactly N (the last one filled with repeats).
    """
    feeder = _Feeder(calib, contract, batch_size)
    return (feeder.feed(chunk) for chunk in feeder.chunks)


class _Feeder:
    """Calibration images grouped into batches (``chunks``) and turned into graph feeds on demand."""

    def __init__(self, calib: CalibrationSet, contract: GraphContract, batch_size: int = 1) -> None:
        image_dims = contract.tensor(io_spec.INPUT_IMAGES).shape
        fixed_batch = image_dims[0] if isinstance(image_dims[0], int) else None
        self.preprocessing = contract.preprocessing
        self.img_shape = contract.has_img_shape_input
        size = fixed_batch or batch_size
        files = list(calib.files)
        self.chunks: list[list[Path]] = []
        for start in range(0, len(files), size):
            chunk = files[start:start + size]
            while len(chunk) < size and fixed_batch:
                chunk.append(files[len(chunk) % len(files)])
            self.chunks.append(chunk)

    def feed(self, chunk: list[Path]) -> dict[str, np.ndarray]:
        from gflv2_deploy.data.image_io import read_image
        from gflv2_deploy.data.preprocess import preprocess_for, stack_img_shapes

        batch, metas = preprocess_for([read_image(p) for p in chunk], self.preprocessing)
        feed = {io_spec.INPUT_IMAGES: batch}
        if self.img_shape:
            feed[io_spec.INPUT_IMAGE_SHAPE] = stack_img_shapes(metas)
        return feed


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantiser logs advice through the root logger ("consider pre-processing"): mute it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _affine_adds(model: onnx.ModelProto) -> list[str]:
    """Add nodes with a constant operand (GroupNorm's beta, biases): not worth an int8 round trip."""
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Add" and any(i in inits for i in n.input)]


def strip_float_region_qdq(model: onnx.ModelProto, float_nodes: set[str]) -> int:
    """Feed ``float_nodes`` the float tensor instead of its Q -> DQ copy; drop pairs left unused.

    Returns how many Q/DQ nodes were removed. Only activation pairs (Q fed by a node or graph input)
    are touched; weight DequantizeLinear nodes stay.
    """
    g = model.graph
    producers = {out: n for n in g.node for out in n.output}
    inits = {t.name for t in g.initializer}
    rewired = 0
    for node in g.node:
        if node.name not in float_nodes:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
                continue
            node.input[index] = q.input[0]
            rewired += 1
    if not rewired:
        return 0
    removed = 0
    while True:
        used = {name for n in g.node for name in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in _QDQ and not any(out in used for out in n.output)]
        if not dead:
            unused = [t for t in g.initializer if t.name not in used]  # the removed pairs' scales and zero points
            for tensor in unused:
                g.initializer.remove(tensor)
            return removed
        dead_names = {n.name for n in dead}
        kept = [n for n in g.node if n.name not in dead_names]
        del g.node[:]
        g.node.extend(kept)
        removed += len(dead)


def float_region_violations(model: onnx.ModelProto, float_nodes: set[str]) -> list[str]:
    """Nodes of ``float_nodes`` that read a dequantised activation (should be none)."""
    producers = {out: n for n in model.graph.node for out in n.output}
    inits = {t.name for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.name in float_nodes:
            for name in node.input:
                dq = producers.get(name)
                if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] not in inits:
                    q = producers.get(dq.input[0])
                    if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                        bad.append(node.name)
    return bad


_ORT_METHODS = {"entropy": lambda m: m.Entropy, "max": lambda m: m.MinMax, "percentile": lambda m: m.Percentile}


def _float_only_tensors(model: onnx.ModelProto, float_nodes: set[str]) -> set[str]:
    """Tensors produced and consumed only inside the float region: they need no calibration range."""
    touched_outside: set[str] = set()
    for node in model.graph.node:
        if node.name not in float_nodes:
            touched_outside.update(node.input)
            touched_outside.update(node.output)
    return {name for node in model.graph.node if node.name in float_nodes
            for name in [*node.input, *node.output] if name not in touched_outside}


def calibrate(model: onnx.ModelProto, cache: Path, feeder: "_Feeder", *, method: str, op_types: Sequence[str],
              skip: set[str], percentile: float, work_dir: Path) -> None:
    """Collect activation ranges with onnxruntime's calibrators, one batch at a time, into ``cache`` (its JSON format).

    Two departures from ``quantize_static``'s own calibration, both measured on gflv2_tiny:
    - tensors in ``skip`` (the float region) are not calibrated: onnxruntime picks tensors by op type
      only, and the tail's constant prior-point tensors make the histogram methods fail (numpy "Too
      many bins for data range");
    - one batch per ``collect_data``: onnxruntime's calibrators hold every intermediate tensor of every
      batch they are handed before reducing them (gigabytes for a few hundred images) and the
      histogram ones stack them with np.asarray, which fails for images of different sizes.
    """
    from onnxruntime.quantization import CalibrationDataReader, save_tensors_data
    from onnxruntime.quantization.calibrate import EntropyCalibrater, MinMaxCalibrater, PercentileCalibrater

    bases: dict[str, tuple[type, dict[str, Any]]] = {  # the settings create_calibrator uses by default
        "max": (MinMaxCalibrater, {"symmetric": False}),
        "entropy": (EntropyCalibrater, {"symmetric": False, "num_bins": 128, "num_quantized_bins": 128}),
        "percentile": (PercentileCalibrater, {"symmetric": True, "num_bins": 2048, "percentile": float(percentile)}),
    }
    base, kwargs = bases[method]

    class _Calibrater(base):  # type: ignore[misc, valid-type]
        def select_tensors_to_calibrate(self, graph_model: onnx.ModelProto) -> tuple[set[str], dict[str, Any]]:
            tensors, value_infos = super().select_tensors_to_calibrate(graph_model)
            return {t for t in tensors if t not in skip}, value_infos

    class _OneBatch(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, feed: dict[str, np.ndarray]) -> None:
            self._feed: dict[str, np.ndarray] | None = feed

        def get_next(self) -> dict[str, np.ndarray] | None:
            feed, self._feed = self._feed, None
            return feed

    model_path = work_dir / "calibration_model.onnx"
    save_onnx(model, model_path)
    calibrator = _Calibrater(model_path, list(op_types), str(work_dir / "augmented.onnx"), **kwargs)
    calibrator.augment_graph()
    calibrator.create_inference_session()
    for chunk in progress_iter(feeder.chunks, len(feeder.chunks), "calibrate"):
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print a line per call
            calibrator.collect_data(_OneBatch(feeder.feed(chunk)))
    with contextlib.redirect_stdout(io.StringIO()):
        ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise UserError(f"unknown {what} '{value}': choose one of {', '.join(choices)}")


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    calib_data: str | os.PathLike[str],
    calib_images: int = DEFAULT_CALIB_IMAGES,
    method: str = DEFAULT_METHOD,
    target: str = "tensorrt",
    exclude: Sequence[str] = (),
    keep_head_tail_float: bool = True,
    keep_deform_conv_float: bool = True,
    only: Sequence[str] | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    nms: str = "none",
    calibration_cache: str | os.PathLike[str] | None = None,
    per_channel: bool = True,
    seed: int = 0,
) -> ConversionResult:
    """Write an INT8 Q/DQ version of a pre-NMS fp32 ONNX (``gflv2-deploy export --nms none``).

    calib_data: folder of calibration images (searched recursively); calib_images: how many to use
      (a seeded random choice of that many when the folder holds more). method: entropy | max |
      percentile. target: tensorrt (S8S8) | onnxruntime (U8S8), see the module docstring.
    exclude: nodes kept in float: names, globs or ``stage:NAME`` (``precision.select_nodes``).
    keep_head_tail_float: never quantise the head tail (default; off only to measure what it buys).
    keep_deform_conv_float: never quantise the offset convs of deformable convolutions (default; likewise).
      DeformConv itself always stays float: neither onnxruntime nor TensorRT has an int8 DeformConv.
    only: quantise only these nodes (same pattern forms; used by the sensitivity search).
    nms: "none" | "onnx" | "trt": NMS attached after quantising (it stays float).
    calibration_cache: JSON file of tensor ranges (onnxruntime's format); read when it exists,
      written otherwise, so several quantisations of one graph share one calibration run.
    per_channel: per-output-channel weight scales (default). False gives one scale per weight
      tensor, which onnxruntime's CPU int8 convolutions run a little faster (R-50 at 640x640, one
      thread, loaded machine: 3.18x over fp32 instead of 3.12x; 3.65x vs 3.18x in a quieter run)
      at some accuracy risk; TensorRT wants per-channel.
    Images are read with ``read_image`` and preprocessed by ``data.preprocess.preprocess`` as the
    Detector does (test scale from the graph's metadata, static size when the graph has one).
    """
    started = time.perf_counter()
    _check_choice(method, METHODS, "calibration method")
    _check_choice(target, TARGETS, "target")
    _check_choice(nms, NMS_FORMS, "NMS form")
    if not 0.0 < percentile <= 100.0:
        raise UserError(f"percentile must be in (0, 100], got {percentile}")
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "INT8 quantisation") from None
    import onnxruntime

    source, contract = load_source(onnx_path)
    model = prepare_graph(source)
    tail = find_head_tail(model)
    patterns = [*exclude, *(only or ())]
    stages = find_stages(model, tail) if any(p.startswith(STAGE_PREFIX) for p in patterns) else None
    excluded = select_nodes(model, exclude, stages)
    float_nodes = set(excluded) | (set(tail.nodes) if keep_head_tail_float else set())
    deform = deform_conv_nodes(model)
    float_nodes |= deform if keep_deform_conv_float else {n.name for n in model.graph.node if n.op_type == "DeformConv"}
    excluded_or_tail = set(float_nodes)
    # the normalisation of a uint8-input graph (export/uint8_input.py) is exact integer/float work: never quantised
    float_nodes |= {n.name for n in model.graph.node if n.name.startswith(PIXEL_PREFIX)}
    placement = [n for n in _affine_adds(model) if n not in float_nodes]
    selected = [n for n in select_nodes(model, only, stages) if n not in float_nodes] if only is not None else None
    if selected == []:
        raise UserError(f"quantising only {', '.join(only or ())} leaves nothing to quantise: those nodes are all kept in "
                        "float (by --exclude, or as the head tail)")
    calib = collect_calibration_images(calib_data, calib_images, seed)

    symmetric = target == "tensorrt"
    # QDQKeepRemovableActivations: with asymmetric (uint8) activations onnxruntime deletes a quantised Relu and
    # lets the Q's zero point clamp instead; a float reader that strip_float_region_qdq then rewires to the
    # tensor before that Q would lose the Relu (measured: "only layer2" fell from 40.9 to 23.4 AP). onnxruntime's
    # own graph optimiser still folds such a Relu into the Q at load time (ReluQuantFusion).
    extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QDQKeepRemovableActivations": True}
    if target == "tensorrt":
        extra.update(QuantizeBias=False, OpTypesToExcludeOutputQuantization=list(_OP_TYPES["tensorrt"]))
    with tempfile.TemporaryDirectory(prefix="gflv2_quant_") as tmp, _quiet_root_logger():
        cache = Path(calibration_cache) if calibration_cache is not None else Path(tmp) / "calib_ranges.json"
        if not cache.is_file():
            calibrate(model, cache, _Feeder(calib, contract), method=method, op_types=_OP_TYPES[target],
                      skip=_float_only_tensors(model, float_nodes), percentile=percentile, work_dir=Path(tmp))
        out_tmp = Path(tmp) / "quantized.onnx"
        quantize_static(
            model, out_tmp, None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(_OP_TYPES[target]),
            per_channel=per_channel, reduce_range=(target == "onnxruntime"),  # 7-bit weights: see the module docstring
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=selected, nodes_to_exclude=sorted(float_nodes | set(placement)),
            calibrate_method=_ORT_METHODS[method](CalibrationMethod), extra_options=extra,
            calibration_cache_path=str(cache),
        )
        quantized = onnx.load(str(out_tmp))
    # nodes that must read float: the tail, exclusions and, with ``only``, every node not chosen (a tensor
    # quantised for a chosen node is otherwise shared with its other readers)
    if selected is not None:
        float_nodes |= {n.name for n in quantized.graph.node if n.op_type not in _QDQ} - set(selected)
    removed = strip_float_region_qdq(quantized, float_nodes)
    violations = float_region_violations(quantized, float_nodes)
    if violations:  # a bug of this module, not a user mistake
        raise RuntimeError(f"float-region nodes read quantised activations: {', '.join(violations[:5])}")
    num_qdq = sum(n.op_type in _QDQ for n in quantized.graph.node)
    if num_qdq == 0:
        raise UserError("nothing was quantised: the exclusions cover every quantisable node")
    precision: dict[str, Any] = {
        "mode": "int8",
        "format": "QDQ",
        "tool": f"onnxruntime.quantization {onnxruntime.__version__} (quantize_static)",
        "target": target,
        "activations": _ACTIVATIONS[target],
        "weights": "int8 symmetric per-channel" if per_channel else "int8 symmetric per-tensor",
        "quantize_bias": target != "tensorrt",
        "op_types": list(_OP_TYPES[target]),
        "method": method,
        "percentile": float(percentile) if method == "percentile" else None,
        "calib_images": len(calib.files),
        "calib_sha256": calib.sha256,
        "calib_source": str(calib.root),
        "calib_preprocessing": "data.preprocess.preprocess (test scale from the graph's metadata)",
        "head_tail_float": keep_head_tail_float,
        **({"deform_conv_offsets_float": keep_deform_conv_float} if deform else {}),
        "excluded_patterns": list(exclude),
        "only_patterns": list(only) if only is not None else None,
        "excluded_nodes": compute_nodes(model, excluded_or_tail),
        "placement_excluded_nodes": placement,
        "qdq_removed_before_float_region": removed,
        "num_qdq_nodes": num_qdq,
        "source_onnx": os.path.basename(os.fspath(onnx_path)),
        "source_onnx_sha256": file_sha256(onnx_path),
    }
    written = finish_precision_onnx(quantized, out_path, contract=contract, precision=precision, nms=nms)
    return ConversionResult(path=Path(out_path), contract=written, precision=precision, seconds=time.perf_counter() - started)
