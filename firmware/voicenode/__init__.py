"""The private voice node: wake word and commands heard on the chip, never sent anywhere.

In the REPL:

    >>> import voicenode
    >>> voicenode.status()
"""

import gc
import time

__version__ = "0.1.0"

# Counters that every module bumps (overruns, clipped samples, detections...). A dict of
# small ints: reading or bumping an existing key allocates nothing.
counters = {}  # type: dict[str, int]

_boot_ms = time.ticks_ms()


def count(name, n=1):
    counters[name] = counters.get(name, 0) + n


def uptime_s():
    return time.ticks_diff(time.ticks_ms(), _boot_ms) // 1000


def board_name():
    try:
        from voicenode.hal import board_name as _name

        return _name()
    except ImportError:
        return "unknown"


def status(out=None):
    """Print version, board, heap, uptime and counters; return them as a dict."""
    gc.collect()
    info = {
        "version": __version__,
        "board": board_name(),
        "heap_free": gc.mem_free(),
        "heap_alloc": gc.mem_alloc(),
        "uptime_s": uptime_s(),
        "counters": dict(counters),
    }
    if out is None:
        for k in ("version", "board", "heap_free", "heap_alloc", "uptime_s"):
            print("%-10s %s" % (k, info[k]))
        for k in sorted(counters):
            print("  %-20s %d" % (k, counters[k]))
    return info
