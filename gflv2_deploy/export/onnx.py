"""ONNX export: GFLV2 with decode and DGQP in the graph, optionally NMS, one self-describing file.

Pipeline (``export_onnx``):
1. model from a checkpoint (+ configuration) or a module; a mismatch is a UserError before any output;
2. trace ``model.deploy.DeployModel`` (decode, DGQP, prior points from Shape/Range ops, clamp to the
   ``img_shape`` input) with torch's exporter -> the pre-NMS graph (``boxes``, ``scores``);
3. ``Constant`` nodes -> initializers; checks: ``onnx.checker`` (full), shape inference, constant
   sorted TopK, no control flow, fp32 only, no batch folding (export/checks.py);
4. optional simplification (onnxslim, when installed) of the pre-NMS graph, checked again;
5. with ``input_dtype="uint8"``, the uint8 picture input and its normalisation nodes (export/uint8_input.py);
6. NMS tail for ``nms="onnx"`` / ``"trt"`` (export/nms.py), output dims named or fixed, the graph
   contract (gflv2_deploy/contract.py, docs/contract.md) into ``metadata_props``, final checker + shape
   inference, then one atomic write of a single file.

Exporter and opset (measured with torch 2.13 on the 2-core CI machine, gflv2_tiny at 160 x 224):
the default is the TorchScript exporter (``dynamo=False``) at opset 17.
- Opset 17 is the newest opset every TensorRT 8.6-11.x parser and TensorRT-RTX accept without
  caveats, and the project's suggested default (deploy_landscape "Concrete defaults"). Both exporters
  lower GroupNorm to InstanceNormalization + Reshape at opsets 17/18 (measured), which TensorRT
  parses natively; opset-18 GroupNormalization has the per-group scale that opset 21 fixed.
- The dynamo exporter cannot emit opset 17 (it stays at >= 18), took ~30 s for the tiny model versus
  ~1 s for the TorchScript exporter, and names dynamic output axes with sympy expressions. It stays
  available as ``exporter="dynamo"`` (opset >= 18) for when the TorchScript exporter is removed.
- The deprecation warning of the TorchScript exporter is silenced here; the choice is deliberate.
- Models with deformable convolutions (the official DCN configurations) are exported at opset 19, the first
  opset with ``DeformConv`` (export/deform_conv.py); every other model keeps the opset-17 default. They need
  the TorchScript exporter (the dynamo exporter would decompose the op into gathers).
Both exporters produced the same op set for the head (Softmax, TopK(K=4, sorted), ReduceSum integral,
Range-built priors, Min/Max clamp).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Literal

import torch

from gflv2_deploy import __version__, spec
from gflv2_deploy.atomic import atomic_path
from gflv2_deploy.config import ModelConfig
from gflv2_deploy.errors import MissingDependencyError, UserError
from gflv2_deploy.contract import INPUT_FLOAT32, INPUT_UINT8, GraphContract, ModelInfo, Postprocessing, Preprocessing, Producer
from gflv2_deploy.contract_io import read_onnx_contract, tensor_infos, write_contract
from gflv2_deploy.export.deform_conv import MIN_OPSET as DEFORM_CONV_MIN_OPSET
from gflv2_deploy.model.deploy import PAD_BOX, PAD_CLASS, PAD_SCORE, DeployModel
from gflv2_deploy.model.detector import GFLV2
from gflv2_deploy.onnx_ir import onnx_bytes
from gflv2_deploy.progress import progress_step

__all__ = ["ExportResult", "export_onnx", "read_onnx_contract", "default_input_hw", "DEFAULT_OPSET", "DEFORM_CONV_OPSET",
           "NMS_FORMS", "MAX_INPUT_SIDE", "INPUT_DTYPES", "resolve_opset"]

NmsForm = Literal["none", "onnx", "trt", "plugin"]
NMS_FORMS: tuple[str, ...] = ("none", "onnx", "trt", "plugin")
Exporter = Literal["torchscript", "dynamo"]
DEFAULT_OPSET = 17
# DeformConv exists from opset 19 (export/deform_conv.py); models without it keep DEFAULT_OPSET
DEFORM_CONV_OPSET = DEFORM_CONV_MIN_OPSET
_OPSETS = {"torchscript": (13, 20), "dynamo": (18, 23)}
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf limit of a single-file ONNX
INPUT_DTYPES = {"float32": INPUT_FLOAT32, "uint8": INPUT_UINT8}  # export --input -> contract input_format
MAX_INPUT_SIDE = 8192  # the largest input side export, build and bench accept (also the dynamo exporter's bound)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote: the file, its I/O contract and notes on skipped optional steps."""

    path: Path
    contract: GraphContract
    simplified: bool
    notes: tuple[str, ...]
    seconds: float

    # facts of the graph live in its contract; these read them
    input_names = property(lambda self: self.contract.input_names)
    output_names = property(lambda self: self.contract.output_names)
    opset = property(lambda self: self.contract.producer.opset)
    exporter = property(lambda self: self.contract.producer.exporter)
    nms = property(lambda self: self.contract.postprocessing.nms)


