"""`voicenode hil run` runs the suite through pytest, writes JUnit XML and a short summary."""

import subprocess
import sys
import xml.etree.ElementTree as ET


def test_hil_run_writes_junit_and_summary(tmp_path):
    out_xml = tmp_path / "hil.xml"
    cmd = [sys.executable, "-m", "voicenode_tools.cli", "hil", "run", "--port", "sim"]
    cmd += ["-k", "test_connection", "--junit", str(out_xml)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "voicenode hil (injected) on sim: 1 passed, 0 failed, 0 errors" in out.stdout
    suite = ET.parse(out_xml).getroot().find("testsuite")
    assert suite.get("name") == "voicenode-hil"
    assert suite.get("tests") == "1" and suite.get("failures") == "0"


def test_hil_run_reports_a_failure(tmp_path):
    """A board that does not exist: the first test fails and the summary says why."""
    cmd = [sys.executable, "-m", "voicenode_tools.cli", "hil", "run", "--port", "/dev/ttyNOPE3"]
    cmd += ["-k", "test_connection"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "/dev/ttyNOPE3" in out.stdout and "1 errors" in out.stdout
