"""The node's event log: one JSON object per line on the serial console.

Every event is printed at once as `{"t": <seconds since boot>, "event": kind, ...}` (the host's
`voicenode monitor` prints exactly those lines) and kept in a small ring so the last events
can be read from the REPL after the fact:

    >>> from voicenode.actions import eventlog
    >>> eventlog.last()          # oldest first, as a list of JSON strings

The ring is preallocated (a fixed bytearray of fixed-size slots) and drops the oldest event
when full. Formatting an event builds a string, so `emit` is for events (a detection, an
error, a boot), not for the audio hot path.
"""

import json
import time

from micropython import const

_SLOTS = const(32)  # events kept for last()
_SLOT_BYTES = const(160)  # longer events are truncated in the ring (never on the console)

_boot_ms = time.ticks_ms()
# Preallocated ring: _SLOTS slots of _SLOT_BYTES, plus the used length of each slot.
_ring = bytearray(_SLOTS * _SLOT_BYTES)
_lens = bytearray(_SLOTS)
_head = 0  # next slot to write
_count = 0  # number of valid slots (<= _SLOTS)
_out = None  # a stream with write() to copy events to (tests); None: print only
# Called as f(kind, fields) after every event: the actions (MQTT, LED, outputs) listen here.
_listeners = []  # type: list
_depth = 0  # listeners may emit events too; past _MAX_DEPTH those are only printed and kept
_MAX_DEPTH = const(3)


def add_listener(f):
    """Call `f(kind, fields)` after every event (once, however often it is added)."""
    if f not in _listeners:
        _listeners.append(f)


def clear_listeners():
    """Forget every listener (tests; a node restarted in the REPL)."""
    del _listeners[:]


def uptime():
    """Seconds since boot (since this module was first imported), as a float."""
    return time.ticks_diff(time.ticks_ms(), _boot_ms) / 1000


def emit(kind, **fields):
    """Print one event as a JSON line and keep it in the ring.

    Args:
        kind: the event name, e.g. "boot", "wake", "command", "error".
        **fields: JSON-serialisable values added to the event.

    Returns:
        The JSON line (without the newline).
    """
    global _head, _count, _depth
    # "t" and "event" come first so the lines read well; MicroPython's dict order is not
    # insertion order, so the head is written by hand.
    line = '{"t": %s, "event": %s' % (json.dumps(round(uptime(), 3)), json.dumps(kind))
    if fields:
        line += ", " + json.dumps(fields)[1:]
    else:
        line += "}"
    # Kept before it is printed: a host that reads the line and interrupts the node at once
    # (Ctrl-C lands at the next bytecode after print) still finds it in the ring.
    data = line.encode()
    n = min(len(data), _SLOT_BYTES)
    off = _head * _SLOT_BYTES
    _ring[off : off + n] = data[:n]
    _lens[_head] = n
    _head = (_head + 1) % _SLOTS
    if _count < _SLOTS:
        _count += 1
    print(line)
    if _out is not None:
        _out.write(line + "\n")
    if _listeners and _depth < _MAX_DEPTH:
        _depth += 1
        try:
            for f in _listeners:
                f(kind, fields)
        finally:
            _depth -= 1
    return line


def last(n=_SLOTS):
    """The last `n` events kept in the ring, oldest first, as JSON strings."""
    n = min(n, _count)
    out = []
    for i in range(n):
        slot = (_head - n + i) % _SLOTS
        off = slot * _SLOT_BYTES
        raw = bytes(_ring[off : off + _lens[slot]])
        try:
            out.append(raw.decode())
        except UnicodeError:  # truncated in the middle of a multi-byte character
            out.append(raw[:-1].decode() if len(raw) > 1 else "")
    return out


def clear():
    """Forget the kept events."""
    global _head, _count
    _head = 0
    _count = 0
