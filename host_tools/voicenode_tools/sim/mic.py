"""The virtual board's microphone: audio sources and the I2S slot formatter.

A source is what the microphone "hears": a WAV file, a FIFO (`fifo:PATH`) or a TCP stream
(`tcp:HOST:PORT`). Streams may start with a WAV header; otherwise they carry raw signed 16-bit
little-endian mono samples at the I2S rate. When the source ends the microphone delivers
zeros (silence) and says so in its statistics.

Samples are held as int32 full scale (a 16-bit sample `s` is `s << 16`). A 16-bit I2S slot
carries `v >> 16`; a 32-bit slot carries the 24 most significant bits left-justified
(`v & ~0xFF`), like an INMP441.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np


class MicError(Exception):
    """The microphone source cannot be used (bad WAV, wrong rate, unreachable stream)."""


def _to_int32(raw: bytes, width: int) -> np.ndarray:
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.int32) << 16
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        return (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)
    if width == 4:
        return np.frombuffer(raw, dtype="<i4").astype(np.int32)
    raise MicError(f"unsupported sample width: {width * 8} bits")


class _Stream:
    """Reads interleaved int32 frames from a byte stream (file, FIFO or socket)."""

    def __init__(self, read, name, require_wav=False):
        self._read = read
        self.name = name
        self.rate = None  # None: raw stream, takes the I2S rate
        self.channels = 1
        self.width = 2
        self._pending = b""
        self.ended = False
        head = self._read_exact(4)
        if head == b"RIFF":
            self._parse_wav_header()
        elif require_wav:
            raise MicError(f"{name}: not a WAV file (raw PCM only through fifo: or tcp:)")
        else:
            self._pending = head

    def _read_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self._read(n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def _parse_wav_header(self):
        riff = self._read_exact(8)
        if len(riff) < 8 or riff[4:8] != b"WAVE":
            raise MicError(f"{self.name}: not a WAV stream")
        fmt = None
        while True:
            hdr = self._read_exact(8)
            if len(hdr) < 8:
                raise MicError(f"{self.name}: WAV stream has no data chunk")
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"fmt ":
                body = self._read_exact(size + (size & 1))
                tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag not in (1, 0xFFFE):
                    raise MicError(f"{self.name}: only PCM WAV is supported (format tag {tag})")
                fmt = (ch, rate, bits)
            elif cid == b"data":
                if fmt is None:
                    raise MicError(f"{self.name}: WAV data before fmt chunk")
                break
            else:
                self._read_exact(size + (size & 1))
        self.channels, self.rate, bits = fmt
        if bits not in (16, 24, 32):
            raise MicError(f"{self.name}: unsupported WAV sample width {bits} bits")
        self.width = bits // 8

    def read_frames(self, n: int) -> np.ndarray:
        """Up to n frames as int32 array shaped (k, channels); fewer only at the end."""
        fb = self.width * self.channels
        want = n * fb
        data = self._pending
        self._pending = b""
        while len(data) < want and not self.ended:
            chunk = self._read(want - len(data))
            if not chunk:
                self.ended = True
                break
            data += chunk
        usable = len(data) - len(data) % fb
        self._pending = data[usable:] if not self.ended else b""
        return _to_int32(data[:usable], self.width).reshape(-1, self.channels)

    def close(self):
        pass


def open_source(spec: str) -> _Stream:
    """Open a microphone source: a WAV path, `fifo:PATH` or `tcp:HOST:PORT`."""
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        try:
            sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
        except (OSError, ValueError) as e:
            raise MicError(f"cannot connect to microphone stream {spec}: {e}") from None
        sock.settimeout(None)
        s = _Stream(sock.recv, spec)
        s.close = sock.close
        return s
    path = spec[5:] if spec.startswith("fifo:") else spec
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - lives as long as the microphone
    except OSError as e:
        raise MicError(f"cannot open microphone source {spec}: {e}") from None
    try:
        s = _Stream(f.read, spec, require_wav=not spec.startswith("fifo:"))
    except MicError:
        f.close()
        raise
    s.close = f.close
    return s


class Microphone:
    """What the board's I2S bus receives: paced source frames, then zeros.

    One instance per board; the position in the source survives re-creating the I2S object
    and soft resets (the world keeps talking while the board reboots).
    """

    def __init__(self, spec: str | None, realtime: bool = True, shift: int = 16):
        if not 0 <= shift <= 16:
            raise MicError(f"microphone shift {shift} out of range 0..16")
        self.spec = spec
        self.realtime = realtime
        # A 16-bit source sample s reaches the bus as s << shift (16: full scale). A board
        # whose conversion is `word >> 14` (x4 gain for a quiet MEMS microphone) gets
        # shift 14, so the node hears the recording's own samples.
        self.shift = shift
        self._src = None
        self._lock = threading.Lock()
        self.source_frames = 0
        self.zero_frames = 0
        self.overrun_frames = 0
        self._opened = False
        self._clock = None  # (monotonic time, frames delivered at that time) of the last open

    @property
    def ended(self) -> bool:
        return self.spec is None or (self._src is not None and self._src.ended)

    def open(self, bits: int, channels: int, rate: int, ibuf: int) -> None:
        """Start the bus (I2S constructor). Raises MicError on a source/format mismatch."""
        with self._lock:
            if self.spec is not None and self._src is None:
                self._src = open_source(self.spec)
            if self._src is not None and self._src.rate not in (None, rate):
                raise MicError(
                    f"microphone source {self.spec} is {self._src.rate} Hz but I2S rate is {rate} Hz"
                )
            self._bits, self._channels, self._rate = bits, channels, rate
            self._frame_bytes = bits // 8 * channels
            self._capacity = max(1, ibuf // self._frame_bytes)
            self._clock = (time.monotonic(), self.delivered)

    @property
    def delivered(self) -> int:
        return self.source_frames + self.zero_frames + self.overrun_frames

    def stats(self) -> dict:
        return {
            "source_samples": self.source_frames,
            "zero_samples": self.zero_frames,
            "overruns": self.overrun_frames,
            "ended": self.ended,
        }

    def _take(self, n: int) -> np.ndarray:
        """n frames (int32, shape (n, source channels)); zeros after the source ends."""
        if self._src is None or self._src.ended:
            self.zero_frames += n
            return np.zeros((n, 1), dtype=np.int32)
        got = self._src.read_frames(n)
        self.source_frames += len(got)
        if len(got) < n:
            self.zero_frames += n - len(got)
            pad = np.zeros((n - len(got), got.shape[1]), dtype=np.int32)
            got = np.concatenate([got, pad])
        return got

    def read(self, nbytes: int) -> bytes:
        """The next nbytes of I2S slots, waiting for real time when paced."""
        with self._lock:
            n = nbytes // self._frame_bytes
            if self.realtime:
                t0, f0 = self._clock
                due = f0 + int((time.monotonic() - t0) * self._rate)
                behind = due - self.delivered - self._capacity
                if behind > 0:  # the DMA ring overflowed: the oldest audio is lost
                    kept = (self.source_frames, self.zero_frames)
                    self._take(behind)
                    self.source_frames, self.zero_frames = kept
                    self.overrun_frames += behind
                need = self.delivered + n - due
                if need > 0:
                    time.sleep(need / self._rate)
            frames = self._take(n)
            return self._format(frames)

    def _format(self, frames: np.ndarray) -> bytes:
        if self.shift != 16:
            frames = frames >> (16 - self.shift)
        mono = frames[:, 0]
        if self._channels == 2:
            right = frames[:, 1] if frames.shape[1] > 1 else np.zeros_like(mono)
            slots = np.stack([mono, right], axis=1).reshape(-1)
        else:
            slots = mono
        if self._bits == 16:
            return (slots >> 16).astype("<i2").tobytes()
        return (slots & ~0xFF).astype("<i4").tobytes()

    def close(self):
        if self._src is not None:
            self._src.close()
