"""Every option a message mentions exists (issue 9, row 8): read from the package's string literals with ``ast``
and checked against the real typer app, command by command."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command

from gflv2_deploy.cli import app

PACKAGE = Path(__file__).resolve().parents[3] / "gflv2_deploy"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
SUGGESTION = re.compile(r"gflv2-deploy ((?:data )?[a-z]+)([^`)]*)")  # up to the closing backtick or parenthesis
FOREIGN = {"--backend-config", "--model-repository", "--shm-size"}  # tritonserver's and docker's, in printed command lines
# modules that build other programs' command lines (tritonserver, pip, the drain's own argparse CLI): their options, not ours
OTHER_ARGV = ("serve/triton_server.py", "serve/k8s.py", "serve/drain.py", "native.py")  # their own argv parsers
CLICK_OWN = {"--help"}  # click adds it to every command (not among command.params)
# commands that read checkpoints, where read_checkpoint's "--allow-unsafe-pickle" advice reaches the user
READS_CHECKPOINTS = ("predict", "eval", "compare", "export", "bench", "train")


def command_options(typer_app: typer.Typer) -> dict[str, set[str]]:
    """``{"data synth": {"--out", ...}, "export": {...}}`` of a typer app."""
    found: dict[str, set[str]] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group (typer vendors its own click)
                walk(command, f"{prefix}{name} ")
            else:
                found[prefix + name] = {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}

    root = get_command(typer_app)
    walk(root, "")
    found[""] = {o for p in root.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}  # --version
    return found


def message_strings(path: Path) -> list[str]:
    """String literals of a module except docstrings; f-strings with their placeholders replaced by ``X``."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    inner = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | inner:
            texts.append(node.value)
    return texts


ALL_OPTIONS = command_options(app)
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_app_has_every_command() -> None:
    assert set(ALL_OPTIONS) == {"", "configs", "predict", "eval", "train", "export", "quantize", "build", "compare", "bench",
                                "infer", "report", "demo", "data synth", "triton"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_suggested_commands_use_their_own_options(path: Path) -> None:
    """``gflv2-deploy quantize M --int8 --target tensorrt ...`` in a message: each option exists on quantize."""
    for text in message_strings(path):
        for command, rest in SUGGESTION.findall(text):
            if command not in ALL_OPTIONS:
                continue
            unknown = set(OPTION.findall(rest)) - ALL_OPTIONS[command]
            assert not unknown, (path.name, command, unknown, text)


@pytest.mark.parametrize("path", [m for m in MODULES if m.relative_to(PACKAGE).as_posix() not in OTHER_ARGV],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_mentioned_option_exists(path: Path) -> None:
    known = set().union(*ALL_OPTIONS.values()) | FOREIGN | CLICK_OWN
    for text in message_strings(path):
        unknown = set(OPTION.findall(SUGGESTION.sub("", text))) - known
        assert not unknown, (path.name, unknown, text)


@pytest.mark.parametrize("module", ["reference", "train", "export", "engine", "parity", "bench", "infer", "report", "demo", "triton"])
def test_command_messages_name_options_of_their_own_commands(module: str) -> None:
    """A message raised by a command module names options of the commands that module registers."""
    own_app = typer.Typer()
    own_app.command("_other")(lambda: None)  # two commands keep each one a named subcommand
    importlib.import_module(f"gflv2_deploy.cli.{module}").register(own_app)
    own = set().union(*command_options(own_app).values())
    for text in message_strings(PACKAGE / "cli" / f"{module}.py"):
        unknown = set(OPTION.findall(SUGGESTION.sub("", text))) - own
        assert not unknown, (module, unknown, text)


def test_commands_that_read_checkpoints_accept_unsafe_pickle() -> None:
    advice = "--allow-unsafe-pickle"
    assert any(advice in t for t in message_strings(PACKAGE / "model" / "checkpoint.py"))
    assert [c for c in READS_CHECKPOINTS if advice not in ALL_OPTIONS[c]] == []
