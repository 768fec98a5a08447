"""``export --input uint8``: the graph takes letterboxed uint8 pictures and normalises them as its first nodes.

Why NHWC BGR uint8: it is how every decoder hands a picture over (OpenCV, nvJPEG's interleaved output,
PIL arrays), so the host (a client, the Triton preprocessing model, the C++ runtime) only resizes and pads
rows of bytes, with no per-pixel channel split; the transposition to NCHW costs one copy on the device,
inside the graph. The tensor that crosses processes (Triton's shared memory, gRPC) is a quarter of the
float32 one: 3.2 MB instead of 12.9 MB per 800 x 1344 picture.

The nodes, in float32 (docs/contract.md "Input formats"), give exactly the tensor the host preprocessing
(``data.preprocess.preprocess``) feeds a float32-input graph, bit for bit:

    images (N x H x W x 3 uint8 BGR) -Cast int32-> -Transpose-> N x 3 x H x W -Gather(channels 2,1,0)-> RGB
      -+ channel offset (0, 256, 512)-> index into a 768-entry float32 table
      -Gather-> float32((v - mean_c) / std_c), rounded once from float64 as the host's lookup tables are
      -Where(inside img_shape)-> the value, else ``pad_value`` (0.0: the mean colour, as the host pads)

A table instead of ``(x - mean) / std`` arithmetic: a uint8 has 256 values, so the lookup is exact and
costs one gather; float32 subtract-and-divide would differ from the host's correctly rounded values in the
last bit. The padding mask needs ``img_shape`` (graphs exported with ``--no-clamp`` cannot take uint8).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.contract import Preprocessing
from gflv2_deploy.errors import UserError

PREFIX = "pixels/"  # names of the added nodes and tensors
NORMALISED = "images_normalised"  # what the rest of the graph reads instead of ``images``


def normalisation_table(pre: Preprocessing) -> np.ndarray:
    """768 float32 values: entry c * 256 + v = float32((v - mean[c]) / std[c]) for RGB channel c, from float64."""
    values = np.arange(256, dtype=np.float64)
    return np.concatenate([((values - m) / s).astype(np.float32) for m, s in zip(pre.mean, pre.std)])


def prepend_uint8_input(model: Any, pre: Preprocessing) -> None:
    """Rewrite ``model`` in place: its ``images`` input becomes N x H x W x 3 uint8 BGR, normalised by new first nodes.

    The old float32 N x 3 x H x W input keeps its consumers under the name ``NORMALISED``; the batch, height and
    width dims keep their values or names. UserError when the graph has no ``img_shape`` input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    if spec.INPUT_IMAGE_SHAPE not in inputs:
        raise UserError("--input uint8 needs the img_shape input (the graph's first nodes tell picture from padding "
                        "with it): export without --no-clamp")
    images = inputs[spec.INPUT_IMAGES]
    dims = images.type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"images input has dims {[d.dim_value or d.dim_param for d in dims]}, expected N x 3 x H x W")
    for node in graph.node:  # the rest of the graph reads the normalised tensor
        node.input[:] = [NORMALISED if name == spec.INPUT_IMAGES else name for name in node.input]

    def dim(d: Any) -> int | str:
        return d.dim_param if d.dim_param else int(d.dim_value)

    new_input = helper.make_tensor_value_info(spec.INPUT_IMAGES, TensorProto.UINT8,
                                              [dim(dims[0]), dim(dims[2]), dim(dims[3]), 3])
    images.CopyFrom(new_input)
    p = PREFIX
    graph.initializer.extend([
        numpy_helper.from_array(np.array([2, 1, 0], np.int64), p + "bgr_to_rgb"),
        numpy_helper.from_array(np.array([0, 256, 512], np.int32).reshape(1, 3, 1, 1), p + "channel_offset"),
        numpy_helper.from_array(normalisation_table(pre), p + "table"),
        numpy_helper.from_array(np.array(pre.pad_value, np.float32), p + "pad_value"),
        numpy_helper.from_array(np.array(1, np.int64), p + "h_axis"),
        numpy_helper.from_array(np.array(2, np.int64), p + "w_axis"),
        numpy_helper.from_array(np.array(0.0, np.float32), p + "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), p + "one"),
        numpy_helper.from_array(np.array([1, 1, -1, 1], np.int64), p + "rows_shape"),
        numpy_helper.from_array(np.array([1, 1, 1, -1], np.int64), p + "cols_shape"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), p + "per_image"),
        numpy_helper.from_array(np.array([0], np.int64), p + "start_h"),
        numpy_helper.from_array(np.array([1], np.int64), p + "start_w"),
        numpy_helper.from_array(np.array([2], np.int64), p + "stop_w"),
        numpy_helper.from_array(np.array([1], np.int64), p + "axis_1"),
    ])

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> Any:
        return helper.make_node(op, inputs, [p + output], name=p + output, **attrs)

    nodes = [
        # values: NHWC BGR uint8 -> NCHW RGB float32 through the table
        # TensorRT takes a uint8 tensor into a Cast only, so the Cast comes first
        node("Cast", [spec.INPUT_IMAGES], "index", to=TensorProto.INT32),
        node("Transpose", [p + "index"], "nchw_bgr", perm=[0, 3, 1, 2]),
        node("Gather", [p + "nchw_bgr", p + "bgr_to_rgb"], "nchw_rgb", axis=1),
        node("Add", [p + "nchw_rgb", p + "channel_offset"], "table_index"),
        node("Gather", [p + "table", p + "table_index"], "values", axis=0),
        # mask: row < img_shape[:, 0] and column < img_shape[:, 1], per image
        node("Shape", [spec.INPUT_IMAGES], "shape"),
        node("Gather", [p + "shape", p + "h_axis"], "h", axis=0),
        node("Gather", [p + "shape", p + "w_axis"], "w", axis=0),
        node("Cast", [p + "h"], "h_float", to=TensorProto.FLOAT),
        node("Cast", [p + "w"], "w_float", to=TensorProto.FLOAT),
        node("Range", [p + "zero", p + "h_float", p + "one"], "rows"),
        node("Range", [p + "zero", p + "w_float", p + "one"], "cols"),
        node("Reshape", [p + "rows", p + "rows_shape"], "rows_4d"),
        node("Reshape", [p + "cols", p + "cols_shape"], "cols_4d"),
        node("Slice", [spec.INPUT_IMAGE_SHAPE, p + "start_h", p + "start_w", p + "axis_1"], "img_h"),
        node("Slice", [spec.INPUT_IMAGE_SHAPE, p + "start_w", p + "stop_w", p + "axis_1"], "img_w"),
        node("Reshape", [p + "img_h", p + "per_image"], "img_h_4d"),
        node("Reshape", [p + "img_w", p + "per_image"], "img_w_4d"),
        node("Less", [p + "rows_4d", p + "img_h_4d"], "inside_h"),
        node("Less", [p + "cols_4d", p + "img_w_4d"], "inside_w"),
        node("And", [p + "inside_h", p + "inside_w"], "inside"),
    ]
    nodes.append(helper.make_node("Where", [p + "inside", p + "values", p + "pad_value"], [NORMALISED],
                                  name=p + "normalised"))
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    onnx.checker.check_model(model)
