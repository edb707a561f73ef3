"""Finding the board: a real serial port, auto-detection, or the virtual board.

`resolve(port)` turns what the user typed into a device path:

- `None` or `"auto"`: the first Espressif USB port (VID 0x303A, the ESP32-S3's own USB), then
  any other USB serial port (a CP210x or CH340 bridge), like `mpremote connect auto`.
- `"sim"`: starts a virtual board (flash image in `~/.cache/voicenode/sim/` unless given) that
  lives until `stop_sims()` or the end of the process; `session()` scopes it to a `with` block.
- `a0`, `u0`, `c0`: mpremote's shortcuts for `/dev/ttyACM0`, `/dev/ttyUSB0`, `COM0`.
- anything else: a path, which must exist.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import time
from pathlib import Path

from voicenode_tools.cli import CommandError

#: Espressif's USB vendor id: the ESP32-S3's built-in USB Serial/JTAG and USB-OTG CDC.
ESPRESSIF_VID = 0x303A

#: Where `--port sim` keeps its flash image unless one is given.
SIM_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voicenode" / "sim"

_SHORTCUTS = {"a": "/dev/ttyACM", "u": "/dev/ttyUSB", "c": "COM"}

_sims = []  # virtual boards started by resolve("sim"), stopped at exit


def candidates():
    """USB serial ports that may be a board, best first (Espressif, then other USB).

    Returns:
        A list of pyserial `ListPortInfo`.
    """
    import serial.tools.list_ports

    ports = [p for p in serial.tools.list_ports.comports() if p.vid is not None]
    return sorted(ports, key=lambda p: (p.vid != ESPRESSIF_VID, p.device))


def describe(p) -> str:
    """One line for a port: `/dev/ttyACM0 303a:1001 Espressif USB JTAG/serial debug unit`."""
    vid = p.vid or 0
    pid = p.pid or 0
    return f"{p.device} {vid:04x}:{pid:04x} {p.manufacturer or ''} {p.product or ''}".rstrip()


def auto() -> str:
    """The device path of the best candidate port.

    Raises:
        CommandError: no USB serial port at all.
    """
    found = candidates()
    if not found:
        raise CommandError(
            "no board found: no USB serial port is connected. Plug the ESP32-S3 in (use its "
            "USB port, a data cable), pass --port /dev/ttyACM0, or --port sim for the "
            "virtual board"
        )
    return found[0].device


def start_sim(flash_image=None, **kwargs):
    """Start a virtual board and return it (stopped at exit if the caller does not).

    Args:
        flash_image: the flash image file; default `~/.cache/voicenode/sim/flash.img`.
        **kwargs: passed to `VirtualBoard` (mic, realtime, heapsize).
    """
    try:
        from voicenode_tools.sim.board import VirtualBoard
    except ImportError as e:
        raise CommandError(f"the virtual board is not available ({e})") from e
    if flash_image is None:
        SIM_DIR.mkdir(parents=True, exist_ok=True)
        flash_image = SIM_DIR / "flash.img"
    board = VirtualBoard(str(flash_image), **kwargs)
    try:
        board.start()
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        # RuntimeError: a `voicenode sim` already runs on this image; it printed its port.
        raise CommandError(
            f"cannot start the virtual board: {e}. If `voicenode sim` is running, pass the "
            "/dev/pts/N it printed as --port"
        ) from e
    _sims.append(board)
    return board


def stop_sims():
    """Stop every virtual board `resolve("sim")` started."""
    while _sims:
        board = _sims.pop()
        with contextlib.suppress(Exception):
            board.stop()


atexit.register(stop_sims)


def resolve(port=None) -> str:
    """The device path for `port` (see the module docstring).

    Raises:
        CommandError: no board found, or the named port does not exist.
    """
    if port in (None, "", "auto"):
        return auto()
    if port == "sim":
        return start_sim().port
    if len(port) >= 2 and port[0] in _SHORTCUTS and port[1:].isdigit():
        port = _SHORTCUTS[port[0]] + port[1:]
    if port.startswith("port:"):
        port = port[len("port:") :]
    if os.name != "nt" and not os.path.exists(port):
        found = ", ".join(describe(p) for p in candidates()) or "none"
        raise CommandError(
            f"no such port {port} (unplugged, or a different name?); USB serial ports found: {found}"
        )
    return port


@contextlib.contextmanager
def session(port=None, flash_image=None):
    """`with session(port) as path:` resolves the port; a virtual board lives for the block."""
    if port == "sim":
        board = start_sim(flash_image)
        try:
            yield board.port
        finally:
            with contextlib.suppress(Exception):
                board.stop()
            if board in _sims:
                _sims.remove(board)
    else:
        yield resolve(port)


_LOCK_GRACE_S = 0.5
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY)


def check_free(path: str) -> None:
    """Open `path` exclusively once to turn an opaque failure into a clear message.

    Raises:
        CommandError: the port is missing, not accessible, or held by another program.
    """
    import serial

    # A lock can be held for an instant by a process that has just forked from this one (the
    # virtual board's supervisor starting MicroPython inherits open ports until its exec), so
    # a lock that is still taken after _LOCK_GRACE_S is another program's.
    deadline = time.monotonic() + _LOCK_GRACE_S
    while True:
        try:
            s = serial.Serial(path, exclusive=True, timeout=0)
            break
        except (serial.SerialException, OSError) as e:
            busy = "exclusively lock" in str(e) or getattr(e, "errno", None) in _BUSY
            if busy and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise CommandError(explain_open_error(path, e)) from e
    s.close()


def explain_open_error(path: str, e: Exception) -> str:
    """A user-facing sentence for a failure to open a serial port."""
    text = str(e)
    code = getattr(e, "errno", None)
    if "exclusively lock" in text or code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
        return (
            f"port {path} is busy: another program holds it (a serial monitor, mpremote, "
            "another voicenode?). Close it and retry"
        )
    if code == errno.ENOENT or "No such file" in text:
        return f"no such port {path} (unplugged?)"
    if code == errno.EACCES or "Permission denied" in text:
        return (
            f"permission denied on {path}: add yourself to the 'dialout' group "
            "(sudo usermod -aG dialout $USER, then log in again)"
        )
    return f"cannot open {path}: {text}"
