"""The node survives soft and hard resets and the virtual board's death is named, not a hang."""

import threading
import time

import pytest

from voicenode_tools.hil.link import NodeGone, NodeLink

RESET_CAUSE = "import machine\nprint(machine.reset_cause(), machine.HARD_RESET)"


def test_soft_reset_keeps_node_reachable(node):
    node.exec("import voicenode\nvoicenode.count('before_reset', 7)")
    assert node.status()["counters"].get("before_reset") == 7
    node.soft_reset()
    # A soft reset starts the interpreter afresh: counters are gone, the app still imports.
    info = node.status()
    assert "before_reset" not in info["counters"]
    assert info["version"]


def test_boot_runs_main_and_logs_boot_event(node):
    text = node.boot()
    events = node.events()
    assert any(e.get("event") == "boot" for e in events), (text, events)


def test_hard_reset(node, hil_target):
    pid = getattr(hil_target.board, "pid", None)
    node.hard_reset()
    cause, hard = node.exec(RESET_CAUSE).split()
    assert cause == hard, "reset_cause() is not HARD_RESET after machine.reset()"
    if hil_target.sim:
        assert hil_target.board.pid != pid
    # main.py ran at the reset and logged its boot.
    assert any(e.get("event") == "boot" for e in node.events())


def test_killed_board_is_named_not_a_hang(spare_board):
    """Killing the board's process mid-call fails at once, naming what happened."""
    link = NodeLink(spare_board.port, spare_board)
    assert link.json("print(6 * 7)") == 42
    killer = threading.Timer(0.5, spare_board.kill)
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(NodeGone) as err:
        link.exec("import time\ntime.sleep(60)", timeout=60)
    took = time.monotonic() - t0
    killer.join()
    link.drop()
    msg = str(err.value)
    assert f"the node on {spare_board.port} stopped answering" in msg
    assert "its process died" in msg
    assert took < 5, f"noticed the death after {took:.1f} s"


def test_killed_board_mid_injection(spare_board):
    """The same while audio streams: the injection fails at once and says why."""
    import numpy as np

    # Soft reset: the board has just started, and a Ctrl-C that lands in boot.py leaves the
    # app off sys.path.
    link = NodeLink(spare_board.port, spare_board, soft_reset=True)
    pcm = np.zeros(16000 * 3600, np.int16)  # an hour: far longer than the test lets it run
    killer = threading.Timer(0.5, spare_board.kill)
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(NodeGone) as err:
        link.inject(pcm, window=8)
    took = time.monotonic() - t0
    killer.join()
    link.drop()
    msg = str(err.value)
    assert msg.startswith(f"the node on {spare_board.port} stopped answering while streaming")
    assert "its process died" in msg
    assert took < 5, f"noticed the death after {took:.1f} s"


def test_hung_node_is_named_with_what_it_printed_last(spare_board):
    """A node that stops answering (a loop that never ends) fails after the call's timeout,
    and the message quotes the last bytes it printed: where it hung."""
    link = NodeLink(spare_board.port, spare_board)
    t0 = time.monotonic()
    with pytest.raises(NodeGone) as err:
        link.exec("print('before the loop')\nwhile True:\n    pass", timeout=1.5)
    took = time.monotonic() - t0
    link.drop()
    msg = str(err.value)
    assert "no reply (hung" in msg and "the last it printed: b'" in msg
    assert "before the loop" in msg
    assert 1.5 <= took < 10
