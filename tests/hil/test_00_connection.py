"""The first test: if this fails, every other HIL test fails too, and this one says why."""

from voicenode_tools.hil import check


def test_connection(hil_target, hil_deployed):
    """A port, MicroPython (recent enough), and the voice node of this checkout deployed."""
    problem = check.diagnose(hil_target.path, hil_target.board)
    assert problem is None, problem


def test_node_answers_status(node):
    info = node.status()
    assert info["version"] == check.firmware_version()
    assert info["heap_free"] > 0 and info["heap_alloc"] > 0
    assert isinstance(info["counters"], dict)
