"""Test input: audio from the serial link in place of the microphone (HIL tests only).

The host's HIL suite enters it with one raw-REPL call,

    import voicenode.testinput as t; t.run()

and streams int16 PCM as text lines on stdin. Binary is not safe on a REPL link (0x03 is
Ctrl-C, 0x04 ends the raw REPL's input), so the samples travel as base64. The samples go
through the node's own pipeline (`voicenode.node.Node.feed`), exactly where the microphone's
samples would go, and the node's events come back as the event log prints them. Nothing
stays enabled afterwards: the test input exists only for the duration of `run()`, it restores
the event log's hook on the way out (also on Ctrl-C), and it gives up by itself when the host
goes quiet, so an unplugged host never leaves the node stuck in it.

Records from the host (one kind byte, then its body; lengths are given, so the node reads
each record with `readinto` into a buffer made once, and a record is never split on a line):
    D<4 hex digits: n><n characters of base64 of little-endian int16 samples>\n
                        samples (at most _MAX_CHUNK of them)
    S\n                 status (heap, counters) without leaving
    R\n                 reset the pipeline (a new clip starts)
    Q\n                 quit
Any other byte where a record should start (a Ctrl-C, a new session's `\r\x01`) means the
host that started the stream is gone: the test input ends at once.
Lines to the host:
    HIL+ {json}        ready: version, rate, chunk limit
    {"t": .., "event": ..}  an event, as the event log prints it, followed by
    @<n>               the number of samples fed when that event was emitted
    A<n>               one record done; n samples fed in total
    S{json}            the status, as voicenode.status() returns it
    HIL- {json}        finished (quit, end of input, timeout, interrupted or error)
"""

import sys
import time

import micropython
from micropython import const

import voicenode

# samples per D record: 1 KB of PCM, 1368 characters of base64. Small, so that the two
# buffers fit the holes of a full, fragmented heap (a node with wake words and commands)
_MAX_CHUNK = const(512)
_MAX_B64 = const(1368)
_SUB = const(160)  # samples fed to the node per call: 10 ms at 16 kHz, the event resolution
_TIMEOUT_MS = const(10000)  # no line for this long: the host is gone, give up

_pos = 0  # samples fed since run() started (read by _Tag when an event is emitted)


@micropython.viper
def b64_into(src: ptr8, n: int, dst: ptr8) -> int:
    """Decode n base64 characters (n a multiple of 4) into dst, allocating nothing (a 2 KB
    `a2b_base64` result per record fragments a full heap). Returns the bytes written, or -1
    at a character that is not base64."""
    o = 0
    i = 0
    while i < n:
        acc = 0
        pad = 0
        j = 0
        while j < 4:
            c = src[i + j]
            if c >= 65 and c <= 90:
                v = c - 65
            elif c >= 97 and c <= 122:
                v = c - 71
            elif c >= 48 and c <= 57:
                v = c + 4
            elif c == 43:
                v = 62
            elif c == 47:
                v = 63
            elif c == 61 and j >= 2:
                v = 0
                pad += 1
            else:
                return -1
            acc = (acc << 6) | v
            j += 1
        dst[o] = (acc >> 16) & 0xFF
        if pad < 2:
            dst[o + 1] = (acc >> 8) & 0xFF
        if pad < 1:
            dst[o + 2] = acc & 0xFF
        o += 3 - pad
        i += 4
    return o


class _Tag:
    """The event log's copy stream during run(): it tags each event with the sample count."""

    def write(self, s):
        print("@%d" % _pos)


def _rate():
    try:
        from voicenode.dsp import params

        return params.SAMPLE_RATE
    except (ImportError, AttributeError):
        return 16000


def _make_node():
    from voicenode import node as _node_mod

    # The node module may keep the node it runs (a warm pipeline with its models loaded);
    # reuse it so an injection sees the very same state as the microphone would.
    for name in ("current", "instance", "get"):
        obj = getattr(_node_mod, name, None)
        if obj is None:
            continue
        if callable(obj) and not hasattr(obj, "feed"):
            obj = obj()
        if obj is not None and hasattr(obj, "feed"):
            return obj
    return _node_mod.Node()


def run(node=None, timeout_ms=_TIMEOUT_MS):
    """Feed PCM lines from stdin to the node until Q, end of input or timeout_ms of silence.

    Args:
        node: the object to feed (has `feed(samples)`); default: the node module's node.
        timeout_ms: give up after this long without a line from the host.

    Returns:
        The number of samples fed.
    """
    global _pos
    import json
    import select
    from array import array

    from voicenode.actions import eventlog

    _pos = 0
    reason = "quit"
    detail = None
    saved_out = eventlog._out
    stdin = sys.stdin
    read = getattr(stdin, "buffer", stdin).readinto  # type: ignore[misc]  # sys.stdin.buffer on the chip
    one = bytearray(1)
    head = bytearray(5)  # 4 hex digits and, for the short records, room to spare
    body = bytearray(_MAX_B64 + 1)  # base64 and its newline
    # a record's samples, decoded in place (+2: _MAX_B64 characters decode to 1026 bytes)
    pcm = array("h", bytes(2 * _MAX_CHUNK + 2))
    samples = memoryview(pcm)
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    try:
        if node is None:
            node = _make_node()
        eventlog._out = _Tag()  # type: ignore[assignment]
        print(
            "HIL+ "
            + json.dumps(
                {"version": voicenode.__version__, "rate": _rate(), "max_chunk": _MAX_CHUNK}
            )
        )
        while True:
            if not poller.poll(timeout_ms):
                reason = "timeout"
                break
            if not read(one, 1):
                reason = "eof"
                break
            kind = one[0]
            if kind == 0x44:  # D
                if read(head, 4) != 4:
                    reason = "eof"
                    break
                n64 = int(bytes(head[:4]), 16)
                if n64 > _MAX_B64:
                    reason = "error"
                    detail = "record of %d base64 characters > %d" % (n64, _MAX_B64)
                    break
                if read(body, n64 + 1) != n64 + 1:
                    reason = "eof"
                    break
                got = -1 if n64 & 3 else b64_into(body, n64, pcm)
                if got < 0:
                    reason = "error"
                    detail = "record of %d characters is not base64" % n64
                    break
                n = got // 2
                i = 0
                while i < n:
                    j = min(i + _SUB, n)
                    _pos += j - i
                    node.feed(samples[i:j])
                    i = j
                print("A%d" % _pos)
            elif kind == 0x53:  # S
                read(one, 1)
                print("S" + json.dumps(voicenode.status(out=False)))
            elif kind == 0x52:  # R
                read(one, 1)
                if hasattr(node, "reset"):
                    node.reset()
                print("A%d" % _pos)
            elif kind == 0x51:  # Q
                read(one, 1)
                break
            elif kind == 0x0A:  # a stray newline between records
                continue
            else:  # a Ctrl-C or a new session: the host that started this is gone
                reason = "interrupted"
                detail = "byte 0x%02x where a record should start" % kind
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    except Exception as e:  # noqa: BLE001 - reported to the host, then the REPL gets it back
        reason = "error"
        detail = "%s: %s" % (type(e).__name__, e)
    finally:
        eventlog._out = saved_out
        poller.unregister(stdin)
    info = {"reason": reason, "samples": _pos, "ms": time.ticks_ms()}
    if detail is not None:
        info["detail"] = detail
    print("HIL- " + json.dumps(info))
    return _pos
