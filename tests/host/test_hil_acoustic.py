"""Acoustic mode on the virtual board: the clip goes into its simulated microphone while the
node runs its own loop, and the results land in a JUnit suite of their own."""

import subprocess
import sys
import xml.etree.ElementTree as ET


def test_acoustic_wake_on_the_virtual_board(tmp_path):
    out_xml = tmp_path / "acoustic.xml"
    cmd = [sys.executable, "-m", "voicenode_tools.cli", "hil", "run", "--port", "sim"]
    cmd += ["--acoustic", "-k", "wake_phrase_detected and en-us", "--junit", str(out_xml)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    # en-us and en-us+f2: two voices through the simulated microphone.
    assert "voicenode hil (acoustic) on sim: 2 passed, 0 failed, 0 errors" in out.stdout
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite.get("name") == "voicenode-hil-acoustic"
    cases = list(suite.iter("testcase"))
    assert len(cases) == 2
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props["detections"] == "1", case.get("name")
        # The latency includes the microphone's buffering: positive, under a second and a half.
        assert 0 <= int(props["latency_out_ms"]) <= 1500, props
