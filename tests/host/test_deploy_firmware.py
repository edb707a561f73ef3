"""The device side of deploy: boot.py picks the version, main.py starts it safely, the event
log prints JSON lines and keeps a ring. On the MicroPython Unix port and the virtual board."""

import json
import subprocess
import time

import pytest
from test_deploy import check_node, make_tree, wait_ready

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.cli import CommandError
from voicenode_tools.device import deploy, monitor, transport
from voicenode_tools.sim.board import VirtualBoard


def run_mpy(code):
    out = subprocess.run(
        ["micropython", "-X", "heapsize=128k", "-c", code],
        cwd=FIRMWARE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.splitlines()


def test_eventlog_prints_json_lines_and_keeps_a_ring():
    code = """
import sys; sys.path.insert(0, '.')
import gc
from voicenode.actions import eventlog
eventlog.emit('boot', version='0.1.0')
ring = eventlog._ring
for i in range(40):
    eventlog.emit('wake', score=i, word='hey')
eventlog.emit('long', text='x' * 400)
gc.collect()
a0 = gc.mem_alloc()
for i in range(200):
    eventlog.emit('tick', i=i)
gc.collect()
print('RING', eventlog._ring is ring, gc.mem_alloc() - a0)
print('LAST', repr(eventlog.last(3)))
print('COUNT', len(eventlog.last()))
"""
    lines = run_mpy(code)
    events = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert events[0]["event"] == "boot" and events[0]["version"] == "0.1.0"
    assert all(isinstance(e["t"], float) and e["t"] >= 0 for e in events)
    assert [e["score"] for e in events if e["event"] == "wake"] == list(range(40))
    assert len(next(e for e in events if e["event"] == "long")["text"]) == 400  # console: whole
    ring = next(ln for ln in lines if ln.startswith("RING")).split()
    assert ring[1] == "True"  # the same preallocated buffer
    assert int(ring[2]) < 512  # 200 more events kept nothing beyond the ring
    last = eval(next(ln for ln in lines if ln.startswith("LAST"))[5:])
    assert [json.loads(x)["i"] for x in last] == [197, 198, 199]  # oldest first
    assert next(ln for ln in lines if ln.startswith("COUNT")) == "COUNT 32"


def test_eventlog_field_order_and_no_fields():
    lines = run_mpy(
        "import sys; sys.path.insert(0, '.')\nfrom voicenode.actions import eventlog\n"
        "eventlog.emit('ready')\neventlog.emit('cmd', name='lights_on')\n"
    )
    assert lines[0].startswith('{"t": ') and lines[0].endswith('"event": "ready"}')
    assert json.loads(lines[1]) == {
        "t": json.loads(lines[1])["t"],
        "event": "cmd",
        "name": "lights_on",
    }
    assert lines[1].index('"t"') < lines[1].index('"event"') < lines[1].index('"name"')


@pytest.fixture
def board(tmp_path):
    with VirtualBoard(tmp_path / "flash.img", realtime=False) as vb:
        wait_ready(vb.port)
        yield vb


def device(port, code):
    t = transport.connect(port)
    try:
        return transport.run(t, deploy._DEVICE_HELPERS + code)
    finally:
        transport.close(t)


def test_boot_picks_current_then_a_complete_current_tmp(tmp_path, board):
    a = make_tree(tmp_path / "A", "1.0.0-a")
    b = make_tree(tmp_path / "B", "2.0.0-b")
    ra = deploy.deploy(board.port, board=None, models=None, source=a)
    rb = deploy.deploy(board.port, board=None, models=None, source=b)
    assert check_node(board.port)["version"] == "2.0.0-b"

    # A half-written current.tmp (a deploy killed while writing it) is ignored.
    device(board.port, f"with open('/app/current.tmp', 'w') as f:\n f.write({ra.app_id[:5]!r})")
    assert check_node(board.port)["version"] == "2.0.0-b"

    # FAT crash between "remove current" and "rename current.tmp": current.tmp is complete.
    device(
        board.port,
        f"with open('/app/current.tmp', 'w') as f:\n f.write({ra.app_id + chr(10)!r})\n"
        "os.remove('/app/current')",
    )
    state = check_node(board.port)
    assert state["version"] == "1.0.0-a" and state["via"] == "current.tmp"

    # current naming a directory without a manifest (never complete) is not booted.
    device(board.port, "_rm('/app/current.tmp')\n_mkd('/app/zzz')\n"
           "with open('/app/current', 'w') as f:\n f.write('zzz')")  # fmt: skip
    assert check_node(board.port)["active"] is None

    # And deploy repairs all of that.
    r = deploy.deploy(board.port, board=None, models=None, source=b)
    state = check_node(board.port)
    assert state["version"] == "2.0.0-b" and state["consistent"] and state["via"] == "current"
    assert "/app/zzz" in r.removed and rb.app_id == r.app_id


def test_deploy_finishes_a_fat_style_half_switch(tmp_path, board):
    a = make_tree(tmp_path / "A", "1.0.0-a")
    b = make_tree(tmp_path / "B", "2.0.0-b")
    ra = deploy.deploy(board.port, board=None, models=None, source=a)
    device(board.port, "_swap('/app/current', '/app/current.tmp')")  # only current.tmp left
    assert check_node(board.port)["via"] == "current.tmp"
    steps = []
    deploy.deploy(board.port, board=None, models=None, source=b, on_step=steps.append)
    state = check_node(board.port)
    assert state["version"] == "2.0.0-b" and state["via"] == "current" and state["consistent"]
    assert ra.app_id in state["apps"]  # the version that was active is kept as previous


def test_main_logs_a_crashing_node_and_stays_at_the_repl(tmp_path, board):
    tree = make_tree(tmp_path / "C", "3.0.0-crash")
    (tree / "voicenode" / "node.py").write_text(
        "def main():\n    raise RuntimeError('mic unplugged')\n"
    )
    deploy.deploy(board.port, board=None, models=None, source=tree, reset=False)
    boots = board.boots
    got = list(monitor.events(board.port, seconds=2.5, reset=True))
    events = [json.loads(x) for x in got]
    assert [e["event"] for e in events] == ["boot", "error"]
    assert events[1]["type"] == "RuntimeError" and events[1]["msg"] == "mic unplugged"
    time.sleep(0.5)
    assert board.boots == boots + 1  # one soft reboot, no reboot loop
    assert check_node(board.port)["version"] == "3.0.0-crash"  # the REPL answers


def test_main_runs_the_node(tmp_path, board):
    tree = make_tree(tmp_path / "N", "4.0.0-node")
    (tree / "voicenode" / "node.py").write_text(
        "from voicenode.actions import eventlog\n"
        "def main():\n    eventlog.emit('ready', source='node')\n"
    )
    deploy.deploy(board.port, board=None, models=None, source=tree, reset=False)
    events = [json.loads(x) for x in monitor.events(board.port, seconds=2.5, reset=True)]
    assert [e["event"] for e in events] == ["boot", "ready"]
    assert events[0]["app"].startswith("/app/") and events[1]["source"] == "node"


def test_mpy_version_mismatch_and_arch_detection():
    esp32s3 = 6 | (3 << 8) | (10 << 10)  # sys.implementation._mpy of MicroPython 1.29 on an S3
    assert deploy.arch_of({"mpy": esp32s3}) == "xtensawin"
    assert deploy.arch_of({"mpy": 6 | (3 << 8) | (2 << 10)}) == "x64"
    with pytest.raises(CommandError, match=r"runs .mpy v6.1 but mpy-cross emits v6.3"):
        deploy.arch_of({"mpy": 6 | (1 << 8) | (10 << 10)})
