"""One way to get a ready model from a checkpoint and/or a configuration: export, runtime and bench share it."""

from __future__ import annotations

import os

from gflv2_deploy.config import ModelConfig
from gflv2_deploy.errors import UserError
from gflv2_deploy.model.build import build_from_config, resolve_config
from gflv2_deploy.model.checkpoint import checkpoint_config, load_checkpoint
from gflv2_deploy.model.detector import GFLV2


def load_torch_model(
    checkpoint: str | os.PathLike[str] | None,
    config: str | ModelConfig | None = None,
    num_classes: int | None = None,
    allow_unsafe_pickle: bool = False,
) -> GFLV2:
    """Build the model (config from the argument, else from our checkpoint) and load its weights, eval mode.

    Official checkpoints carry no config of ours, so they need ``config`` (e.g. ``gflv2_r50_fpn``).
    ``checkpoint=None`` gives random weights (benchmarks only). Loading is strict: any mismatch between
    the checkpoint and the configuration is a UserError naming the keys.
    """
    cfg: ModelConfig | None = None
    if config is not None:
        cfg = resolve_config(config, num_classes)
    elif checkpoint is not None:
        cfg = checkpoint_config(checkpoint, allow_unsafe_pickle)
        if cfg is None:
            raise UserError(f"{checkpoint} is not a gflv2-deploy checkpoint, so pass --config (e.g. gflv2_r50_fpn)")
    if cfg is None:
        raise UserError("either a checkpoint or a configuration is needed")
    model = build_from_config(cfg)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow_unsafe_pickle)
    return model.eval()
