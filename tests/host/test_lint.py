"""House rules: ruff and codespell are clean over the whole repository, and the host code is
formatted by ruff (the firmware keeps its hand-laid register tables and viper kernels)."""

import subprocess
import sys

from voicenode_tools import REPO_ROOT

RUFF = [sys.executable, "-m", "ruff"]


def _passes(cmd: list[str]) -> None:
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_is_clean():
    _passes(RUFF + ["check", "--no-cache", "."])


def test_host_code_is_formatted():
    _passes(RUFF + ["format", "--check", "--no-cache", "host_tools", "tests"])


def test_codespell_is_clean():
    folders = ["firmware", "host_tools", "tests", "docs", "boards", "README.md"]
    _passes(["codespell", "--toml", "pyproject.toml", *folders])
