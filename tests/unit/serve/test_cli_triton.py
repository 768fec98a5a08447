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


def test_bad_k8s_option_writes_neither_repository_nor_manifests(serve_onnx, tmp_path) -> None:
    result = subprocess.run([sys.executable, str(CLI), "triton", str(serve_onnx["e2e"]), "--repo", str(tmp_path / "repo"),
                             "--k8s", str(tmp_path / "k8s"), "--namespace", "Not_Valid"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: --namespace 'Not_Valid'"), result.stderr
    assert not (tmp_path / "repo").exists() and not (tmp_path / "k8s").exists()


def test_two_writers_of_one_repository_one_fails_clearly(serve_onnx, tmp_path) -> None:
    """Two `triton --repo R` at once: one writes R, the other says so in one line (before: both printed "wrote R")."""
    command = [sys.executable, str(CLI), "triton", str(serve_onnx["e2e"]), "--repo", str(tmp_path / "repo")]
    writers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(w.wait(timeout=300), *w.communicate()) for w in writers]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    error = next(err for code, _, err in results if code == 2).strip().splitlines()
    assert len(error) == 1 and ("another gflv2-deploy" in error[0] or "is not empty" in error[0]), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_cli_prints_the_shm_budget_and_writes_manifests(serve_onnx, tmp_path) -> None:
    result = subprocess.run([sys.executable, str(CLI), "triton", str(serve_onnx["u8"]), "--repo", str(tmp_path / "repo"),
                             "--ensemble", "--instances", "network=2,preprocess=2", "--k8s", str(tmp_path / "k8s")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "docker run --shm-size=" in result.stdout and "network input 442368 bytes per picture" in result.stdout
    assert (tmp_path / "k8s" / "deployment.yaml").is_file() and "kubectl apply -k" in result.stdout
