"""Reading the node's event log from its serial console.

The firmware (`voicenode.actions.eventlog.emit`) prints one JSON object per line, with at
least "t" and "event"; everything else on the console (REPL banners, tracebacks, prints) is
ignored here.
"""

from __future__ import annotations

import json
import time

from voicenode_tools.cli import CommandError

from . import transport


def parse_event(line: str) -> dict | None:
    """The event in one console line, or None if the line is not an event."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or "event" not in obj:
        return None
    return obj


def events(path: str, seconds: float | None = None, reset: bool = False):
    """Yield the event lines (JSON text, as the node printed them) arriving on `path`.

    Args:
        path: a resolved port path.
        seconds: stop after this long (None: until interrupted).
        reset: soft-reset the board first (Ctrl-C, Ctrl-D), so the boot events show.

    Raises:
        CommandError: busy port, or the board drops off ("stopped answering").
    """
    import serial

    t = transport.open_serial(path)
    link = t.serial
    deadline = None if seconds is None else time.monotonic() + seconds
    buf = b""
    try:
        if reset:
            link.write(b"\r\x03\x03\x02\x04")  # interrupt, friendly REPL, soft reset
        while deadline is None or time.monotonic() < deadline:
            link.timeout = (
                0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            )
            try:
                chunk = link.read(4096)
            except (serial.SerialException, OSError) as e:
                raise CommandError(transport.lost_message(path)) from e
            if not chunk:
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                text = raw.decode("utf-8", errors="replace").strip()
                if parse_event(text) is not None:
                    yield text
    finally:
        try:
            t.close()
        except Exception:  # noqa: BLE001 - a board that is gone cannot be closed politely
            pass
