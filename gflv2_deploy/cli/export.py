"""``gflv2-deploy export``: checkpoint -> one ONNX file with decode, DGQP and (optionally) NMS in the graph.

The command checks the output location, parses options and calls ``export.onnx.export_onnx``; torch and
onnx are imported inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import ConfigOpt, UnsafeOpt, parse_hw, say
from gflv2_deploy.errors import UserError

_SUFFIX = {"none": ".prenms.onnx", "onnx": ".e2e.onnx", "trt": ".e2e-trt.onnx", "plugin": ".e2e-plugin.onnx"}


def default_onnx_path(checkpoint: Path, nms: str) -> Path:
    """Beside the checkpoint: ``run/model.pth`` -> ``run/model.prenms.onnx`` / ``.e2e.onnx`` / ``.e2e-trt.onnx``."""
    return checkpoint.with_name(checkpoint.stem + _SUFFIX[nms])


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.pth): ours, or an official GFocalV2 one with --config.")],
    onnx: Annotated[Optional[Path], typer.Option("--onnx", "-o", help="Output ONNX file (default: beside the checkpoint, "
                                                 "<name>.prenms.onnx / .e2e.onnx / .e2e-trt.onnx).")] = None,
    config: ConfigOpt = None,
    nms: Annotated[str, typer.Option(help="NMS in the graph: none (boxes/scores), onnx (NonMaxSuppression, runs in "
                                     "onnxruntime), trt (EfficientNMS_TRT plugin, TensorRT only), plugin (our GFLV2NMS_TRT: "
                                     "TensorRT plugin + onnxruntime custom op, see plugins/README.md).")] = "none",
    dynamic_hw: Annotated[bool, typer.Option("--dynamic-hw", help="Symbolic input height and width (default: fixed --shape).")] = False,
    static_batch: Annotated[Optional[int], typer.Option("--static-batch", help="Fix the batch size to N (default: symbolic batch).")] = None,
    shape: Annotated[Optional[str], typer.Option(help="Input HxW, multiples of 32 up to 8192: the fixed size, or the traced "
                                                 "size with --dynamic-hw (default: the configuration's test scale).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default 17, the widest TensorRT support; 19 for models with "
                                                 "deformable convolutions, the first with DeformConv; the dynamo exporter needs >= 18).")] = None,
    exporter: Annotated[str, typer.Option(help="torch exporter: torchscript (default) or dynamo.")] = "torchscript",
    score_thr: Annotated[Optional[float], typer.Option(help="NMS score threshold (default: the configuration's, 0.05).")] = None,
    iou_thr: Annotated[Optional[float], typer.Option(help="NMS IoU threshold (default: the configuration's, 0.6).")] = None,
    max_dets: Annotated[Optional[int], typer.Option(help="Detections per image (default: the configuration's, 100).")] = None,
    nms_pre: Annotated[Optional[int], typer.Option(help="Points kept per level inside the graph, as the reference "
                                                   "post-processing does (default: the configuration's, 1000; 0 = every point).")] = None,
    no_clamp: Annotated[bool, typer.Option("--no-clamp", help="No img_shape input and no clamping of boxes to the unpadded image.")] = False,
    simplify: Annotated[bool, typer.Option("--simplify", help="Simplify the pre-NMS graph with onnxslim (if installed).")] = False,
    input_dtype: Annotated[str, typer.Option("--input", help="What the graph takes: float32 (N x 3 x H x W, normalised by "
                                             "the host) or uint8 (N x H x W x 3 BGR letterboxed pictures, normalised "
                                             "by the graph's first nodes: a quarter of the bytes per picture).")] = "float32",
    allow_unsafe_pickle: UnsafeOpt = False,
) -> None:
    """Export a checkpoint to ONNX: decode, DGQP and optionally NMS in the graph, I/O contract in the metadata."""
    from gflv2_deploy.export.onnx import NMS_FORMS, export_onnx

    if nms not in NMS_FORMS:
        raise UserError(f"--nms must be one of {', '.join(NMS_FORMS)}, got '{nms}'")
    if static_batch is not None and static_batch < 1:
        raise UserError(f"--static-batch must be at least 1, got {static_batch}")
    input_hw = parse_hw(shape) if shape else None
    out = check_writable(onnx if onnx is not None else default_onnx_path(checkpoint, nms))
    result = export_onnx(
        checkpoint, out, config=config, nms=nms, dynamic_batch=static_batch is None, batch_size=static_batch or 1,  # type: ignore[arg-type]
        dynamic_hw=dynamic_hw, input_hw=input_hw, clamp=not no_clamp, score_thr=score_thr,
        iou_thr=iou_thr, max_dets=max_dets, nms_pre=nms_pre, opset=opset, exporter=exporter, simplify=simplify,  # type: ignore[arg-type]
        allow_unsafe_pickle=allow_unsafe_pickle, input_dtype=input_dtype, progress=True,
    )
    inputs = ", ".join(f"{i.name}{list(i.shape)}" for i in result.contract.inputs)
    outputs = ", ".join(f"{o.name}{list(o.shape)}" for o in result.contract.outputs)
    say(f"wrote {result.path} ({result.exporter} exporter, opset {result.opset}, nms {result.nms}, {result.seconds:.1f} s)")
    say(f"  inputs:  {inputs}")
    say(f"  outputs: {outputs}")
    for note in result.notes:
        say(f"  note: {note}")


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""
    app.command("export")(export_command)
