"""`gflv2-deploy triton`: writes the repository; a user mistake is one `error:` line, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gflv2_deploy.cli import triton as cli_triton

CLI = Path(__file__).resolve().parents[3] / "cli.py"


def test_writes_the_python_ensemble(serve_onnx, tmp_path) -> None:
    app = typer.Typer()
    cli_triton.register(app)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the command name
    result = CliRunner().invoke(app, ["triton", str(serve_onnx["e2e"]), "--repo", str(tmp_path / "repo"),
                                      "--platform", "python", "--ensemble", "--max-batch", "4", "--instances", "2"])
    assert result.exit_code == 0, result.output
    assert "gflv2_network, gflv2_preprocess, gflv2_postprocess" in result.output.replace("\n", " ")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [
        "gflv2", "gflv2_network", "gflv2_postprocess", "gflv2_preprocess"]


@pytest.mark.parametrize("extra, message", [
    (["--max-batch", "0"], "--max-batch must be an integer in 1..256, got 0"),
    (["--platform", "tensorrt"], "build an engine first"),
])
def test_user_mistakes_are_one_error_line(serve_onnx, tmp_path, extra, message) -> None:
    result = subprocess.run([sys.executable, str(CLI), "triton", str(serve_onnx["e2e"]), "--repo",
                             str(tmp_path / "repo"), *extra], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (tmp_path / "repo").exists()
