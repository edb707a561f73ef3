"""The HIL connection check names what is wrong: no port, not MicroPython, too old, not deployed.

The peers on the other end of a pseudo-terminal are tiny stand-ins for broken set-ups (a
silent device, a device that is not MicroPython, an old MicroPython); the check itself is the
real code, and the "not deployed" case is the real virtual board on an empty flash.
"""

import os
import threading

import pytest
import serial

from voicenode_tools.hil import check


class Peer:
    """The far side of a pty, answering each write with `reply(data) -> bytes`."""

    def __init__(self, reply):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        self._slave = slave
        self.reply = reply
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import select

        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            out = self.reply(data)
            if out:
                os.write(self.master, out)

    def close(self):
        self._stop = True
        self.thread.join(1)
        os.close(self.master)
        os.close(self._slave)


def old_micropython(data):
    # A raw REPL that runs nothing but says it is MicroPython 1.19.1.
    if data.endswith(b"\x01"):
        return b"raw REPL; CTRL-B to exit\r\n>"
    if data.endswith(b"\x04"):
        return b"OKmicropython 1.19.1 1542\r\n\x04\x04>"
    return b""


def test_missing_port():
    problem = check.diagnose("/dev/ttyNOPE9")
    assert problem.startswith("no port:") and "/dev/ttyNOPE9" in problem


def test_busy_port():
    peer = Peer(lambda d: b"")
    held = serial.Serial(peer.path, exclusive=True)
    try:
        problem = check.diagnose(peer.path, timeout=0.5)
    finally:
        held.close()
        peer.close()
    assert problem.startswith("no port:") and "busy" in problem


def test_silent_device():
    peer = Peer(lambda d: b"")
    try:
        problem = check.diagnose(peer.path, timeout=0.5)
    finally:
        peer.close()
    assert problem.startswith("not MicroPython: nothing answers"), problem


def test_device_that_is_not_micropython():
    peer = Peer(lambda d: b"\r\nlogin: ")
    try:
        problem = check.diagnose(peer.path, timeout=0.5)
    finally:
        peer.close()
    assert problem.startswith("not MicroPython:") and "login" in problem, problem


def test_old_micropython():
    peer = Peer(old_micropython)
    try:
        problem = check.diagnose(peer.path, timeout=2)
    finally:
        peer.close()
    assert problem.startswith("wrong MicroPython:") and "1.19.1" in problem, problem


@pytest.fixture
def empty_board(tmp_path):
    from voicenode_tools.sim.board import VirtualBoard

    with VirtualBoard(str(tmp_path / "flash.img"), realtime=False) as board:
        yield board


def test_not_deployed(empty_board):
    assert check.micropython(empty_board.port, empty_board) is None
    problem = check.diagnose(empty_board.port, empty_board)
    assert problem.startswith("not deployed:"), problem
    assert f"voicenode deploy --port {empty_board.port}" in problem


def test_dead_board(empty_board):
    empty_board.kill()
    problem = check.diagnose(empty_board.port, empty_board, timeout=1)
    assert problem.startswith(("no port:", f"the node on {empty_board.port} stopped")), problem
