"""WAV input for the host tools, with the project's rules.

- `read_wav(path)` reads PCM 8/16/24/32-bit or IEEE float WAV (also WAVE_FORMAT_EXTENSIBLE)
  and returns (int16 samples, rate); several channels are mixed down (with a notice on
  stderr) or refused (`channels="refuse"`).
- `load_16k(path)` returns 16 kHz mono int16, resampling any other rate with a polyphase
  windowed-sinc filter (notice on stderr); audio too short for one feature frame gets a
  notice too (the tools then hear nothing, and say why).
- Anything that is not a readable WAV raises `AudioError` with one clear sentence.
"""

import struct
import sys
from math import gcd
from pathlib import Path

import numpy as np

from voicenode_tools.reference import params

TARGET_RATE = 16000

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


class AudioError(ValueError):
    """A WAV file the tools cannot use; the message says why."""


def _notice(msg):
    print(f"notice: {msg}", file=sys.stderr)


def _chunks(data, name):
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if data[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian WAV (RIFX) is not supported")
    pos = 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        yield cid, body, len(body) < size
        pos += 8 + size + (size & 1)


def read_wav(path, channels="mix"):
    """Read a WAV file as int16.

    Args:
        path: the file.
        channels: "mix" averages several channels into one (notice on stderr), "refuse"
            raises AudioError for anything but mono, "keep" returns shape (n, channels).

    Returns:
        (samples, rate): int16 array (1-D unless channels="keep"), sample rate in Hz.

    Raises:
        AudioError: not a WAV, truncated, or an encoding this reader does not know.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AudioError(f"{name}: cannot read ({e.strerror})") from None
    fmt = None
    pcm = None
    truncated = False
    for cid, body, short in _chunks(data, name):
        if cid == b"fmt ":
            if len(body) < 16:
                raise AudioError(f"{name}: corrupt WAV (fmt chunk too short)")
            fmt = struct.unpack_from("<HHIIHH", body)
            if fmt[0] == _EXTENSIBLE:
                if len(body) < 26:
                    raise AudioError(f"{name}: corrupt WAV (short extensible fmt chunk)")
                fmt = (struct.unpack_from("<H", body, 24)[0],) + fmt[1:]
        elif cid == b"data":
            pcm, truncated = body, short
            break
    if fmt is None:
        raise AudioError(f"{name}: corrupt WAV (no fmt chunk)")
    if pcm is None:
        raise AudioError(f"{name}: corrupt WAV (no data chunk)")
    tag, nch, rate, _, align, bits = fmt
    if nch < 1 or rate < 1 or bits < 1:
        raise AudioError(f"{name}: corrupt WAV (channels={nch}, rate={rate}, bits={bits})")
    width = (bits + 7) // 8
    if align != width * nch:
        raise AudioError(f"{name}: corrupt WAV (block align {align} for {nch} x {bits}-bit)")
    if truncated:
        _notice(f"{name}: data chunk is truncated; using the {len(pcm)} bytes present")
    pcm = pcm[: len(pcm) - len(pcm) % align]

    if tag == _PCM and width == 1:
        x = (np.frombuffer(pcm, np.uint8).astype(np.int32) - 128) << 8
    elif tag == _PCM and width == 2:
        x = np.frombuffer(pcm, "<i2").astype(np.int32)
    elif tag == _PCM and width == 3:
        b = np.frombuffer(pcm, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = (v + 128) >> 8
    elif tag == _PCM and width == 4:
        v = np.frombuffer(pcm, "<i4").astype(np.int64)
        x = (v + 32768) >> 16
    elif tag == _FLOAT and width in (4, 8):
        v = np.frombuffer(pcm, "<f4" if width == 4 else "<f8").astype(np.float64)
        if not np.all(np.isfinite(v)):
            raise AudioError(f"{name}: float WAV contains NaN or infinity")
        x = np.round(v * 32768.0)
    else:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format tag 0x{tag:04x}")
        raise AudioError(f"{name}: unsupported WAV encoding ({kind}, {bits}-bit)")
    x = np.clip(x, -32768, 32767).astype(np.int16).reshape(-1, nch)

    if channels == "keep":
        return x, rate
    if nch == 1:
        return x[:, 0], rate
    if channels == "refuse":
        raise AudioError(f"{name}: has {nch} channels; the tools want mono (mix it down first)")
    _notice(f"{name}: {nch} channels mixed down to mono")
    mixed = np.floor(x.astype(np.int64).sum(axis=1) / nch + 0.5)
    return np.clip(mixed, -32768, 32767).astype(np.int16), rate


def resample(x, rate_in, rate_out=TARGET_RATE, taps_per_phase=20, beta=5.0):
    """Polyphase resampling of int16 audio with a Kaiser-windowed sinc low-pass.

    Args:
        x: 1-D int16 array.
        rate_in: its rate in Hz.
        rate_out: wanted rate in Hz.
        taps_per_phase: half-length of the filter in units of the slower rate.
        beta: Kaiser window shape.

    Returns:
        int16 array of ceil(len(x) * rate_out / rate_in) samples.
    """
    if rate_in == rate_out:
        return np.asarray(x, np.int16)
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    fmax = max(up, down)
    half = taps_per_phase * fmax
    n = np.arange(-half, half + 1)
    h = np.sinc(n / fmax) * np.kaiser(2 * half + 1, beta)
    h *= up / h.sum()  # unit gain at DC after zero-stuffing by `up`
    k_taps = (len(h) + up - 1) // up
    hp = np.zeros(k_taps * up)
    hp[: len(h)] = h
    hp = hp.reshape(k_taps, up).T  # hp[phase, k] = h[phase + k*up]
    xf = np.concatenate([np.zeros(k_taps), np.asarray(x, np.float64), np.zeros(k_taps + 1)])
    n_out = -(-len(x) * up // down)
    y = np.empty(n_out)
    block = 1 << 15
    ks = np.arange(k_taps)
    for start in range(0, n_out, block):
        m = np.arange(start, min(start + block, n_out))
        t = m * down + half
        idx, phase = t // up, t % up
        y[m] = np.einsum("mk,mk->m", hp[phase], xf[(idx + k_taps)[:, None] - ks[None, :]])
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def load_16k(path, channels="mix"):
    """16 kHz mono int16 samples of a WAV file (see `read_wav` for the rules).

    A file at another rate is resampled, with a notice on stderr.
    """
    x, rate = read_wav(path, channels=channels)
    if rate != TARGET_RATE:
        _notice(f"{path}: {rate} Hz resampled to {TARGET_RATE} Hz")
        x = resample(x, rate, TARGET_RATE)
    if len(x) < params.WINDOW:  # the front end's first frame
        _notice(
            f"{path}: {len(x) / TARGET_RATE:.3f} s of audio, less than the front end's first"
            f" {1000 * params.WINDOW // TARGET_RATE} ms frame: nothing to hear"
        )
    return x


def write_wav(path, x, rate=TARGET_RATE):
    """Write a 1-D int16 array as a mono 16-bit PCM WAV."""
    x = np.asarray(x, "<i2")
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + x.nbytes,
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        x.nbytes,
    )
    Path(path).write_bytes(header + x.tobytes())
