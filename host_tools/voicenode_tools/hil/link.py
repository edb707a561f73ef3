"""The HIL suite's link to one node: raw-REPL calls with deadlines, injection, diagnosis.

`NodeLink` talks to a real port or the virtual board the same way (the pty of the virtual
board is a serial port to it). Every read has a deadline and, while it waits, checks that
the other end still exists, so a dead node is a clear `NodeGone` ("the node on /dev/pts/7
stopped answering: its process died (signal 9)") within a fraction of a second, never a hang.

It builds on mpremote's `SerialTransport` (opened through `voicenode_tools.device.transport`)
for the port and for entering the raw REPL, and runs the raw-REPL exchange itself so that it
can keep its own deadlines while a long call (an injection) streams in both directions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

#: How long one raw-REPL call may stay silent before the node counts as hung (seconds).
REPLY_TIMEOUT = 30.0
#: How often a waiting read checks that the other end is still there (seconds).
POLL = 0.05
#: What a node prints when it restarts: MicroPython's soft reboot, the ESP32 boot ROM's reset
#: reason (a hard reset, the watchdog, a brown-out; seen through a UART bridge, and on the
#: virtual board).
REBOOT_SIGNS = (re.compile(rb"MPY: soft reboot"), re.compile(rb"\nrst:0x[0-9a-f]+(?: \(\w+\))?"))


class HilError(Exception):
    """Something is wrong with the node or the link; the message says what, for a person."""


class NodeGone(HilError):
    """The node stopped answering in the middle of an exchange (died, unplugged, hung)."""


class NodeError(HilError):
    """The node answered with a Python exception."""

    def __init__(self, message, traceback=""):
        super().__init__(message)
        self.traceback = traceback


def board_death(board) -> str | None:
    """Why a virtual board is gone ("its process died (killed)"), or None if it runs.

    Understands `VirtualBoard.state` ("running", "stopped", "unplugged" after `kill()`), and
    anything else that exposes its child process (`proc` with `poll()`).
    """
    if board is None:
        return None
    state = getattr(board, "state", None)
    if isinstance(state, str):
        if state == "running":
            return None
        if state == "unplugged":
            return "its process died (killed: the plug was pulled)"
        if state == "stopped":
            return "the virtual board was stopped"
        if state == "new":
            return "the virtual board was never started"
        return f"the virtual board is {state}"
    proc = getattr(board, "proc", None)
    code = proc.poll() if proc is not None and hasattr(proc, "poll") else None
    if code is None:
        return None
    if code < 0:
        return f"its process died (signal {-code})"
    return f"its process died (exit status {code})"


def parse_event(line: str) -> dict:
    """One event line as a dict; a line the node's ring truncated keeps its head.

    The event log keeps at most 160 bytes of each event in its ring, so a long event (an
    error message) comes back from `eventlog.last()` cut off: its "t" and "event" are still
    there, and the rest is kept as text under "truncated".
    """
    try:
        ev = json.loads(line)
        if isinstance(ev, dict):
            return ev
    except ValueError:
        pass
    ev = {"truncated": line}
    m = re.match(r'\{"t": ([0-9.eE+-]+), "event": "([^"]*)"', line)
    if m:
        ev["t"] = float(m.group(1))
        ev["event"] = m.group(2)
    return ev


@dataclass
class Injection:
    """What came back from streaming a clip into the node.

    Attributes:
        samples: samples the node acknowledged.
        events: (sample position, event dict) for every event emitted during the stream.
        statuses: (sample position, status dict) for every status asked for mid-stream.
        reason: why the test input ended on the node ("quit", "timeout", "error", ...).
        detail: the error detail when reason is "error".
        seconds: wall-clock time the stream took.
        other: lines the node printed that are neither events nor protocol.
    """

    samples: int = 0
    events: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    reason: str = ""
    detail: str = ""
    seconds: float = 0.0
    other: list = field(default_factory=list)

    def of_kind(self, kind: str) -> list:
        """(position, event) pairs of one event kind, e.g. "wake"."""
        return [(p, e) for p, e in self.events if e.get("event") == kind]


class NodeLink:
    """A raw-REPL connection to one node, with deadlines and a diagnosis on failure.

    Args:
        path: the serial device (a real port or the virtual board's pty).
        board: the `VirtualBoard` behind `path`, if any (used to tell "its process died").
        soft_reset: soft-reset when entering the raw REPL (stops a running node, clean heap).
    """

    def __init__(self, path: str, board=None, soft_reset: bool = False):
        from voicenode_tools.device import transport

        self.path = path
        self.board = board
        self._t = None
        try:
            self._t = transport.open_serial(path)
        except Exception as e:  # CommandError with the reason (busy, missing, permission)
            raise HilError(str(e)) from e
        self._t.serial.timeout = POLL
        self._buf = b""
        self._seen = b""  # the last bytes the node printed, for the message of a hang
        self._enter_raw(soft_reset)

    # -- the wire ---------------------------------------------------------------------------

    def _why_gone(self) -> str:
        death = board_death(self.board)
        if death:
            return death
        if os.name != "nt" and not os.path.exists(self.path):
            return "the port disappeared (unplugged?)"
        last = f"; the last it printed: {self._seen!r}" if self._seen else ""
        return f"no reply (hung, reset, or another program took the port?){last}"

    def _gone(self, doing: str, cause: Exception | None = None) -> NodeGone:
        why = self._why_gone()
        err = NodeGone(f"the node on {self.path} stopped answering while {doing}: {why}")
        err.__cause__ = cause
        return err

    def _write(self, data: bytes, doing: str) -> None:
        if board_death(self.board):
            raise self._gone(doing)
        try:
            self._t.serial.write(data)
        except Exception as e:  # SerialException, OSError (EIO when the pty master closed)
            raise self._gone(doing, e) from e

    def _read_some(self, doing: str) -> bytes:
        try:
            n = self._t.serial.in_waiting
            data = self._t.serial.read(max(1, n))
        except Exception as e:
            raise self._gone(doing, e) from e
        if data:
            self._seen = (self._seen + data)[-60:]
        return data

    def _read_until(
        self, ending: bytes, timeout: float, doing: str, reboots: bool = False
    ) -> bytes:
        """Bytes up to and including `ending`; NodeGone after `timeout` s of silence.

        With `reboots`, a node that restarts before `ending` (see REBOOT_SIGNS) is NodeGone
        at once: what it was doing is lost, and no end mark will come.
        """
        last = time.monotonic()
        while True:
            i = self._buf.find(ending)
            if reboots:
                self._check_reboot(self._buf if i < 0 else self._buf[:i], doing)
            if i >= 0:
                out = self._buf[: i + len(ending)]
                self._buf = self._buf[i + len(ending) :]
                return out
            last = self._take_more(last, timeout, doing)

    def _readline(self, timeout: float, doing: str) -> bytes:
        """One line (without CR LF), or the raw-REPL end mark b"\\x04" if it comes first."""
        last = time.monotonic()
        while True:
            nl = self._buf.find(b"\n")
            eot = self._buf.find(b"\x04")
            if eot >= 0 and (nl < 0 or eot < nl):
                line = self._buf[:eot]
                if line.strip():  # text before the end mark: return it as a line first
                    self._buf = self._buf[eot:]
                    return line.rstrip(b"\r")
                self._buf = self._buf[eot + 1 :]
                return b"\x04"
            if nl >= 0:
                line = self._buf[:nl]
                self._buf = self._buf[nl + 1 :]
                return line.rstrip(b"\r")
            last = self._take_more(last, timeout, doing)

    def _take_more(self, last: float, timeout: float, doing: str) -> float:
        """Add what has come to the buffer and return when data last came (`last` if none);
        NodeGone when the board died or has been silent for `timeout` s since `last`."""
        data = self._read_some(doing)
        now = time.monotonic()
        if data:
            self._buf += data
            return now
        if board_death(self.board) or now - last > timeout:
            raise self._gone(doing)
        return last

    def _enter_raw(self, soft_reset: bool, timeout: float = 10.0) -> None:
        """Interrupt whatever runs and enter the raw REPL (like mpremote, with deadlines)."""
        doing = "entering the raw REPL"
        for attempt in (1, 2):
            # One Ctrl-C, as mpremote sends: a second one can land in the cleanup of the first.
            self._write(b"\r\x03", doing)
            time.sleep(0.1)
            with contextlib.suppress(Exception):
                self._t.serial.reset_input_buffer()
            self._buf = b""
            self._write(b"\r\x01", doing)
            try:
                self._read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout / 2, doing)
                break
            except NodeGone:
                # Once, a board that had just started never answered its first Ctrl-A
                # (a clean-clone CI run; the keys may land before its REPL reads them):
                # a live board gets the keys once more before it counts as gone.
                if attempt == 2 or board_death(self.board):
                    raise
        if soft_reset:
            self._write(b"\x04", "soft-resetting")
            self._read_until(b"soft reboot\r\n", timeout, "soft-resetting")
            try:
                self._read_until(b"raw REPL; CTRL-B to exit\r\n>", 3.0, "soft-resetting")
            except NodeGone:
                # The board came back in the friendly REPL and ran main.py (the virtual board
                # does when a Ctrl-C landed in its boot): interrupt it and enter raw again.
                if board_death(self.board):
                    raise
                self._enter_raw(False, timeout)
        self._t.in_raw_repl = True

    def _check_reboot(self, text: bytes, doing: str) -> None:
        for sign in REBOOT_SIGNS:
            m = sign.search(text)
            if m:
                what = m.group().strip().decode(errors="replace")
                raise NodeGone(
                    f"the node on {self.path} restarted while {doing} (it printed {what!r});"
                    " what it was doing is lost"
                )

    def _start(self, code: str, doing: str) -> None:
        """Send `code` to the raw REPL prompt and wait for its "OK" (a node that restarts
        first is NodeGone at once: the code is lost with it)."""
        data = code.encode()
        for i in range(0, len(data), 256):
            self._write(data[i : i + 256], doing)
        self._write(b"\x04", doing)
        self._read_until(b"OK", 10.0, doing, reboots=True)

    def _finish(self, timeout: float, doing: str) -> tuple[str, str]:
        """Read a call's output and error output and the next prompt."""
        out = self._read_until(b"\x04", timeout, doing, reboots=True)[:-1]
        err = self._read_until(b"\x04", timeout, doing, reboots=True)[:-1]
        self._read_until(b">", timeout, doing)
        return out.decode(errors="replace"), err.decode(errors="replace")

    # -- calls ------------------------------------------------------------------------------

    def exec(self, code: str, timeout: float = REPLY_TIMEOUT, doing: str | None = None) -> str:
        """Run `code` on the node and return what it printed.

        Raises:
            NodeError: the code raised on the node (the message is its last traceback line).
            NodeGone: the node stopped answering.
        """
        doing = doing or f"running {code.splitlines()[0][:40]!r}"
        self._start(code, doing)
        out, err = self._finish(timeout, doing)
        if err.strip():
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            raise NodeError(f"the node on {self.path} raised {lines[-1]}", err)
        return out

    def json(self, code: str, timeout: float = REPLY_TIMEOUT, doing: str | None = None):
        """Run `code`, which prints one JSON value as its last line; return the value."""
        out = self.exec(code, timeout, doing)
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        if not lines:
            raise HilError(f"the node on {self.path} printed nothing for {code!r}")
        return json.loads(lines[-1])

    def status(self) -> dict:
        """`voicenode.status()` on the node: version, board, heap_free/alloc, uptime, counters."""
        return self.json(
            "import voicenode, json\nprint(json.dumps(voicenode.status(out=False)))",
            doing="reading voicenode.status()",
        )

    def events(self) -> list:
        """The node's kept events (the event log's ring), oldest first, as dicts."""
        lines = self.json(
            "import json\nfrom voicenode.actions import eventlog\nprint(json.dumps(eventlog.last()))",
            doing="reading the event log",
        )
        return [parse_event(ln) for ln in lines]

    def clear_events(self) -> None:
        """Forget the node's kept events."""
        self.exec("from voicenode.actions import eventlog\neventlog.clear()")

    def write_file(self, path: str, data: bytes) -> None:
        """Write `data` to `path` on the node's flash (through the REPL, base64 in pieces)."""
        self.exec(f"_f = open({path!r}, 'wb')", doing=f"writing {path}")
        for i in range(0, len(data), 512):
            piece = base64.b64encode(data[i : i + 512]).decode()
            self.exec(
                f"import binascii\n_f.write(binascii.a2b_base64({piece!r}))",
                doing=f"writing {path}",
            )
        self.exec("_f.close()\ndel _f", doing=f"writing {path}")

    def read_file(self, path: str, piece: int = 2048) -> bytes:
        """The content of `path` on the node's flash (read in pieces: the heap may be small)."""
        out = b""
        while True:
            text = self.json(
                f"import binascii, json\nwith open({path!r}, 'rb') as f:\n"
                f" f.seek({len(out)})\n"
                f" print(json.dumps(binascii.b2a_base64(f.read({piece})).decode()))",
                doing=f"reading {path}",
            )
            data = base64.b64decode(text)
            out += data
            if len(data) < piece:
                return out

    def soft_reset(self, timeout: float = 20.0) -> None:
        """Ctrl-D in the raw REPL: a soft reset (boot.py runs; main.py does not in raw REPL)."""
        self._write(b"\x04", "soft-resetting")
        self._read_until(b"soft reboot\r\n", timeout, "soft-resetting")
        self._read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout, "soft-resetting")

    def boot(
        self,
        timeout: float = 20.0,
        quiet: float = 1.5,
        until: tuple = (b">>> ", b'"event": "listening"'),
    ) -> str:
        """Soft reset in the friendly REPL, so that main.py runs as it does at power on.

        Waits until main.py returns to the REPL or the node says it is listening (any of
        `until` in the output), or for `quiet` seconds without output; then interrupts it
        and enters the raw REPL again.

        Returns:
            What the board printed from the reset on.
        """
        self._write(b"\r\x02", "leaving the raw REPL")
        self._read_until(b">>> ", timeout, "leaving the raw REPL")
        self._write(b"\x04", "soft-resetting")
        doing = "booting (main.py)"
        text = self._read_until(b"soft reboot\r\n", timeout, doing)
        start = last = time.monotonic()
        while not any(u in self._buf for u in until):
            data = self._read_some(doing)
            now = time.monotonic()
            if data:
                self._buf += data
                last = now
                continue
            if board_death(self.board):
                raise self._gone(doing)
            if now - last > quiet:
                break
            if now - start > timeout:
                raise self._gone(doing)
        text += self._buf
        self._buf = b""
        self._enter_raw(False)
        return text.decode(errors="replace")

    def hard_reset(self, timeout: float = 30.0) -> None:
        """`machine.reset()`, then reconnect to the node once it is back.

        On a real board the USB port disappears and comes back; on the virtual board the
        process restarts on the same pty.
        """
        self._write(b"import machine\r\nmachine.reset()\r\n\x04", "hard-resetting")
        with contextlib.suppress(Exception):
            self._t.close()
        deadline = time.monotonic() + timeout
        last = None
        time.sleep(0.5)
        while time.monotonic() < deadline:
            try:
                self.__init__(self.path, self.board)
                return
            except HilError as e:
                last = e
                time.sleep(0.5)
        raise NodeGone(f"the node on {self.path} did not come back after a hard reset: {last}")

    def close(self) -> None:
        """Leave the raw REPL and close the port (quietly if the node is already gone)."""
        if self._t is None:
            return
        with contextlib.suppress(Exception):
            self._t.serial.write(b"\r\x02")
        with contextlib.suppress(Exception):
            self._t.close()
        self._t = None

    def drop(self) -> None:
        """Close the port at once, whatever is in flight (the host unplugging)."""
        if self._t is not None:
            with contextlib.suppress(Exception):
                self._t.serial.close()
            self._t = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- injection --------------------------------------------------------------------------

    def inject(
        self,
        pcm: np.ndarray,
        chunk: int = 1024,
        window: int = 4,
        status_every: int = 0,
        reset: bool = True,
        stop_after: int | None = None,
        timeout: float = REPLY_TIMEOUT,
    ) -> Injection:
        """Stream int16 PCM into the node's test input in place of the microphone.

        Args:
            pcm: mono int16 samples at the node's rate.
            chunk: samples per line (at most the node's max_chunk).
            window: lines in flight before waiting for an acknowledgement (1 is safe on any
                link; more hides the round trip on USB and the virtual board).
            status_every: ask for the node's status every this many chunks (0: never).
            reset: reset the pipeline first (a clip starts from silence).
            stop_after: drop the port after this many samples (the host unplugging).
            timeout: seconds without any reply before the node counts as hung.

        Returns:
            An `Injection` with every event at the sample position where it was emitted.
        """
        pcm = np.ascontiguousarray(pcm, dtype="<i2")
        pieces = (pcm[i : i + chunk] for i in range(0, len(pcm), chunk))
        return self.stream(pieces, window, status_every, reset, stop_after, timeout, chunk)

    def stream(
        self,
        pieces,
        window: int = 4,
        status_every: int = 0,
        reset: bool = True,
        stop_after: int | None = None,
        timeout: float = REPLY_TIMEOUT,
        chunk: int = 1024,
        on_event=None,
        on_status=None,
        keep: bool = True,
    ) -> Injection:
        """Stream an iterable of int16 arrays (a piece longer than the node's max_chunk goes
        as several records).

        Like `inject`, for streams too long to hold: `on_event(pos, event)` and
        `on_status(pos, status)` are called as they arrive, and with `keep=False` the
        returned `Injection` does not accumulate them.
        """
        doing = "streaming audio into the test input"
        t0 = time.monotonic()
        res = Injection()
        self._start("import voicenode.testinput as _ti\n_ti.run()", doing)
        ready = self._expect_ready(timeout, res)
        max_chunk = int(ready.get("max_chunk", chunk))

        def lines():
            if reset:
                yield b"R\n", 0
            for k, piece in enumerate(pieces):
                piece = np.ascontiguousarray(piece, dtype="<i2")
                for i in range(0, len(piece), max_chunk):  # records of the node's size
                    rec = piece[i : i + max_chunk]
                    b64 = base64.b64encode(rec.tobytes())
                    yield b"D%04x" % len(b64) + b64 + b"\n", len(rec)
                if status_every and (k + 1) % status_every == 0:
                    yield b"S\n", 0
            yield b"Q\n", 0

        source = lines()
        exhausted = False
        in_flight = 0
        fed = 0  # samples in the lines sent so far
        pending = []  # events waiting for their @position line
        finished = False
        while not finished:
            while not exhausted and in_flight < window:
                try:
                    line, n = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if stop_after is not None and fed >= stop_after:
                    self.drop()
                    res.reason = "dropped"
                    res.seconds = time.monotonic() - t0
                    return res
                self._write(line, doing)
                fed += n
                if line[:1] != b"Q":
                    in_flight += 1
            raw = self._readline(timeout, doing)
            if raw == b"\x04":  # run() ended without its "HIL-" line: it crashed
                err = self._read_until(b"\x04", timeout, doing)[:-1].decode(errors="replace")
                self._read_until(b">", timeout, doing)
                raise NodeError(f"the test input on {self.path} failed: {err.strip()}", err)
            text = raw.decode(errors="replace")
            if text.startswith("A"):
                res.samples = int(text[1:])
                in_flight -= 1
            elif text.startswith("@"):
                pos = int(text[1:])
                for ev in pending:
                    if keep:
                        res.events.append((pos, ev))
                    if on_event:
                        on_event(pos, ev)
                pending = []
            elif text.startswith("S{"):
                st = json.loads(text[1:])
                if keep:
                    res.statuses.append((res.samples, st))
                if on_status:
                    on_status(res.samples, st)
                in_flight -= 1
            elif text.startswith("HIL- "):
                info = json.loads(text[5:])
                res.reason = info.get("reason", "")
                res.detail = info.get("detail", "")
                res.samples = info.get("samples", res.samples)
                finished = True
            elif text.startswith("{"):
                try:
                    pending.append(json.loads(text))
                except ValueError:
                    res.other.append(text)
            elif text.strip():
                res.other.append(text)
        for ev in pending:  # events without a position (should not happen): at the end
            res.events.append((res.samples, ev))
            if on_event:
                on_event(res.samples, ev)
        out, err = self._finish(timeout, doing)
        if err.strip():
            raise NodeError(f"the test input on {self.path} failed: {err.strip()}", err)
        res.seconds = time.monotonic() - t0
        if res.reason == "error":
            raise NodeError(f"the test input on {self.path} stopped: {res.detail}")
        return res

    def _expect_ready(self, timeout: float, res: Injection) -> dict:
        doing = "starting the test input"
        while True:
            raw = self._readline(timeout, doing)
            if raw == b"\x04":
                err = self._read_until(b"\x04", timeout, doing)[:-1].decode(errors="replace")
                self._read_until(b">", timeout, doing)
                lines = [ln for ln in err.strip().splitlines() if ln.strip()]
                raise NodeError(
                    f"the test input on {self.path} did not start: "
                    f"{lines[-1] if lines else 'no error text'}",
                    err,
                )
            text = raw.decode(errors="replace")
            if text.startswith("HIL+ "):
                return json.loads(text[5:])
            if text.startswith("{"):  # an event while the node was made (a model refused)
                with contextlib.suppress(ValueError):
                    res.events.append((0, json.loads(text)))
                    continue
            if text.startswith("HIL- "):
                info = json.loads(text[5:])
                # run() ended before it began: it still returns, so finish the call.
                self._finish(timeout, doing)
                raise NodeError(
                    f"the test input on {self.path} did not start: {info.get('detail', info)}"
                )
            if text.strip():
                res.other.append(text)
