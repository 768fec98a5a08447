"""gflv2-deploy: GFLV2 from a PyTorch checkpoint to verified ONNX / TensorRT inference engines.

The public model API is imported lazily so that ``import gflv2_deploy.runtime`` (and the CLI's
``--help``) do no torch work at import time.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["__version__", "build_model", "load_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from gflv2_deploy.model.build import build_model

        return build_model
    if name == "load_checkpoint":
        from gflv2_deploy.model.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'gflv2_deploy' has no attribute {name!r}")
