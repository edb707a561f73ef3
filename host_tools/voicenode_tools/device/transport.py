"""Talking to the board through mpremote's `SerialTransport`, used as a library.

`connect(port)` opens the port exclusively (so two programs never interleave on one board),
interrupts whatever runs and enters the raw REPL. `guard(path)` turns the ways a serial link
fails into one clear sentence. `run_json(t, code)` runs code that prints one JSON value.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time

from voicenode_tools.cli import CommandError

from . import ports

#: Seconds a single read may wait; a board that sends nothing for this long mid-reply is gone.
READ_TIMEOUT = 2.0
#: Tries at entering the raw REPL; the first is short (a REPL answers in milliseconds), the
#: later ones wait longer for a board that is still booting.
CONNECT_ATTEMPTS = 5
RAW_REPL_TIMEOUT = 4


def lost_message(path: str) -> str:
    return f"the board on {path} stopped answering (unplugged or reset?)"


@contextlib.contextmanager
def guard(path: str):
    """Map serial failures inside the block to `CommandError`.

    A device-side Python error (mpremote's `TransportExecError`) becomes "the board reported
    an error" with its last traceback line; anything else that breaks the link (pyserial's
    `SerialException`, an `OSError` from the file descriptor, a timeout) becomes "stopped
    answering".
    """
    import serial
    from mpremote.transport import TransportError, TransportExecError

    try:
        yield
    except TransportExecError as e:
        lines = [ln for ln in str(e.error_output).strip().splitlines() if ln.strip()]
        if re.search(r"ENOSPC|OSError: (\[Errno 28\]|28$)", str(e.error_output), re.M):
            raise CommandError(
                f"the filesystem of the board on {path} is full: remove files (voicenode repl) "
                "or erase it (voicenode flash --erase, which also removes the app)"
            ) from e
        raise CommandError(
            f"the board on {path} reported an error: {lines[-1] if lines else e}"
        ) from e
    except (serial.SerialException, OSError, TransportError) as e:
        raise CommandError(lost_message(path)) from e


def open_serial(path: str):
    """A `SerialTransport` on `path`, opened exclusively, not yet in the raw REPL."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    for _ in range(3):  # the port can be taken for an instant (see ports.check_free)
        ports.check_free(path)
        try:
            return SerialTransport(path, baudrate=115200, exclusive=True, timeout=READ_TIMEOUT)
        except TransportError as e:
            error = e
    # mpremote hides the reason; open it ourselves once more to name it.
    ports.check_free(path)
    raise CommandError(f"cannot open {path}: {error}") from error


def _wait_quiet(link, quiet: float = 0.5, limit: float = 6.0) -> None:
    """Read and drop console output until the board has been silent for `quiet` seconds."""
    end = time.monotonic() + limit
    last = time.monotonic()
    old = link.timeout
    link.timeout = 0.05
    try:
        while time.monotonic() < end and time.monotonic() - last < quiet:
            if link.read(4096):
                last = time.monotonic()
    finally:
        link.timeout = old


def connect(port=None, soft_reset=True):
    """An mpremote `SerialTransport` on the board, in the raw REPL.

    Args:
        port: a path, `"auto"`/`None` or `"sim"` (see `ports.resolve`).
        soft_reset: soft-reset on entry (a clean heap; stops a running node).

    Raises:
        CommandError: no port, a busy port, or no MicroPython REPL answering.
    """
    import serial
    from mpremote.transport import TransportError

    path = ports.resolve(port)
    t = open_serial(path)
    # A board that has just been reset is still printing its boot log and running boot.py /
    # main.py, and may miss the first Ctrl-C / Ctrl-A: try a few times before giving up.
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints what it got
                wait = RAW_REPL_TIMEOUT if attempt else min(1.0, RAW_REPL_TIMEOUT)
                t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=wait)
            break
        except (TransportError, serial.SerialException, OSError) as e:
            if attempt + 1 < CONNECT_ATTEMPTS and not isinstance(e, serial.SerialException):
                _wait_quiet(t.serial)  # let a reset finish before the next Ctrl-C
                continue
            with contextlib.suppress(Exception):
                t.close()
            if isinstance(e, serial.SerialException):
                raise CommandError(lost_message(path)) from e
            raise CommandError(
                f"no MicroPython REPL answers on {path}: is MicroPython flashed (voicenode "
                "flash), is it the right port, or is a program on the board not letting go "
                "of Ctrl-C?"
            ) from e
    return t


def close(t) -> None:
    """Leave the raw REPL and close the port, ignoring a board that is already gone."""
    with contextlib.suppress(Exception):
        if t.in_raw_repl:
            t.exit_raw_repl()
    with contextlib.suppress(Exception):
        t.close()


def run_json(t, code: str, timeout: float = 30):
    """Run `code` on the board; it prints one JSON value as its last line, which is returned.

    Raises:
        mpremote's TransportExecError for a device-side exception (use inside `guard`).
    """
    from mpremote.transport import TransportExecError

    out, err = t.exec_raw(code, timeout=timeout)
    if err:
        raise TransportExecError(out, err.decode(errors="replace"))
    lines = out.decode(errors="replace").strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def run(t, code: str, timeout: float = 30) -> str:
    """Run `code` on the board and return what it printed."""
    from mpremote.transport import TransportExecError

    out, err = t.exec_raw(code, timeout=timeout)
    if err:
        raise TransportExecError(out, err.decode(errors="replace"))
    return out.decode(errors="replace")
