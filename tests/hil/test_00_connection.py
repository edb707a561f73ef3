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


def test_deployed_app_is_active(node, hil_deployed):
    """The session's deploy is the app the board boots (/app/current names it)."""
    if hil_deployed is None:  # --no-deploy: whatever is there must still be complete
        app = node.exec("print(open('/app/current').read().strip())").strip()
    else:
        app = hil_deployed.app_id
        assert node.exec("print(open('/app/current').read().strip())").strip() == app
    manifest = node.json(f"print(open('/app/{app}/manifest.json').read())")
    assert manifest["id"] == app and manifest["files"]
