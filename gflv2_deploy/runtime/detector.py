"""High-level detector: BGR images in, detections in original-image pixels out, for any runner.

The path of data: the one shared preprocessing (``data.preprocess``, with the graph contract's settings,
letterboxing pictures into a fixed-size input) -> runner -> post-processing chosen by what the runner
returns:
- a runner with ``reference_detections`` (the torch runner): the reference post-processing on raw head
  outputs (spec §3.2, per-level top-k);
- pre-NMS outputs (``boxes``/``scores``): multi-label class-aware NMS in numpy (``host_nms``); the per-level
  ``nms_pre`` pre-selection already happened in the graph when its contract says ``nms_pre_in_graph``;
- end-to-end outputs (``num_dets`` ...): already final, only cut to ``num_dets``;
then boxes are divided by each image's scale factors.

Nothing here imports torch: deployment installs run ONNX files and engines without it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from gflv2_deploy import spec
from gflv2_deploy.config import TestConfig
from gflv2_deploy.contract import GraphContract, Preprocessing
from gflv2_deploy.data.preprocess import ImageMeta, detections_to_original, preprocess_for, stack_img_shapes
from gflv2_deploy.runtime.base import Runner
from gflv2_deploy.runtime.host_nms import pre_nms_detections


def contract_test_config(contract: GraphContract) -> TestConfig:
    """The host-side test settings a graph was exported with (scale, nms_pre, NMS thresholds)."""
    post = contract.postprocessing
    return TestConfig(scale=contract.preprocessing.test_scale, nms_pre=post.nms_pre, score_thr=post.score_thr,
                      iou_thr=post.iou_thr, max_per_img=post.max_per_img)


class Detector:
    """runner + preprocessing + post-processing.

    test_cfg: scale and NMS settings; class_names: output order; pad_to: the fixed (H, W) of a
    static-size graph (pictures are letterboxed into it). ``preprocessing``: the graph contract's
    settings (mean/std/divisor), when the runner has a contract; else derived from ``test_cfg``/``pad_to``.
    """

    def __init__(self, runner: Runner, test_cfg: TestConfig, class_names: Sequence[str],
                 pad_to: tuple[int, int] | None = None, preprocessing: Preprocessing | None = None) -> None:
        self.runner = runner
        self.test_cfg = test_cfg
        self.class_names = tuple(class_names)
        base = preprocessing or Preprocessing()
        self.preprocessing = dataclasses.replace(base, test_scale=tuple(test_cfg.scale), input_hw=pad_to)
        self._batch: np.ndarray | None = None  # detect()'s input buffer, reused while the batch shape stays

    @property
    def pad_to(self) -> tuple[int, int] | None:
        """The fixed input size of a static-shape model (pictures are letterboxed into it), else None."""
        return self.preprocessing.input_hw

    @classmethod
    def from_contract(cls, runner: Runner, contract: GraphContract) -> "Detector":
        return cls(runner, contract_test_config(contract), contract.model.class_names,
                   pad_to=contract.preprocessing.input_hw, preprocessing=contract.preprocessing)

    def with_test_config(self, **changes: object) -> "Detector":
        """The same runner with some test settings changed (scale, thresholds)."""
        return Detector(self.runner, dataclasses.replace(self.test_cfg, **changes), self.class_names, self.pad_to,
                        self.preprocessing)

    def __enter__(self) -> "Detector":
        self.runner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.__exit__(*exc)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[ImageMeta]]:
        return preprocess_for(images, self.preprocessing)

    def detect(self, images: Sequence[np.ndarray]) -> list[spec.Detections]:
        """images: BGR uint8 H x W x 3 arrays -> one Detections per image, original-image pixels."""
        if hasattr(self.runner, "detect_pictures"):  # a runner with its own pre/post-processing (the C++ runtime)
            return self.runner.detect_pictures(images, self.test_cfg, self.pad_to)
        batch, metas = preprocess_for(images, self.preprocessing, out=self._batch)
        self._batch = batch
        return self.detect_preprocessed(batch, metas)

    def detect_preprocessed(self, batch: np.ndarray, metas: list[ImageMeta]) -> list[spec.Detections]:
        reference = getattr(self.runner, "reference_detections", None)
        if reference is not None:
            return reference(batch, metas, self.test_cfg)
        return self.postprocess_outputs(self.runner.infer(batch, stack_img_shapes(metas)), metas)

    def postprocess_outputs(self, outputs: dict[str, np.ndarray], metas: list[ImageMeta]) -> list[spec.Detections]:
        """The runner's named outputs for a batch -> detections in original-picture pixels."""
        if spec.OUT_NUM_DETS in outputs:
            dets = end_to_end_detections(outputs)
        else:
            cfg = self.test_cfg
            dets = pre_nms_detections(outputs[spec.OUT_BOXES], outputs[spec.OUT_SCORES], stack_img_shapes(metas),
                                      cfg.score_thr, cfg.iou_thr, cfg.max_per_img)
        return [detections_to_original(d, m) for d, m in zip(dets, metas)]


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