def default_input_hw(cfg: ModelConfig) -> tuple[int, int]:
    """Trace (and static) input size: the test scale's short x long edge, rounded up to the pad divisor."""
    short, long = min(cfg.test.scale), max(cfg.test.scale)
    up = lambda v: -(-int(v) // spec.PAD_DIVISOR) * spec.PAD_DIVISOR  # noqa: E731
    return up(short), up(long)


def _load_model(model_or_checkpoint: GFLV2 | str | os.PathLike[str], config: str | ModelConfig | None,
                allow_unsafe_pickle: bool) -> tuple[GFLV2, ModelConfig, str | None, str | None]:
    """(model in eval mode, config, checkpoint file name, checkpoint sha256); UserError on any mismatch."""
    from gflv2_deploy.hashing import file_sha256
    from gflv2_deploy.model.build import resolve_config
    from gflv2_deploy.model.load import load_torch_model

    if isinstance(model_or_checkpoint, torch.nn.Module):
        cfg = getattr(model_or_checkpoint, "config", None)
        if config is not None:
            cfg = resolve_config(config, model_or_checkpoint.num_classes)
        if not isinstance(cfg, ModelConfig):
            raise UserError("the model carries no configuration: build it with build_model() or pass config=")
        return model_or_checkpoint.eval(), cfg, None, None
    path = Path(model_or_checkpoint)
    model = load_torch_model(path, config, allow_unsafe_pickle=allow_unsafe_pickle)  # strict: UserError on mismatch
    return model, model.config, path.name, file_sha256(path)  # type: ignore[return-value]


def resolve_opset(model: torch.nn.Module, opset: int | None, exporter: str) -> int:
    """The opset to export ``model`` at: ``opset`` if given, else 17, or 19 when the model has deformable convolutions.

    Raises UserError when a model with deformable convolutions is asked for an opset below 19 or the dynamo exporter.
    """
    from gflv2_deploy.model.deform_conv import has_deform_conv

    if not has_deform_conv(model):
        return DEFAULT_OPSET if opset is None else int(opset)
    if exporter != "torchscript":
        raise UserError("this model has deformable convolutions, which export as ONNX DeformConv nodes with the "
                        "torchscript exporter only: use --exporter torchscript")
    if opset is not None and opset < DEFORM_CONV_OPSET:
        raise UserError(f"this model has deformable convolutions: ONNX DeformConv needs opset {DEFORM_CONV_OPSET} or newer, "
                        f"got {opset} (leave the opset out to get {DEFORM_CONV_OPSET})")
    return DEFORM_CONV_OPSET if opset is None else int(opset)


def _check_args(nms: str, exporter: str, opset: int, input_hw: tuple[int, int], score_thr: float, iou_thr: float,
                max_dets: int, batch_size: int, nms_pre: int, input_dtype: str, clamp: bool) -> None:
    if input_dtype not in INPUT_DTYPES:
        raise UserError(f"unknown input dtype '{input_dtype}': choose one of {', '.join(INPUT_DTYPES)}")
    if input_dtype == "uint8" and not clamp:
        raise UserError("--input uint8 needs the img_shape input (the graph tells picture from padding with it): "
                        "drop --no-clamp")
    if nms not in NMS_FORMS:
        raise UserError(f"unknown NMS form '{nms}': choose one of {', '.join(NMS_FORMS)}")
    if exporter not in _OPSETS:
        raise UserError(f"unknown exporter '{exporter}': choose torchscript or dynamo")
    low, high = _OPSETS[exporter]
    if not low <= opset <= high:
        raise UserError(f"opset {opset} is not available with the {exporter} exporter (use {low}..{high}; default {DEFAULT_OPSET})")
    h, w = input_hw
    if h <= 0 or w <= 0 or h % spec.PAD_DIVISOR or w % spec.PAD_DIVISOR:
        raise UserError(f"input size {h}x{w}: height and width must be positive multiples of {spec.PAD_DIVISOR}")
    if max(h, w) > MAX_INPUT_SIDE:
        raise UserError(f"input size {h}x{w}: each side must be at most {MAX_INPUT_SIDE}")
    if not 0 <= nms_pre <= spec.MAX_TOPK:
        raise UserError(f"nms_pre must be in 0..{spec.MAX_TOPK} (0 = keep every point; TensorRT's TopK takes "
                        f"K <= {spec.MAX_TOPK}), got {nms_pre}")
    if not 0.0 <= score_thr < 1.0:
        raise UserError(f"score threshold must be in [0, 1), got {score_thr}")
    if not 0.0 < iou_thr <= 1.0:
        raise UserError(f"IoU threshold must be in (0, 1], got {iou_thr}")
    if not 1 <= max_dets <= spec.MAX_TOPK:
        raise UserError(f"max detections (--max-dets) must be in 1..{spec.MAX_TOPK} (TensorRT's TopK and NMS take "
                        f"K <= {spec.MAX_TOPK}), got {max_dets}")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")


def _trace(deploy: DeployModel, *, exporter: str, opset: int, input_hw: tuple[int, int], clamp: bool,
           dynamic_batch: bool, dynamic_hw: bool, batch_size: int) -> Any:
    """Export ``deploy`` to an in-memory ModelProto with outputs ``boxes``, ``scores``."""
    import onnx

    h, w = input_hw
    n = 2 if dynamic_batch else batch_size  # trace with batch 2: nothing may specialise on a batch of 1
    images = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(0))
    img_shape = torch.tensor([[h, w]], dtype=torch.float32).repeat(n, 1)
    args = (images, img_shape) if clamp else (images,)
    input_names = [spec.INPUT_IMAGES, spec.INPUT_IMAGE_SHAPE] if clamp else [spec.INPUT_IMAGES]
    output_names = list(spec.PRE_NMS_OUTPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings: see module docstring
        if exporter == "torchscript":
            axes: dict[str, dict[int, str]] = {name: {} for name in input_names + output_names}
            if dynamic_batch:
                for name in axes:
                    axes[name][0] = "batch"
            if dynamic_hw:
                axes[spec.INPUT_IMAGES].update({2: "height", 3: "width"})
                if not deploy.nms_pre:
                    for name in output_names:
                        axes[name][1] = "num_points"
            buffer = io.BytesIO()
            torch.onnx.export(deploy, args, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                              output_names=output_names, dynamic_axes={k: v for k, v in axes.items() if v},
                              do_constant_folding=True)
            return onnx.load_from_string(buffer.getvalue())
        from torch.export import Dim

        batch = Dim("batch", min=1, max=1024) if dynamic_batch else None
        image_axes: dict[int, Any] = {}
        if batch is not None:
            image_axes[0] = batch
        if dynamic_hw:
            image_axes.update({2: Dim("height", min=32, max=8192), 3: Dim("width", min=32, max=8192)})
        shapes: dict[str, Any] = {"images": image_axes or None}
        if clamp:
            shapes["img_shape"] = {0: batch} if batch is not None else None
        with _without_torchvision_notice():
            program = torch.onnx.export(deploy, args, dynamo=True, opset_version=opset, input_names=input_names,
                                        output_names=output_names, dynamic_shapes=shapes, external_data=False,
                                        optimize=True, verbose=False)
        return program.model_proto


# The dynamo exporter's op registry logs "torchvision is not installed. Skipping torchvision::nms" (and the other
# torchvision ops) at WARNING: noise here, as GFLV2 uses no torchvision op. Only those records are dropped.
_TORCH_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


class _TorchvisionNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("torchvision is not installed")


@contextlib.contextmanager
def _without_torchvision_notice() -> Iterator[None]:
    """The dynamo export without the registry's torchvision notices (every other log record passes)."""
    logger = logging.getLogger(_TORCH_REGISTRY_LOGGER)
    notice_filter = _TorchvisionNoticeFilter()
    logger.addFilter(notice_filter)
    try:
        yield
    finally:
        logger.removeFilter(notice_filter)


def _run_checks(model: Any, *, input_hw: tuple[int, int], clamp: bool, dynamic_batch: bool, where: str) -> Any:
    """Checker, shape inference and the spec §7 structural checks; returns the shape-inferred model.

    ``input_hw`` is the size the batch-folding probe runs at (small for dynamic-size graphs).
    """
    import onnx

    from gflv2_deploy.export.checks import batch_folding_nodes, control_flow_nodes, precision_problems, topk_problems

    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    problems = topk_problems(inferred) + control_flow_nodes(inferred) + precision_problems(inferred)
    if dynamic_batch:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise MissingDependencyError("onnxruntime", "onnx", "checking the exported graph") from None
        import numpy as np

        rng = np.random.default_rng(0)
        h, w = input_hw
        feeds = []
        for n in (2, 3):
            feed = {spec.INPUT_IMAGES: rng.standard_normal((n, 3, h, w)).astype(np.float32)}
            if clamp:
                feed[spec.INPUT_IMAGE_SHAPE] = np.tile(np.array([[h, w]], np.float32), (n, 1))
            feeds.append(feed)
        problems += [f"{node} folds the batch axis" for node in batch_folding_nodes(model, feeds)]
    if problems:  # a bug of this exporter, not a user mistake
        raise RuntimeError(f"exported graph ({where}) failed structural checks: " + "; ".join(problems))
    return inferred


def _simplify(model: Any) -> tuple[Any, str | None]:
    """onnxslim when installed; returns (model, note when skipped)."""
    try:
        import onnxslim
    except ImportError:
        return model, "simplification skipped: onnxslim is not installed (pip install onnxslim)"
    return onnxslim.slim(model), None


def export_onnx(
    model_or_checkpoint: GFLV2 | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    config: str | ModelConfig | None = None,
    nms: NmsForm = "none",
    nms_pre: int | None = None,
    dynamic_batch: bool = True,
    dynamic_hw: bool = False,
    input_hw: tuple[int, int] | None = None,
    batch_size: int = 1,
    clamp: bool = True,
    score_thr: float | None = None,
    iou_thr: float | None = None,
    max_dets: int | None = None,
    opset: int | None = None,
    exporter: Exporter = "torchscript",
    simplify: bool = False,
    allow_unsafe_pickle: bool = False,
    input_dtype: str = "float32",
    progress: bool = False,
) -> ExportResult:
    """Export a GFLV2 model to one ONNX file (no ``.onnx.data`` side file) with its I/O contract in metadata.

    model_or_checkpoint: a GFLV2 module (built by ``build_model``, so it carries ``.config``) or a
        checkpoint path (ours, or an official one together with ``config``).
    nms: "none" -> outputs boxes N x A x 4 (float32, x1 y1 x2 y2, input pixels) and scores N x A x C;
        "onnx" -> NonMaxSuppression + padded top-K; "trt" -> EfficientNMS_TRT (TensorRT only); "plugin" -> our
        GFLV2NMS_TRT (TensorRT plugin, onnxruntime custom op; plugins/README.md); all
        give num_dets N x 1 int32, det_boxes N x K x 4, det_scores N x K, det_classes N x K int32.
    nms_pre: points kept per level inside the graph (default: the configuration's ``test.nms_pre``,
        1000); 0 emits every point (A = ``spec.num_points(H, W)``) and host NMS then sees them all.
    dynamic_batch / dynamic_hw: symbolic batch axis / symbolic height and width (then A is symbolic).
    input_hw: (H, W), multiples of 32: the traced size, and the fixed size when not ``dynamic_hw``
        (default: the configuration's test scale, short x long edge rounded up to 32).
    batch_size: the fixed batch when not ``dynamic_batch``.
    clamp: add the ``img_shape`` input (N x 2 float32, height and width of the unpadded images) and
        clamp boxes to it.
    score_thr / iou_thr / max_dets: NMS settings (default: the configuration's test settings), in the
        graph for nms "onnx"/"trt", recorded in the metadata for host NMS otherwise.
    opset: default 17, or 19 for models with deformable convolutions (ONNX DeformConv, ``resolve_opset``).
    input_dtype: "float32" -> ``images`` N x 3 x H x W float32, normalised by the host; "uint8" -> ``images``
        N x H x W x 3 uint8 BGR letterboxed pictures, normalised by the graph's first nodes
        (export/uint8_input.py; contract ``input_format`` "uint8_nhwc_bgr", version 3); needs ``clamp``.
    A module passed in is switched to eval mode. Raises UserError for unusable input (checkpoint/config
    mismatch, bad sizes, unknown NMS form or opset), leaving no output file. ``progress``: one line per step
    (trace, checks, NMS, write) on stderr.
    """
    started = time.perf_counter()
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", "ONNX export") from None
    out = Path(out_path)
    if out.is_dir():
        raise UserError(f"output path {out} is a folder; give a file name such as {out / 'model.onnx'}")
    model, cfg, ckpt_name, ckpt_sha = _load_model(model_or_checkpoint, config, allow_unsafe_pickle)
    hw = tuple(int(v) for v in (input_hw or default_input_hw(cfg)))
    score_thr = cfg.test.score_thr if score_thr is None else float(score_thr)
    iou_thr = cfg.test.iou_thr if iou_thr is None else float(iou_thr)
    max_dets = cfg.test.max_per_img if max_dets is None else int(max_dets)
    nms_pre = cfg.test.nms_pre if nms_pre is None else int(nms_pre)
    if exporter not in _OPSETS:
        raise UserError(f"unknown exporter '{exporter}': choose torchscript or dynamo")
    opset = resolve_opset(model, opset, exporter)
    _check_args(nms, exporter, opset, hw, score_thr, iou_thr, max_dets, batch_size, nms_pre,  # type: ignore[arg-type]
                input_dtype, clamp)
    notes: list[str] = []

    from gflv2_deploy.export.deform_conv import deform_convs_as_onnx_ops

    deploy = DeployModel(model, clamp=clamp, nms_pre=nms_pre, pad_levels=dynamic_hw).eval()
    progress_step("export", f"tracing {cfg.name} at {hw[0]}x{hw[1]} ({exporter} exporter, opset {opset})", progress)
    with deform_convs_as_onnx_ops(deploy):  # a no-op without deformable convolutions
        graph = _trace(deploy, exporter=exporter, opset=opset, input_hw=hw, clamp=clamp,  # type: ignore[arg-type]
                       dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw, batch_size=batch_size)
    from gflv2_deploy.export.checks import check_final_graph, constants_to_initializers

    constants_to_initializers(graph)
    probe_hw = (64, 64) if dynamic_hw else hw  # the batch-folding probe runs the graph twice: keep it cheap
    progress_step("export", "checking the graph (checker, shape inference, structure, batch independence)", progress)
    _run_checks(graph, input_hw=probe_hw, clamp=clamp, dynamic_batch=dynamic_batch, where="pre-NMS")
    simplified = False
    if simplify:
        progress_step("export", "simplifying with onnxslim", progress)
        graph, note = _simplify(graph)
        if note:
            notes.append(note)
        else:
            simplified = True
            constants_to_initializers(graph)
            _run_checks(graph, input_hw=probe_hw, clamp=clamp, dynamic_batch=dynamic_batch, where="simplified pre-NMS")

    preprocessing = Preprocessing(test_scale=tuple(cfg.test.scale), input_hw=None if dynamic_hw else hw,  # type: ignore[arg-type]
                                  input_format=INPUT_DTYPES[input_dtype])
    if preprocessing.uint8_input:
        from gflv2_deploy.export.uint8_input import prepend_uint8_input

        prepend_uint8_input(graph, preprocessing)
    from gflv2_deploy.export.nms import attach_efficient_nms, attach_onnx_nms, attach_plugin_nms

    if nms != "none":
        progress_step("export", f"attaching NMS ({nms})", progress)
    if nms == "onnx":
        attach_onnx_nms(graph, score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets)
    elif nms == "trt":
        attach_efficient_nms(graph, score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets)
        notes.append("EfficientNMS_TRT is a TensorRT plugin: this graph cannot run in onnxruntime")
    elif nms == "plugin":  # our GFLV2NMS_TRT: onnxruntime with the custom-op library, TensorRT with the plugin
        attach_plugin_nms(graph, score_thr=score_thr, iou_thr=iou_thr, max_dets=max_dets, nms_pre=nms_pre,
                          num_levels=len(spec.STRIDES) if nms_pre else 0)

    graph.graph.name = f"gflv2_deploy_{cfg.name}"
    graph.producer_name, graph.producer_version = "gflv2-deploy", __version__
    graph_opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    num_points = len(spec.STRIDES) * nms_pre if nms_pre else (None if dynamic_hw else spec.num_points(*hw))
    name_output_dims(graph, num_classes=cfg.head.num_classes, num_points=num_points, max_dets=max_dets)
    contract = _make_contract(graph, cfg=cfg, nms=nms, nms_pre=nms_pre, exporter=exporter, opset=graph_opset,
                              clamp=clamp, preprocessing=preprocessing, score_thr=score_thr, iou_thr=iou_thr,
                              max_dets=max_dets, ckpt_name=ckpt_name, ckpt_sha=ckpt_sha)
    write_contract(graph, contract)  # exporter-internal metadata keys go; ours is the one contract
    progress_step("export", "final checks and writing", progress)
    check_final_graph(graph)
    data = onnx_bytes(graph)  # at the lowest IR version opset 17 needs (8), not the installed onnx's newest
    if len(data) > _MAX_PROTO_BYTES:
        raise UserError(f"the model is {len(data) / 2**30:.1f} GiB, over the 2 GiB limit of a single-file ONNX")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return ExportResult(path=out, contract=contract, simplified=simplified, notes=tuple(notes),
                        seconds=time.perf_counter() - started)


def name_output_dims(graph: Any, *, num_classes: int, num_points: int | None, max_dets: int) -> None:
    """Replace exporter-generated output dim names (``Minboxes_dim_1``) with fixed sizes or our axis names.

    Batch stays as traced (``batch`` or a number); the point axis is ``num_points`` when it depends on a
    dynamic input size, else fixed; the class axis and the end-to-end K are always fixed.
    """
    fixed: dict[str, dict[int, int | str | None]] = {
        spec.OUT_BOXES: {1: num_points or "num_points", 2: 4},
        spec.OUT_SCORES: {1: num_points or "num_points", 2: num_classes},
        spec.OUT_NUM_DETS: {1: 1},
        spec.OUT_DET_BOXES: {1: max_dets, 2: 4},
        spec.OUT_DET_SCORES: {1: max_dets},
        spec.OUT_DET_CLASSES: {1: max_dets},
    }
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        for axis, value in fixed.get(output.name, {}).items():
            if axis < len(dims):
                if isinstance(value, int):
                    dims[axis].ClearField("dim_param")
                    dims[axis].dim_value = value
                else:
                    dims[axis].ClearField("dim_value")
                    dims[axis].dim_param = value
        if dims and dims[0].dim_param and dims[0].dim_param != "batch":
            dims[0].dim_param = "batch"


def _make_contract(graph: Any, *, cfg: ModelConfig, nms: str, nms_pre: int, exporter: str, opset: int, clamp: bool,
                   preprocessing: Preprocessing, score_thr: float, iou_thr: float, max_dets: int,
                   ckpt_name: str | None, ckpt_sha: str | None) -> GraphContract:
    """The graph contract of a freshly exported graph (docs/contract.md)."""
    return GraphContract(
        model=ModelInfo(config_name=cfg.name, class_names=tuple(cfg.class_names), strides=tuple(spec.STRIDES),
                        reg_max=cfg.head.reg_max, reg_topk=cfg.head.reg_topk, checkpoint=ckpt_name,
                        checkpoint_sha256=ckpt_sha),
        inputs=tensor_infos(graph.graph.input),
        outputs=tensor_infos(graph.graph.output),
        preprocessing=preprocessing,
        postprocessing=Postprocessing(nms=nms, nms_pre=nms_pre, nms_pre_in_graph=nms_pre > 0, score_thr=score_thr,
                                      iou_thr=iou_thr, max_per_img=max_dets, clamped=clamp, pad_box=PAD_BOX,
                                      pad_score=PAD_SCORE, pad_class=PAD_CLASS),
        producer=Producer(tool_version=__version__, exporter=exporter, torch_version=torch.__version__, opset=opset),
    )
