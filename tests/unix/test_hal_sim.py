"""voicenode.hal on the virtual board, with the simulated `machine` (sim/mpy/machine.py).

The reference board's board.py and the firmware are copied to the board's flash with the
unmodified mpremote, as a deploy would; the host drives the mute pin and reads the LED pin.
"""

import subprocess

import pytest

from voicenode_tools import BOARDS_DIR, FIRMWARE_DIR
from voicenode_tools.boards import DEFAULT
from voicenode_tools.sim.board import VirtualBoard


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with VirtualBoard(tmp_path_factory.mktemp("sim") / "flash.img", realtime=False) as vb:
        mpremote(vb, "fs", "cp", str(BOARDS_DIR / DEFAULT / "board.py"), ":board.py")
        mpremote(vb, "fs", "cp", "-r", str(FIRMWARE_DIR / "voicenode"), ":")
        yield vb


def mpremote(vb, *args):
    res = subprocess.run(
        ["mpremote", "connect", vb.port, *args], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip().splitlines()


def test_hal_reads_the_mute_pin_the_host_drives(board):
    board.set_pin(7, 1)
    assert mpremote(
        board, "exec", "from voicenode import hal; print(hal.board_name(), hal.muted())"
    ) == [f"{DEFAULT} False"]
    board.set_pin(7, 0)
    assert mpremote(board, "exec", "from voicenode import hal; print(hal.muted())") == ["True"]


def test_make_i2s_receives_32_bit_slots_and_status_names_the_board(board):
    out = mpremote(
        board,
        "exec",
        "from voicenode import hal\n"
        "import voicenode\n"
        "i2s = hal.make_i2s()\n"
        "buf = bytearray(4 * 160)\n"
        "print(i2s.readinto(buf), hal.mclk_source, voicenode.status(out=False)['board'])\n"
        "i2s.deinit()\n",
    )
    assert out == [f"640 None {DEFAULT}"]


def test_microphone_reads_blocks_of_silence(board):
    out = mpremote(
        board,
        "exec",
        "from voicenode import hal\n"
        "mic = hal.microphone()\n"
        "b = mic.read()\n"
        "b = mic.read()\n"
        "print(len(b), min(b), max(b))\n",
    )
    assert out == ["160 0 0"]
