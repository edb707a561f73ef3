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


#: What a board at its REPL prints: the banner after a (soft) reset, before the prompt.
_BANNER = "MicroPython "
#: The ESP32's ROM prints this first after a hard reset ("rst:0x1 (POWERON_BOOT),boot:...").
_CHIP_RESET = "rst:"
#: The firmware's own status lines that are not events (firmware/main.py): no app, stopped.
_STATUS = "voicenode"

NO_NODE = (
    "the board restarted to its REPL without starting the node (no event since the reset):"
    " is the firmware's app on it? `voicenode deploy` puts it there"
)


class _Notes:
    """Tells the user what the event log alone would hide: the firmware's status lines, and
    a board that restarts to its REPL without starting the node (an empty flash prints no
    event at all, so a monitor on it would otherwise stay silent)."""

    def __init__(self, say):
        self.say = say
        self.reset_seen = False  # the banner of Ctrl-B (friendly REPL) comes before a reset
        self.events_since_reset = 0
        self.told = False

    def line(self, text: str, is_event: bool) -> None:
        if is_event:
            self.events_since_reset += 1
        elif text.startswith(_STATUS):
            self.say(text)
        elif "soft reboot" in text or text.startswith(_CHIP_RESET):
            self.reset_seen, self.events_since_reset = True, 0
        elif text.startswith(_BANNER) and self.reset_seen and not self.events_since_reset:
            if not self.told:
                self.told = True
                self.say(NO_NODE)


def events(path: str, seconds: float | None = None, reset: bool = False, notes=None):
    """Yield the event lines (JSON text, as the node printed them) arriving on `path`.

    Args:
        path: a resolved port path.
        seconds: stop after this long (None: until interrupted).
        reset: soft-reset the board first (Ctrl-C, Ctrl-D), so the boot events show.
        notes: called with a line of text for the user (not an event): the firmware's status
            lines ("voicenode: no app installed ...") and, once, `NO_NODE` when the board
            shows its REPL banner with no event since its reset.

    Raises:
        CommandError: busy port, or the board drops off ("stopped answering").
    """
    import serial

    t = transport.open_serial(path)
    link = t.serial
    deadline = None if seconds is None else time.monotonic() + seconds
    buf = b""
    told = _Notes(notes) if notes is not None else None
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
                is_event = parse_event(text) is not None
                if told is not None:
                    told.line(text, is_event)
                if is_event:
                    yield text
    finally:
        try:
            t.close()
        except Exception:  # noqa: BLE001 - a board that is gone cannot be closed politely
            pass
