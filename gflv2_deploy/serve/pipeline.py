"""The per-request work of the python-backend models of a Triton repository, in plain numpy.

The model.py files that ``gflv2-deploy triton`` writes are thin: they unpack Triton requests, call
these functions and pack responses. Everything here runs in the server's python (numpy < 2, no torch)
and is unit-tested without a server:

- ``preprocess_pictures``: encoded JPEG/PNG bytes -> the network input, through the one shared
  preprocessing (``data.preprocess``) and the contract's resize/letterbox rule;
- ``run_network``: a batch through onnxruntime (the ``python`` platform variant);
- ``batch_detections`` / ``picture_detections``: network outputs -> detections in picture pixels,
  padding dropped, host NMS when the graph is pre-NMS.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.contract import GraphContract, Postprocessing, Preprocessing
from gflv2_deploy.data.image_io import decode_image
from gflv2_deploy.data.preprocess import preprocess_for, stack_img_shapes
from gflv2_deploy.errors import UserError
from gflv2_deploy.runtime.host_nms import pre_nms_detections

# A request whose header declares more pixels is refused before decoding (64 Mpx: 8192 x 8192).
MAX_PICTURE_PIXELS = 8192 * 8192
# Names of the ensemble's own tensors (the network's come from the contract).
PICTURE_INPUT = "image"  # one encoded picture per request: TYPE_STRING, dims [1]
SCALE_FACTOR = "scale_factor"  # [sx, sy, sx, sy] float32, resized size / picture size
# per picture: count, K x 4 float32 boxes (picture pixels), K float32 scores, K int32 classes
DETECTION_OUTPUTS: tuple[str, ...] = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def preprocess_pictures(pictures: Sequence[bytes], pre: Preprocessing,
                        max_pixels: int = MAX_PICTURE_PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded pictures -> (images, img_shape N x 2 float32, scale_factor N x 4 float32); images is N x 3 x H x W
    float32, or N x H x W x 3 uint8 BGR pictures when the contract's ``input_format`` says the graph normalises.

    Decoding as ``read_image`` (BGR; grayscale and alpha converted) behind the header-size guard, then the
    shared preprocessing of the N pictures together with the contract's settings, exactly as
    ``Detector.detect`` calls it: keep-ratio resize to ``pre.test_scale`` (letterboxed into ``pre.input_hw``
    for fixed-size graphs), normalisation, padding to ``pre.input_hw`` or to the largest picture rounded up
    to ``pre.pad_divisor``. Raises UserError for an empty list or bytes that are
    not a usable picture.
    """
    if len(pictures) == 0:
        raise UserError("the request holds no picture (empty batch)")
    decoded = [decode_image(bytes(data), f"picture {i} of the request", max_pixels=max_pixels)
               for i, data in enumerate(pictures)]
    batch, metas = preprocess_for(decoded, pre)
    return (batch, stack_img_shapes(metas),
            np.stack([np.asarray(m.scale_factor, np.float32) for m in metas]).astype(np.float32))


def batch_detections(outputs: Mapping[str, np.ndarray], scale_factor: np.ndarray, img_shape: np.ndarray,
                     post: Postprocessing) -> dict[str, np.ndarray]:
    """Network outputs of N pictures -> the ensemble's detection tensors (``DETECTION_OUTPUTS``).

    ``num_detections`` N x 1 int32; ``detection_boxes`` N x K x 4 float32 (picture pixels), ``detection_scores``
    N x K float32, ``detection_classes`` N x K int32 with K the largest count of the N pictures (rows beyond a
    picture's count hold the contract's pad values; for N = 1 there are none).
    """
    per_picture = [picture_detections({k: v[i] for k, v in outputs.items()}, scale_factor[i], img_shape[i], post)
                   for i in range(len(scale_factor))]
    k = max((len(scores) for _, scores, _ in per_picture), default=0)
    n = len(per_picture)
    boxes = np.full((n, k, 4), post.pad_box, np.float32)
    scores = np.full((n, k), post.pad_score, np.float32)
    classes = np.full((n, k), post.pad_class, np.int32)
    for i, (b, s, c) in enumerate(per_picture):
        boxes[i, :len(s)], scores[i, :len(s)], classes[i, :len(s)] = b, s, c
    counts = np.array([[len(s)] for _, s, _ in per_picture], np.int32).reshape(n, 1)
    return dict(zip(DETECTION_OUTPUTS, (counts, boxes, scores, classes)))


