"""Acoustic mode: clips reach the node through a microphone, not the test input.

On a real board the host plays the clip through its loudspeaker (`sounddevice`, an optional
import: `pip install sounddevice`, with PortAudio from `apt-get install libportaudio2`) while
the node runs its normal loop (`voicenode.node.main()`) on its own I2S microphone; the events
are read from the console as the node prints them, and an event's position in the clip is
its arrival time minus the time playback started.

On the virtual board "the room" is a TCP stream into its simulated microphone: a feeder
thread sends quiet room noise continuously and the clip when asked; an event's position is
how much of the stream the microphone had delivered when the event arrived.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import numpy as np

from .link import Injection

#: How long the node keeps listening after the end of the clip (seconds).
TAIL = 1.5


class SimMicFeeder:
    """The virtual board's "room": a TCP source for its microphone (`tcp:127.0.0.1:PORT`).

    Args:
        rate: sample rate of the stream.
        speed: how much faster than real time it is fed (the board's `realtime=False`
            microphone takes it as fast as it comes).
        noise_rms: level of the room noise between clips.
    """

    def __init__(self, rate: int = 16000, speed: float = 4.0, noise_rms: float = 60.0):
        self.rate = rate
        self.speed = speed
        self.noise_rms = noise_rms
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(4)
        self.spec = f"tcp:127.0.0.1:{self._srv.getsockname()[1]}"
        self._lock = threading.Lock()
        self._queue = []  # clips waiting to be played
        self.sent = 0  # samples sent since the microphone connected
        self.clip_start = None  # self.sent when the current clip began
        self.playing = False
        self._closed = False
        self._rng = np.random.default_rng(0)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def play(self, pcm: np.ndarray) -> None:
        """Queue a clip; `playing` stays True until it has been sent."""
        with self._lock:
            self._queue.append(np.ascontiguousarray(pcm, dtype="<i2"))
            self.playing = True

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self.sent = 0
            with contextlib.suppress(OSError):
                self._feed(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _feed(self, conn):
        block = self.rate // 50  # 20 ms
        t0 = time.monotonic()
        sent_at_t0 = self.sent
        clip = None
        i = 0
        while not self._closed:
            if clip is None:
                with self._lock:
                    if self._queue:
                        clip = self._queue.pop(0)
                        i = 0
                        self.clip_start = self.sent
            if clip is not None:
                piece = clip[i : i + block]
                i += len(piece)
                if i >= len(clip):
                    clip = None
                    with self._lock:
                        self.playing = bool(self._queue)
            else:
                piece = np.clip(
                    np.round(self._rng.standard_normal(block) * self.noise_rms), -32768, 32767
                ).astype("<i2")
            conn.sendall(piece.tobytes())
            self.sent += len(piece)
            due = t0 + (self.sent - sent_at_t0) / (self.rate * self.speed)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self):
        self._closed = True
        with contextlib.suppress(OSError):
            self._srv.close()


def _run_node_and_read(link, until, on_line, doing="listening (the node's own loop)"):
    """Run `voicenode.node.main()` in the raw REPL, pass each printed line to `on_line`,
    and interrupt it with Ctrl-C when `until()` turns True."""
    link._start("import voicenode.node as _n\n_n.main()", doing)
    stopped = False
    while True:
        if not stopped and until():
            link._write(b"\x03", doing)
            stopped = True
        try:
            raw = link._readline(0.2, doing)
        except Exception:
            # 0.2 s without a line: fine while the node listens quietly.
            from .link import board_death

            if board_death(link.board):
                raise
            continue
        if raw == b"\x04":
            break
        on_line(raw.decode(errors="replace"))
    # error output (the KeyboardInterrupt) and the prompt
    link._read_until(b"\x04", 10, doing)
    link._read_until(b">", 10, doing)


def play_and_listen(target, link, pcm: np.ndarray, tail: float = TAIL, **_ignored) -> Injection:
    """Play `pcm` into the node's microphone and collect the events it prints meanwhile.

    Args:
        target: the plugin's `Target` (its `mic` feeder on the virtual board).
        link: a `NodeLink` to the node (in the raw REPL).
        pcm: the clip, int16 at the node's rate.
        tail: seconds to keep listening after the clip.

    Returns:
        An `Injection` whose event positions are samples from the start of the clip.
    """
    res = Injection()
    rate = 16000
    with contextlib.suppress(Exception):
        from .clips import rate as _rate

        rate = _rate()
    t0 = time.monotonic()
    state = {"started": None, "end": None}

    if target.sim:
        feeder = target.mic

        def start():
            feeder.play(pcm)
            state["started"] = True

        def position():
            consumed = target.board.mic_stats()["source_samples"]
            return consumed - (feeder.clip_start or 0)

        def done():
            if feeder.playing:
                return False
            if state["end"] is None:
                state["end"] = time.monotonic()
            return time.monotonic() - state["end"] > tail / feeder.speed + 0.5

    else:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as e:
            raise RuntimeError(
                "acoustic mode needs sounddevice and PortAudio: pip install sounddevice; "
                f"apt-get install libportaudio2 ({e})"
            ) from e

        def start():
            sd.play(pcm.astype(np.float32) / 32768.0, rate)
            state["started"] = time.monotonic()

        def position():
            return int((time.monotonic() - state["started"]) * rate)

        def done():
            return time.monotonic() - state["started"] > len(pcm) / rate + tail

    def until():
        if state["started"] is None:
            # give the node a moment to open its microphone, then play
            if time.monotonic() - t0 > 0.5:
                start()
            return False
        return done()

    def on_line(text):
        if text.startswith("{"):
            try:
                ev = json.loads(text)
            except ValueError:
                res.other.append(text)
                return
            if state["started"]:
                res.events.append((position(), ev))
            else:  # before the clip: the room, not the clip (kept, but not as its event)
                res.other.append(text)
        elif text.strip():
            res.other.append(text)

    _run_node_and_read(link, until, on_line)
    res.samples = len(pcm)
    res.reason = "acoustic"
    res.seconds = time.monotonic() - t0
    return res
