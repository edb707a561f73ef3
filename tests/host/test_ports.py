"""Port resolution and the clear errors for missing, busy and vanished ports."""

import os
import pty
import select
import threading
import time

import pytest
import serial
import serial.tools.list_ports
from serial.tools.list_ports_common import ListPortInfo

from voicenode_tools.cli import CommandError, main
from voicenode_tools.device import monitor, ports, transport


def _port(device, vid=None, pid=None):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid = vid, pid
    return p


def test_auto_prefers_espressif_then_other_usb(monkeypatch):
    listed = [
        _port("/dev/ttyS0"),  # no USB ids: a motherboard UART, never chosen
        _port("/dev/ttyUSB0", 0x10C4, 0xEA60),  # CP210x bridge
        _port("/dev/ttyACM1", 0x303A, 0x1001),  # ESP32-S3 USB Serial/JTAG
    ]
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: listed)
    assert ports.resolve(None) == "/dev/ttyACM1"
    assert ports.resolve("auto") == "/dev/ttyACM1"
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: listed[:2])
    assert ports.resolve("auto") == "/dev/ttyUSB0"


def test_no_port_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [_port("/dev/ttyS0")])
    with pytest.raises(CommandError, match="no board found"):
        ports.resolve(None)
    assert main(["status"]) == 1
    assert "no board found" in capsys.readouterr().err


def test_missing_port_is_a_clear_error(capsys):
    with pytest.raises(CommandError, match="no such port /dev/ttyACM97"):
        ports.resolve("/dev/ttyACM97")
    with pytest.raises(CommandError, match="no such port /dev/ttyACM97"):
        ports.resolve("a97")  # mpremote's shortcut
    assert main(["deploy", "--port", "/dev/ttyUSB98"]) == 1
    assert "no such port /dev/ttyUSB98" in capsys.readouterr().err


@pytest.fixture
def pty_pair():
    master, slave = pty.openpty()
    path = os.ttyname(slave)
    yield master, path
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_busy_port_is_a_clear_error(pty_pair, capsys):
    _master, path = pty_pair
    holder = serial.Serial(path, exclusive=True)  # another program holds the port
    try:
        with pytest.raises(CommandError, match=f"port {path} is busy"):
            transport.connect(path)
        assert main(["status", "--port", path]) == 1
        assert "is busy" in capsys.readouterr().err
        assert main(["monitor", "--port", path, "--seconds", "0.1"]) == 1
    finally:
        holder.close()
    ports.check_free(path)  # free again once the other program lets go


def test_monitor_prints_only_event_lines(pty_pair):
    master, path = pty_pair

    def board():
        time.sleep(0.3)
        os.write(master, b"MicroPython v1.29 on esp32s3\r\n>>> \r\n")
        os.write(master, b'{"t": 1.5, "event": "boot", "version": "0.1.0"}\r\n')
        os.write(master, b"Traceback (most recent call last):\r\n{not json}\r\n[1, 2]\r\n")
        os.write(master, b'{"t": 2.0, "event": "wake", "score": 201}\r\n{"t": 3')

    threading.Thread(target=board, daemon=True).start()
    got = list(monitor.events(path, seconds=1.5))
    assert got == [
        '{"t": 1.5, "event": "boot", "version": "0.1.0"}',
        '{"t": 2.0, "event": "wake", "score": 201}',
    ]


BANNER = (
    b'MicroPython v1.29.0 on 2026-07-12; ESP32S3 module\r\nType "help()" for more information.\r\n'
)


@pytest.mark.parametrize(
    "after_reset, said",
    [
        # an empty flash: the board restarts to its REPL and nothing tells why
        (BANNER + b">>> ", [monitor.NO_NODE]),
        # firmware without its app: main.py's status line is shown, then the same note
        (b"voicenode: no app installed (no module named 'voicenode'); run `voicenode deploy`"
         b"\r\n" + BANNER + b">>> ",
         ["voicenode: no app installed (no module named 'voicenode'); run `voicenode deploy`",
          monitor.NO_NODE]),
        # a node that starts: its boot event, no note (and none when it stops with an error:
        # the error event says why)
        (b'{"t": 0.1, "event": "boot"}\r\n{"t": 0.2, "event": "error", "error": "x"}\r\n'
         + BANNER + b">>> ", []),
    ],
)  # fmt: skip
def test_monitor_says_when_the_board_runs_no_node(pty_pair, after_reset, said):
    """With `--reset` the board first answers Ctrl-B with its banner (that is no sign of an
    empty board), then reboots; a banner after the reboot with no event before it is."""
    master, path = pty_pair

    def board():
        time.sleep(0.3)
        os.write(master, b"\r\n>>> \r\n>>> \r\n" + BANNER + b">>> \r\nMPY: soft reboot\r\n")
        os.write(master, after_reset)

    threading.Thread(target=board, daemon=True).start()
    notes = []
    list(monitor.events(path, seconds=1.2, notes=notes.append))
    assert notes == said


def test_monitor_on_an_empty_virtual_board_is_not_silent(tmp_path, capsys):
    """`voicenode monitor --port sim` resets the board it has just started (its boot shows,
    as a board plugged in would), and an empty flash gets the note instead of silence."""
    assert main(["monitor", "--port", "sim", "--flash", str(tmp_path / "empty.img"),
                 "--seconds", "3"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert out == "" and monitor.NO_NODE in err


def test_board_dropping_off_mid_session_is_a_clear_error(pty_pair):
    master, path = pty_pair

    def unplug():
        time.sleep(0.3)
        os.write(master, b'{"t": 0.1, "event": "boot"}\r\n')
        time.sleep(0.2)
        os.close(master)  # the USB device disappears

    threading.Thread(target=unplug, daemon=True).start()
    seen = []
    with pytest.raises(CommandError, match=f"the board on {path} stopped answering"):
        for line in monitor.events(path, seconds=5):
            seen.append(line)
    assert seen == ['{"t": 0.1, "event": "boot"}']


def test_repl_hands_the_terminal_to_mpremote(tmp_path):
    """`voicenode repl` on a terminal: type a line, see the answer, leave with Ctrl-]."""
    import subprocess
    import sys

    from voicenode_tools.sim.board import VirtualBoard

    with VirtualBoard(tmp_path / "flash.img", realtime=False) as vb:
        master, slave = pty.openpty()  # the user's terminal
        env = dict(os.environ, TERM="dumb")
        p = subprocess.Popen(
            [sys.executable, "-m", "voicenode_tools.cli", "repl", "--port", vb.port],
            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        seen = b""

        def read_until(token, timeout=15):
            nonlocal seen
            deadline = time.monotonic() + timeout
            while token not in seen and time.monotonic() < deadline:
                r, _, _ = select.select([master], [], [], 0.1)
                if r:
                    try:
                        seen += os.read(master, 4096)
                    except OSError:
                        break
            return token in seen

        try:
            assert read_until(b"Connected to MicroPython")
            os.write(master, b"\r")
            assert read_until(b">>> ")
            os.write(master, b"print(6 * 7, 'x' * 3)\r")
            assert read_until(b"42 xxx")
            os.write(master, b"\x1d")  # Ctrl-]: leave mpremote
            assert p.wait(timeout=15) == 0
        finally:
            if p.poll() is None:
                p.kill()
            os.close(master)
