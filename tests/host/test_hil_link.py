"""NodeLink against a scripted stand-in board on a pseudo-terminal, and a virtual board."""

import os
import threading
import time
import tty

import pytest

from voicenode_tools.hil.link import NodeGone, NodeLink

BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def _board(master, answer_from: int, seen: list, stop: threading.Event, on_call=None):
    """Answer the `answer_from`-th Ctrl-A (and later ones) with the raw REPL banner, and,
    given `on_call`, a call's Ctrl-D with `on_call`."""
    while not stop.is_set():
        try:
            data = os.read(master, 256)
        except OSError:
            return
        for b in data:
            seen.append(b)
            if b == 0x01 and seen.count(0x01) >= answer_from:
                os.write(master, BANNER)
            if b == 0x04 and on_call is not None:
                os.write(master, on_call)


def test_a_board_that_misses_the_first_ctrl_a_gets_a_second():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    seen, stop = [], threading.Event()
    th = threading.Thread(target=_board, args=(master, 2, seen, stop), daemon=True)
    th.start()
    t0 = time.monotonic()
    link = NodeLink(path)
    took = time.monotonic() - t0
    link.drop()
    stop.set()
    os.close(master)
    os.close(slave)
    assert seen.count(0x01) == 2 and seen.count(0x03) == 2  # Ctrl-C then Ctrl-A, twice
    assert 4.5 < took < 8, took  # half the entry deadline, then the second try answers


def test_a_board_that_answers_at_once_gets_one_ctrl_a():
    master, slave = os.openpty()
    tty.setraw(slave)
    seen, stop = [], threading.Event()
    th = threading.Thread(target=_board, args=(master, 1, seen, stop), daemon=True)
    th.start()
    link = NodeLink(os.ttyname(slave))
    link.drop()
    stop.set()
    os.close(master)
    os.close(slave)
    assert seen.count(0x01) == 1 and seen.count(0x03) == 1


@pytest.mark.parametrize(
    "on_call, named",
    [
        # What CI saw when the virtual board restarted under a call (the command was lost).
        (b"OK" + b"MPY: soft reboot\r\n" + BANNER, "MPY: soft reboot"),
        # A chip's watchdog (its boot ROM's line, through a UART bridge).
        (b"OK" + b"\r\nESP-ROM:esp32s3-20210327\r\nrst:0x7 (TG0WDT_SYS_RST),boot:0x8\r\n", "rst:0x7 (TG0WDT_SYS_RST)"),
        # A node that restarts before it has taken the call (no OK): named at once too, not
        # after the 10 s an OK may take.
        (b"\r\nESP-ROM:esp32s3-20210327\r\nrst:0xc (RTC_SW_CPU_RST),boot:0x8\r\n", "rst:0xc (RTC_SW_CPU_RST)"),
        (b"MPY: soft reboot\r\n" + BANNER, "MPY: soft reboot"),
    ],
)  # fmt: skip
def test_a_node_that_restarts_under_a_call_is_named_at_once(on_call, named):
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    args = (master, 1, [], stop, on_call)
    threading.Thread(target=_board, args=args, daemon=True).start()
    link = NodeLink(os.ttyname(slave))
    t0 = time.monotonic()
    with pytest.raises(NodeGone) as err:
        link.exec("print(6 * 7)")
    took = time.monotonic() - t0
    link.drop()
    stop.set()
    os.close(master)
    os.close(slave)
    assert f"restarted while running 'print(6 * 7)' (it printed {named!r})" in str(err.value)
    assert took < 2, took  # not the 30 s of silence a hang gets


def test_the_watchdog_firing_under_a_call_on_the_virtual_board_is_named(tmp_path):
    from voicenode_tools.sim.board import VirtualBoard

    with VirtualBoard(tmp_path / "flash.img", realtime=False) as b:
        link = NodeLink(b.port, b)
        t0 = time.monotonic()
        with pytest.raises(NodeGone, match=r"restarted while .*'rst:0x7 \(TG0WDT_SYS_RST\)'"):
            link.exec("import machine, time\nwdt = machine.WDT(timeout=300)\ntime.sleep(20)")
        assert time.monotonic() - t0 < 5
        link.drop()
        deadline = time.monotonic() + 5  # the reset line comes out just before the restart
        while b.reset_cause != 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.reset_cause == 3  # WDT_RESET
