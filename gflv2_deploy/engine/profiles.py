"""Optimisation profiles of an engine build: the ``--shapes`` text, and the profiles a user need not type.

``parse_shapes`` turns ``images:1x3x320x416/2x3x320x416/4x3x320x416`` into (min, opt, max) tuples;
``complete_shapes`` checks them against the ONNX inputs (unknown names, the input size rule of
``spec.input_hw_problem`` for gflv2-deploy graphs) and fills in what follows from them: ``img_shape``
follows the batch of ``images``, and a graph with a fixed input size and a dynamic batch gets batch
1 / 1 / ``DEFAULT_MAX_BATCH``. Never imports torch.
"""

from __future__ import annotations

from typing import Any

from gflv2_deploy import spec as io_spec
from gflv2_deploy.engine.onnx_info import OnnxSummary
from gflv2_deploy.errors import UserError

__all__ = ["DEFAULT_MAX_BATCH", "Profile", "complete_shapes", "parse_shapes"]

DEFAULT_MAX_BATCH = 8  # default profile of a dynamic batch with a fixed input size: 1 / 1 / 8
Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def parse_shapes(texts: list[str]) -> dict[str, Profile]:
    """``["images:1x3x320x416/2x3x320x416/4x3x320x416"]`` -> {"images": (min, opt, max)}; one shape = all three."""
    shapes = {}
    for text in texts:
        name, sep, dims = text.partition(":")
        parts = dims.split("/") if sep else []
        if not name or len(parts) not in (1, 3):
            raise UserError(f"--shapes must look like images:1x3x320x416/2x3x320x416/4x3x320x416 (min/opt/max), got '{text}'")
        try:
            parsed = [tuple(int(d) for d in p.lower().split("x")) for p in parts]
        except ValueError:
            raise UserError(f"--shapes '{text}': dimensions must be integers joined by 'x'") from None
        if len(parsed) == 1:
            parsed = parsed * 3
        shapes[name] = (parsed[0], parsed[1], parsed[2])
    return shapes


def complete_shapes(summary: OnnxSummary, shapes: dict[str, Profile]) -> dict[str, Profile]:
    """Check ``shapes`` against the inputs of ``summary`` and fill in the profiles the user need not type.

    UserError for an input name the graph does not have (naming the real ones), for an ``images`` profile of a
    gflv2-deploy graph whose height/width break ``spec.input_hw_problem``, and for a dynamic input size with no
    ``images`` profile (with an example built from the graph's own traced size).
    """
    shapes = dict(shapes)
    inputs = {t.name: t.shape for t in summary.inputs}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise UserError(f"--shapes names input(s) {', '.join(repr(n) for n in unknown)}, which {summary.path.name} does not "
                        f"have; its inputs are {', '.join(repr(n) for n in inputs)}")
    pre = summary.contract.preprocessing if summary.contract is not None else None
    h_axis, w_axis = pre.hw_axes if pre is not None else (2, 3)  # N x H x W x 3 for a uint8-input graph
    if pre is not None and io_spec.INPUT_IMAGES in shapes:
        for label, shape in zip(("min", "opt", "max"), shapes[io_spec.INPUT_IMAGES]):
            problem = io_spec.input_hw_problem(shape[h_axis], shape[w_axis]) if len(shape) == 4 else None
            if problem:
                raise UserError(f"--shapes {io_spec.INPUT_IMAGES} {label} {'x'.join(map(str, shape))}: {problem} "
                                "(the same rule as export --shape and bench --shape)")
    images = inputs.get(io_spec.INPUT_IMAGES)
    if images is not None and io_spec.INPUT_IMAGES not in shapes:
        if isinstance(images[0], str) and all(isinstance(d, int) for d in images[1:]):
            rest = tuple(int(d) for d in images[1:])
            shapes[io_spec.INPUT_IMAGES] = ((1, *rest), (1, *rest), (DEFAULT_MAX_BATCH, *rest))
        elif isinstance(images[h_axis], str) or isinstance(images[w_axis], str):
            scale = pre.test_scale if pre is not None else (1333, 800)
            h, w = (-(-v // 32) * 32 for v in (min(scale), max(scale)))  # the test scale's short x long edge
            example = ["x".join(map(str, pre.images_shape(n, h, w) if pre is not None else (n, 3, h, w)))
                       for n in (1, 1, 4)]
            raise UserError(f"{summary.path.name} has a dynamic input size: give --shapes, e.g. "
                            f"images:{'/'.join(example)}")
    img_shape = inputs.get(io_spec.INPUT_IMAGE_SHAPE)
    if img_shape is not None and io_spec.INPUT_IMAGE_SHAPE not in shapes and isinstance(img_shape[0], str) \
            and io_spec.INPUT_IMAGES in shapes:
        lo, opt, hi = shapes[io_spec.INPUT_IMAGES]
        shapes[io_spec.INPUT_IMAGE_SHAPE] = ((lo[0], 2), (opt[0], 2), (hi[0], 2))
    return shapes
