"""`voicenode secrets` writes /secrets.json onto a node (the virtual board, reached by the
unmodified mpremote like a real port), and the firmware's net.load_secrets reads it back.
The host's check and the firmware's (voicenode.net.validate) agree case by case.
"""

import json
import subprocess

import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.cli import main
from voicenode_tools.commands import secrets as cmd
from voicenode_tools.sim.board import VirtualBoard


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with VirtualBoard(tmp_path_factory.mktemp("sim") / "flash.img", realtime=False) as vb:
        mpremote(vb, "fs", "cp", "-r", str(FIRMWARE_DIR / "voicenode"), ":")
        yield vb


def mpremote(vb, *args):
    res = subprocess.run(
        ["mpremote", "connect", vb.port, *args], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip().splitlines()


def test_secrets_written_atomically_and_read_by_the_firmware(board, tmp_path, capsys):
    src = tmp_path / "mine.json"
    src.write_text((FIRMWARE_DIR / "secrets.example.json").read_text())
    argv = ["secrets", "--port", board.port, "--file", str(src), "--mqtt-password", "topsecret"]
    assert main(argv + ["--node-id", "hall"]) == 0
    out = capsys.readouterr().out
    assert "wrote /secrets.json" in out and "broker 192.168.1.10:1883" in out
    assert "topsecret" not in out
    got = mpremote(
        board,
        "exec",
        "import json\nfrom voicenode import net\nprint(json.dumps(net.load_secrets()))",
    )
    s = json.loads(got[-1])
    assert s["mqtt"]["node_id"] == "hall" and s["mqtt"]["password"] == "topsecret"
    assert s["wifi"]["ssid"] == "your-wifi"
    assert "secrets.json.tmp" not in mpremote(board, "fs", "ls", ":")[-1]
    assert main(["secrets", "--port", board.port, "--show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mqtt"]["password"] == "***" and shown["wifi"]["password"] == "***"
    assert shown["mqtt"]["host"] == "192.168.1.10"
    assert main(["secrets", "--port", board.port, "--remove"]) == 0
    capsys.readouterr()
    assert main(["secrets", "--port", board.port, "--show"]) == 1
    assert "the node is offline" in capsys.readouterr().err


def test_bad_secrets_are_refused_before_touching_the_node(capsys):
    # no port is opened: validation comes first
    assert (
        main(["secrets", "--port", "/dev/nonexistent", "--mqtt-host", "h", "--mqtt-port", "70000"])
        == 1
    )
    assert "mqtt.port must be 1..65535" in capsys.readouterr().err
    assert main(["secrets", "--port", "/dev/nonexistent"]) == 1
    assert "nothing to write" in capsys.readouterr().err


CASES = [
    {"wifi": {"ssid": "a", "password": "b"}},
    {"wifi": {"ssid": "", "password": "b"}},
    {"wifi": {"ssid": "a", "password": 5}},
    {"mqtt": {"host": "h", "port": 0}},
    {"mqtt": {"host": "h", "node_id": "a/b"}},
    {"mqtt": {"host": "h", "colour": 1}},
    {"mqtt": {"host": "h", "command_topic": True, "keepalive": 30}},
    {"lora": {}},
    [],
]


def test_host_and_firmware_validation_agree():
    code = "import sys, json\nsys.path.insert(0, %r)\nfrom voicenode import net\n" % str(
        FIRMWARE_DIR
    )
    code += "print(json.dumps([net.validate(c) for c in %s]))" % json.dumps(CASES).replace(
        "true", "True"
    )
    res = subprocess.run(["micropython", "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    firmware = json.loads(res.stdout.splitlines()[-1])
    host = [cmd.validate(c) for c in CASES]
    assert [e is None for e in firmware] == [e is None for e in host]
    assert [e is None for e in host] == [
        True,
        False,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
    ]
