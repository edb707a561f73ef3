"""The virtual board answers the real, unmodified mpremote like a USB port."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voicenode_tools.sim.board import VirtualBoard

MPREMOTE = shutil.which("mpremote") or str(Path(sys.executable).parent / "mpremote")


def mpremote(port, *args, timeout=30, check=True):
    out = subprocess.run(
        [MPREMOTE, "connect", port, *args], capture_output=True, timeout=timeout
    )
    if check:
        assert out.returncode == 0, (out.stdout + out.stderr).decode(errors="replace")
    return out


@pytest.fixture
def board(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        yield b


def test_port_is_a_real_pty(board):
    assert board.port.startswith("/dev/pts/")
    assert os.major(os.stat(board.port).st_rdev) == 136
    assert not os.path.islink(board.port)


def test_exec_print(board):
    out = mpremote(board.port, "exec", "print(1 + 1)")
    assert out.stdout == b"2\n"
