"""The report package sits beside bench, below the CLI: it reads results and draws them, and never imports torch,
the model, the runtimes or the commands (a deployment install renders reports)."""

from __future__ import annotations

import ast
from pathlib import Path

import gflv2_deploy.report as package

FORBIDDEN = ("torch", "onnx", "onnxruntime", "tensorrt", "gflv2_deploy.model", "gflv2_deploy.train", "gflv2_deploy.export",
             "gflv2_deploy.engine", "gflv2_deploy.runtime", "gflv2_deploy.serve", "gflv2_deploy.bench", "gflv2_deploy.cli")


def test_report_imports_nothing_above_or_heavy() -> None:
    files = sorted(Path(package.__file__).parent.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (path.name, name)
