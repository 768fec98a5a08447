"""The I/O contract shared by every stage: constants of the GFLV2 design, tensor names, detections.

Nothing here imports torch, onnx or cv2, so every layer (runners included) can depend on it.
Facts come from the reference specification (shared/docs/gflv2_reference.md, section numbers below).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- architecture constants (spec §1.3-§1.7) -------------------------------------------------
STRIDES: tuple[int, ...] = (8, 16, 32, 64, 128)  # P3..P7
REG_MAX: int = 16  # distances are expectations over bins 0..16 (stride units)
NUM_BINS: int = REG_MAX + 1  # 17 bins per side
NUM_SIDES: int = 4  # channel layout: side * 17 + bin, sides ordered left, top, right, bottom
REG_TOPK: int = 4  # DGQP: top-4 sorted probabilities per side ...
DGQP_ADD_MEAN: bool = True  # ... plus their mean -> 4 * (4 + 1) = 20 input channels
PRIOR_OFFSET: float = 0.0  # location (i, j) has centre (j * s, i * s): no half-stride offset

# --- preprocessing (spec §3.1) ----------------------------------------------------------------
TEST_SCALE: tuple[int, int] = (1333, 800)  # (long edge bound, short edge bound), keep ratio
PIXEL_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
PIXEL_STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)
PAD_DIVISOR: int = 32  # pad bottom/right after normalisation, value 0

# --- post-processing defaults (spec §3.2) -------------------------------------------------------
NMS_PRE: int = 1000
SCORE_THR: float = 0.05
IOU_THR: float = 0.6
MAX_PER_IMG: int = 100

# --- tensor names of exported graphs and runners ---------------------------------------------------
INPUT_IMAGES = "images"  # N x 3 x H x W float32, normalised RGB (see PIXEL_MEAN_RGB / PIXEL_STD_RGB)
INPUT_IMAGE_SHAPE = "img_shape"  # N x 2 float32 (height, width) of the resized, unpadded image
OUT_BOXES = "boxes"  # N x A x 4 float32, x1 y1 x2 y2 in input pixels
OUT_SCORES = "scores"  # N x A x C float32, joint class x quality scores in [0, 1]
OUT_NUM_DETS = "num_dets"  # N x 1 int32
OUT_DET_BOXES = "det_boxes"  # N x K x 4 float32
OUT_DET_SCORES = "det_scores"  # N x K float32
OUT_DET_CLASSES = "det_classes"  # N x K int32
PRE_NMS_OUTPUTS: tuple[str, ...] = (OUT_BOXES, OUT_SCORES)
END_TO_END_OUTPUTS: tuple[str, ...] = (OUT_NUM_DETS, OUT_DET_BOXES, OUT_DET_SCORES, OUT_DET_CLASSES)


def num_points(height: int, width: int) -> int:
    """Number of prior points A for a padded input of ``height`` x ``width`` (spec §1.1).

    P3..P5 are exact divisions (inputs are multiples of 32); P6 and P7 come from 3x3 stride-2
    pad-1 convolutions, whose output size is ceil(n / 2).
    """
    sizes = []
    h, w = height // 8, width // 8
    for level in range(len(STRIDES)):
        if level > 0:
            h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append(h * w)
    return sum(sizes)


@dataclass
class Detections:
    """Detections of one image, in one coordinate frame (stated by whoever returns them).

    boxes: K x 4 float32 (x1, y1, x2, y2) in pixels; scores: K float32; labels: K int64,
    contiguous class indices 0..C-1. Sorted by descending score.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_dict(self) -> dict[str, list]:
        return {
            "boxes": self.boxes.astype(float).tolist(),
            "scores": self.scores.astype(float).tolist(),
            "labels": self.labels.astype(int).tolist(),
        }


# COCO: 80 class names in contiguous order, and their official (non-contiguous) category ids.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO_CATEGORY_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)  # fmt: skip


# Input size rule shared by export --shape, build --shapes and bench --shape: preprocessing pads to a multiple of
# SIZE_DIVISOR (the stride of P5, whose map must tile the input exactly), and a side above MAX_INPUT_SIDE asks for
# more memory than any accelerator has (R-50 at 8192x8192 already needs ~40 GiB of fp32 activations per image).
SIZE_DIVISOR = 32
MAX_INPUT_SIDE = 8192


# TensorRT's TopK (and so every in-graph selection: nms_pre per level, the K detections of the NMS forms) takes
# K <= 3840; a larger K is accepted by the exporter and onnxruntime but fails only when the engine is built.
MAX_TOPK = 3840


def input_hw_problem(height: int, width: int) -> str | None:
    """Why ``height x width`` (pixels) is not a valid network input size, or None when it is."""
    if height <= 0 or width <= 0 or height % SIZE_DIVISOR or width % SIZE_DIVISOR:
        return f"height and width must be positive multiples of {SIZE_DIVISOR}, got {height}x{width}"
    if max(height, width) > MAX_INPUT_SIDE:
        return f"height and width must be at most {MAX_INPUT_SIDE} pixels, got {height}x{width}"
    return None


def scale_problem(long_edge: int, short_edge: int) -> str | None:
    """Why a test scale (long, short edge bounds in pixels) is not usable, or None: pictures resized within it are
    padded up to multiples of ``SIZE_DIVISOR``, and that padded size must pass ``input_hw_problem``."""
    if long_edge <= 0 or short_edge <= 0:
        return f"both edges must be positive, got {long_edge}x{short_edge}"
    padded = [-(-v // SIZE_DIVISOR) * SIZE_DIVISOR for v in (long_edge, short_edge)]
    if max(padded) > MAX_INPUT_SIDE:
        return f"edges must be at most {MAX_INPUT_SIDE} pixels (the network input size rule), got {long_edge}x{short_edge}"
    return None


def fixed_input_honours_scale(input_hw: tuple[int, int], scale: tuple[int, int]) -> bool:
    """True when a graph of fixed input ``input_hw`` (H, W) can take pictures resized to ``scale`` (long, short):
    the scale's long edge fits the longer side and its short edge the shorter one. Otherwise every picture is
    letterboxed smaller than the scale asks."""
    return max(scale) <= max(input_hw) and min(scale) <= min(input_hw)

