"""The event log's listeners (how actions hear events) on the Unix port."""

import subprocess

from voicenode_tools import FIRMWARE_DIR

CODE = """
import sys
sys.path.insert(0, %r)
from voicenode.actions import eventlog
seen = []
def echo(kind, fields):
    seen.append(kind)
    eventlog.emit(kind + "+")      # a listener that always emits: must not loop forever
eventlog.add_listener(echo)
eventlog.add_listener(echo)        # once, however often it is added
eventlog.emit("wake", word="hey_jarvis")
print("SEEN", seen)
eventlog.clear_listeners()
eventlog.emit("boot")
print("AFTER", seen)
print("LAST", eventlog.last(5)[-1])
""" % str(FIRMWARE_DIR)


def test_listeners_hear_events_with_bounded_depth():
    out = subprocess.run(["micropython", "-c", CODE], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    tags = ("SEEN", "AFTER", "LAST")
    lines = {
        x.split(" ", 1)[0]: x.split(" ", 1)[1]
        for x in out.stdout.splitlines()
        if x.split(" ", 1)[0] in tags
    }
    assert lines["SEEN"] == "['wake', 'wake+', 'wake++']"
    assert lines["AFTER"] == lines["SEEN"]
    assert '"event": "boot"' in lines["LAST"]
    # the events a listener emitted past the bound were still printed and kept
    assert '"event": "wake+++"' in out.stdout
