"""NodeLink's entry into the raw REPL, against a scripted stand-in board on a pseudo-terminal."""

import os
import threading
import time
import tty

from voicenode_tools.hil.link import NodeLink

BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def _board(master, answer_from: int, seen: list, stop: threading.Event):
    """Answer the `answer_from`-th Ctrl-A (and later ones) with the raw REPL banner."""
    while not stop.is_set():
        try:
            data = os.read(master, 256)
        except OSError:
            return
        for b in data:
            seen.append(b)
            if b == 0x01 and seen.count(0x01) >= answer_from:
                os.write(master, BANNER)


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
