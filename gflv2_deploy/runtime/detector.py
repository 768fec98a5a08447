"""High-level detector: BGR images in, detections in original-image pixels out, for any runner.

The path of data: ``data.preprocess.preprocess`` (the one shared preprocessing) -> runner ->
post-processing chosen by what the runner returns:
- torch runner: the reference post-processing on raw head outputs (spec §3.2, per-level top-k);
- pre-NMS outputs (``boxes``/``scores``): multi-label class-aware NMS on the decoded boxes;
- end-to-end outputs (``num_dets`` ...): already final, only cut to ``num_dets``;
then boxes are divided by each image's scale factors.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from gflv2_deploy import spec
from gflv2_deploy.config import TestConfig
from gflv2_deploy.data.preprocess import ImageMeta, detections_to_original, preprocess
from gflv2_deploy.model.nms import multiclass_nms
from gflv2_deploy.model.postprocess import postprocess
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.torch_runner import TorchRunner


class Detector:
    def __init__(self, runner: Runner, test_cfg: TestConfig, class_names: Sequence[str],
                 pad_to: tuple[int, int] | None = None) -> None:
        self.runner = runner
        self.test_cfg = test_cfg
        self.class_names = tuple(class_names)
        self.pad_to = pad_to  # fixed input size for static-shape models

    def __enter__(self) -> "Detector":
        self.runner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.__exit__(*exc)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[ImageMeta]]:
        return preprocess(images, scale=self.test_cfg.scale, pad_to=self.pad_to)

    def detect(self, images: Sequence[np.ndarray]) -> list[spec.Detections]:
        """images: BGR uint8 H x W x 3 arrays -> one Detections per image, original-image pixels."""
        if hasattr(self.runner, "detect_pictures"):  # a runner with its own pre/post-processing (the C++ runtime)
            return self.runner.detect_pictures(images, self.test_cfg, self.pad_to)
        batch, metas = self.preprocess(images)
        return self.detect_preprocessed(batch, metas)

    def detect_preprocessed(self, batch: np.ndarray, metas: list[ImageMeta]) -> list[spec.Detections]:
        img_shape = np.asarray([m.img_shape for m in metas], dtype=np.float32)
        if isinstance(self.runner, TorchRunner):
            cls_scores, bbox_preds = self.runner.head_outputs(batch)
            return postprocess(cls_scores, bbox_preds, [m.img_shape for m in metas], [m.scale_factor for m in metas],
                               self.test_cfg, reg_max=self.runner.model.reg_max)
        outputs = self.runner.infer(batch, img_shape)
        if spec.OUT_NUM_DETS in outputs:
            dets = end_to_end_detections(outputs)
        else:
            dets = pre_nms_detections(outputs[spec.OUT_BOXES], outputs[spec.OUT_SCORES], img_shape, self.test_cfg)
        return [detections_to_original(d, m) for d, m in zip(dets, metas)]


def pre_nms_detections(boxes: np.ndarray, scores: np.ndarray, img_shape: np.ndarray, cfg: TestConfig) -> list[spec.Detections]:
    """NMS on decoded pre-NMS outputs (N x A x 4 input pixels, N x A x C) -> detections in input pixels."""
    out = []
    for i in range(boxes.shape[0]):
        b = torch.from_numpy(boxes[i]).float()
        h, w = float(img_shape[i][0]), float(img_shape[i][1])
        b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], dim=1)
        db, ds, dl = multiclass_nms(b, torch.from_numpy(scores[i]).float(), cfg.score_thr, cfg.iou_thr, cfg.max_per_img)
        out.append(spec.Detections(db.numpy(), ds.numpy(), dl.numpy().astype(np.int64)))
    return out


def end_to_end_detections(outputs: dict[str, np.ndarray]) -> list[spec.Detections]:
    """Padded end-to-end outputs -> detections in input pixels (cut to num_dets per image)."""
    nums = outputs[spec.OUT_NUM_DETS].reshape(-1)
    return [
        spec.Detections(
            boxes=outputs[spec.OUT_DET_BOXES][i, :k].astype(np.float32),
            scores=outputs[spec.OUT_DET_SCORES][i, :k].astype(np.float32),
            labels=outputs[spec.OUT_DET_CLASSES][i, :k].astype(np.int64),
        )
        for i, k in enumerate(int(n) for n in nums)
    ]