def picture_detections(outputs: Mapping[str, np.ndarray], scale_factor: np.ndarray, img_shape: np.ndarray,
                       post: Postprocessing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One picture's network outputs (no batch axis) -> (boxes K x 4 float32 in picture pixels, scores K, classes K int32).

    End-to-end outputs are cut to ``num_dets`` (the padding slots dropped); pre-NMS outputs go through the
    Detector's numpy host NMS (``runtime.host_nms``, spec §3.2) with the contract's thresholds, after
    clamping to ``img_shape``. Boxes are then
    divided by the per-axis scale factors (no clamp to the picture, as ``Detector``).
    """
    if spec.OUT_NUM_DETS in outputs:
        k = int(np.asarray(outputs[spec.OUT_NUM_DETS]).reshape(-1)[0])
        boxes = np.asarray(outputs[spec.OUT_DET_BOXES], np.float32)[:k]
        scores = np.asarray(outputs[spec.OUT_DET_SCORES], np.float32)[:k]
        classes = np.asarray(outputs[spec.OUT_DET_CLASSES]).astype(np.int32)[:k]
    else:
        dets = pre_nms_detections(np.asarray(outputs[spec.OUT_BOXES], np.float32)[None],
                                  np.asarray(outputs[spec.OUT_SCORES], np.float32)[None],
                                  np.asarray(img_shape, np.float32).reshape(1, 2),
                                  post.score_thr, post.iou_thr, post.max_per_img)[0]
        boxes, scores, classes = dets.boxes, dets.scores, dets.labels.astype(np.int32)
    return (boxes / np.asarray(scale_factor, np.float32)).astype(np.float32), scores.astype(np.float32), classes


class OnnxNetwork:
    """The network of the ``python`` platform variant: an onnxruntime session over the exported ONNX.

    ``run(feeds)``: named inputs with the batch axis -> named outputs (contract order).
    """

    def __init__(self, onnx_path: str, contract: GraphContract, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 4  # fatal only: errors reach the caller as exceptions, not as logger lines too
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.contract = contract

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = list(self.contract.output_names)
        return dict(zip(names, self.session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})))


def check_network_feeds(feeds: Mapping[str, np.ndarray], contract: GraphContract) -> None:
    """UserError unless one request's inputs fit the served graph: ``images`` of the contract's dtype and layout,
    H and W multiples of the pad divisor no larger than the contract allows (the fixed ``input_hw``, else the
    test scale's long edge padded: what the preprocessing can produce), ``img_shape`` inside H x W.

    Triton checks dims and dtypes it knows; with a dynamic serving size only this stops a 33 x 47 input (which
    would silently give no detection) or an 8192 x 8192 one (805 MB of float32) from running.
    """
    pre = contract.preprocessing
    images = np.asarray(feeds[spec.INPUT_IMAGES])
    want = np.uint8 if pre.uint8_input else np.float32
    h_axis, w_axis = pre.hw_axes
    if images.ndim != 4 or images.dtype != want or images.shape[3 if pre.uint8_input else 1] != 3:
        layout = "N x H x W x 3 uint8" if pre.uint8_input else "N x 3 x H x W float32"
        raise UserError(f"'images' must be {layout}, got {images.dtype} {list(images.shape)}")
    h, w = int(images.shape[h_axis]), int(images.shape[w_axis])
    limit = pre.input_hw or (-(-max(pre.test_scale) // pre.pad_divisor) * pre.pad_divisor,) * 2
    if h % pre.pad_divisor or w % pre.pad_divisor or h < pre.pad_divisor or w < pre.pad_divisor \
            or h > limit[0] or w > limit[1]:
        raise UserError(f"'images' of {h} x {w}: height and width must be multiples of {pre.pad_divisor} up to "
                        f"{limit[0]} x {limit[1]} (send pictures to the ensemble, which resizes them)")
    if spec.INPUT_IMAGE_SHAPE in feeds:
        shapes = np.asarray(feeds[spec.INPUT_IMAGE_SHAPE], np.float64).reshape(-1, 2)
        if len(shapes) != images.shape[0] or not np.all((shapes > 0) & (shapes <= [h, w])):
            raise UserError(f"'img_shape' must hold {images.shape[0]} (height, width) pairs within 1..{h} x 1..{w}")


def stack_requests(arrays: list[np.ndarray], name: str) -> np.ndarray:
    """Concatenate per-request arrays (each with its own leading batch axis) into one batch.

    Triton's dynamic batcher only groups requests whose shapes agree; a mismatch here is a server bug.
    """
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) != 1:
        raise UserError(f"requests batched together have different '{name}' shapes: {sorted(shapes)}")
    return np.concatenate(arrays, axis=0)


def json_parameter(model_config: Mapping[str, Any], key: str) -> str:
    """A string parameter of a Triton model config (as given to ``initialize`` in ``args['model_config']``)."""
    try:
        return str(model_config["parameters"][key]["string_value"])
    except (KeyError, TypeError):
        raise UserError(f"model config has no parameter '{key}': regenerate the repository with gflv2-deploy triton") from None
