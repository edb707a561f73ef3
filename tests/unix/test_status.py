"""The firmware package imports and reports status on the MicroPython Unix port."""

import json
import subprocess

from voicenode_tools import FIRMWARE_DIR


def run_mpy(code, heapsize="64k"):
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", code],
        cwd=FIRMWARE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def test_status_reports_version_and_counters():
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        "import voicenode, json\n"
        "voicenode.count('test_events', 3)\n"
        "info = voicenode.status(out=False)\n"
        "print(json.dumps(info))\n"
    )
    info = json.loads(run_mpy(code).strip().splitlines()[-1])
    assert info["version"] == "0.1.0"
    assert info["counters"] == {"test_events": 3}
    assert info["heap_free"] > 0
