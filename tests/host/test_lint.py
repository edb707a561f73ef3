"""House rules: ruff and codespell are clean over the whole repository, and the host code is
formatted by ruff (the firmware keeps its hand-laid register tables and viper kernels)."""

import subprocess
import sys

from voicenode_tools import REPO_ROOT


def test_ruff_is_clean():
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_host_code_is_formatted():
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "host_tools", "tests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_codespell_is_clean():
    res = subprocess.run(
        [
            "codespell",
            "--toml",
            "pyproject.toml",
            "firmware",
            "host_tools",
            "tests",
            "docs",
            "boards",
            "README.md",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
