"""Augmentation: generated noise, babble, music, room reverb, gain and microphone band limits.

Everything is generated locally from seeds: coloured noise with numpy, music rendered by
fluidsynth from random MIDI note sequences (soundfont from Debian's fluid-soundfont-gm),
synthetic room impulse responses. Every function keeps the clip length and returns int16.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .synth import read_wav_bytes, to_int16

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white noise."""
    x = rng.standard_normal(n).astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + 1e-9)


def coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum 1/f**exponent (1 pink, 2 brown)."""
    size = 1 << max(0, (n - 1).bit_length())  # FFTs of awkward lengths are slow
    spec = np.fft.rfft(rng.standard_normal(size))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (exponent / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, size)[:n].astype(np.float32)
    return x / (np.sqrt(np.mean(x * x)) + 1e-9)


def noise(n: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """Unit-RMS generated noise: white, pink or brown (random when ``kind`` is None)."""
    kind = kind or ("white", "pink", "brown")[rng.integers(3)]
    if kind == "white":
        return white(n, rng)
    if kind == "pink":
        return coloured(n, rng, 1.0)
    if kind == "brown":
        return coloured(n, rng, 2.0)
    raise ValueError(kind)


def babble(
    n: int, rng: np.random.Generator, speech: list[np.ndarray], talkers: int = 4
) -> np.ndarray:
    """Overlapping speech clips (unit RMS): the noise of a room full of talkers."""
    out = np.zeros(n, np.float32)
    if not speech:
        return white(n, rng)
    for _ in range(talkers):
        pos = 0
        while pos < n:
            clip = speech[rng.integers(len(speech))].astype(np.float32)
            clip /= np.sqrt(np.mean(clip * clip)) + 1e-9
            m = min(len(clip), n - pos)
            out[pos : pos + m] += clip[:m]
            pos += m + int(rng.integers(0, 4000))
    return out / (np.sqrt(np.mean(out * out)) + 1e-9)


def rms(x: np.ndarray) -> float:
    """Root mean square of the samples as float."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def mix(signal: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``background`` to ``signal`` at the given SNR (by RMS); returns float32."""
    s = signal.astype(np.float32)
    b = background[: len(s)].astype(np.float32)
    if len(b) < len(s):
        b = np.resize(b, len(s))
    rs, rb = rms(s), rms(b)
    if rs == 0 or rb == 0:
        return s + b
    return s + b * (rs / rb) * 10 ** (-snr_db / 20)


def room_impulse(rate: int, rng: np.random.Generator, rt60: float | None = None) -> np.ndarray:
    """Synthetic room impulse response: a direct path, early reflections, exponential tail."""
    rt60 = rt60 if rt60 is not None else float(rng.uniform(0.15, 0.9))
    n = int(rate * min(rt60, 1.0))
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * rate)] = 0.0
    ir = tail * float(rng.uniform(0.15, 0.5))
    ir[0] = 1.0
    for _ in range(int(rng.integers(3, 8))):
        d = int(rng.uniform(0.002, 0.03) * rate)
        if d < n:
            ir[d] += rng.uniform(-0.6, 0.6)
    return (ir / np.sqrt(np.sum(ir * ir))).astype(np.float32)


def convolve_same(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolution by FFT, truncated to the input's length."""
    n = len(x) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)
    return y[: len(x)].astype(np.float32)


def reverb(
    x: np.ndarray, rate: int, rng: np.random.Generator, rt60: float | None = None
) -> np.ndarray:
    """Put ``x`` in a synthetic room, keeping its RMS level and length."""
    xf = x.astype(np.float32)
    y = convolve_same(xf, room_impulse(rate, rng, rt60))
    r = rms(y)
    return y * (rms(xf) / r) if r else y


def band_limit(x: np.ndarray, rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """A microphone-like band: gentle (second order) high-pass and low-pass in the FFT domain."""
    xf = x.astype(np.float32)
    size = 1 << max(0, (len(xf) - 1).bit_length())  # zero-padded: fast FFT, no wrap-around
    spec = np.fft.rfft(xf, size)
    f = np.fft.rfftfreq(size, 1.0 / rate)
    f[0] = 1e-3
    hp = (f / low_hz) ** 2 / np.sqrt(1 + (f / low_hz) ** 4)
    lp = 1 / np.sqrt(1 + (f / high_hz) ** 4)
    return np.fft.irfft(spec * hp * lp, size)[: len(xf)].astype(np.float32)


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels."""
    return x.astype(np.float32) * np.float32(10 ** (db / 20))


# --- music -----------------------------------------------------------------------------------


def _varlen(v: int) -> bytes:
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def random_midi(rng: np.random.Generator, seconds: float = 20.0) -> bytes:
    """A random standard MIDI file: a few instruments playing random notes on a scale."""
    tpq, tempo = 480, int(rng.integers(350000, 800000))  # ticks per quarter, us per quarter
    tracks = []
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    root = int(rng.integers(48, 60))
    total_ticks = int(seconds * 1e6 / tempo * tpq)
    for ch in range(int(rng.integers(1, 4))):
        channel = 9 if (ch == 2 and rng.random() < 0.5) else ch
        program = int(rng.integers(0, 112))
        ev = bytearray()
        ev += _varlen(0) + bytes([0xFF, 0x51, 3]) + tempo.to_bytes(3, "big")
        ev += _varlen(0) + bytes([0xC0 | channel, program])
        t = 0
        while t < total_ticks:
            dur = int(tpq * rng.choice([0.25, 0.5, 1, 1.5, 2]))
            chord = int(rng.integers(1, 4))
            if channel == 9:
                notes = [int(rng.choice([35, 36, 38, 42, 46, 49, 51]))]
            else:
                notes = [
                    root + 12 * int(rng.integers(-1, 2)) + int(scale[rng.integers(7)])
                    for _ in range(chord)
                ]
            vel = int(rng.integers(40, 120))
            for nt in notes:
                ev += _varlen(0) + bytes([0x90 | channel, nt, vel])
            for i, nt in enumerate(notes):
                ev += _varlen(dur if i == 0 else 0) + bytes([0x80 | channel, nt, 0])
            t += dur
        ev += _varlen(0) + bytes([0xFF, 0x2F, 0])
        tracks.append(b"MTrk" + struct.pack(">I", len(ev)) + bytes(ev))
    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), tpq)
    return head + b"".join(tracks)


def soundfont() -> str | None:
    """A General MIDI soundfont installed by Debian, or None."""
    for p in SOUNDFONTS:
        if os.path.exists(p):
            return p
    return None


def render_music(rng: np.random.Generator, rate: int, seconds: float = 20.0) -> np.ndarray:
    """Random music rendered by fluidsynth; int16 at ``rate``.

    Raises:
        RuntimeError: when fluidsynth or a soundfont is missing.
    """
    exe, sf = shutil.which("fluidsynth"), soundfont()
    if exe is None or sf is None:
        raise RuntimeError("music needs fluidsynth and fluid-soundfont-gm (apt-get install)")
    with tempfile.TemporaryDirectory() as d:
        mid, wav = Path(d) / "m.mid", Path(d) / "m.wav"
        mid.write_bytes(random_midi(rng, seconds))
        subprocess.run(
            [
                exe,
                "-ni",
                "-q",
                "-g",
                "0.6",
                "-F",
                str(wav),
                "-r",
                str(rate),
                "-T",
                "wav",
                sf,
                str(mid),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        pcm, _ = read_wav_bytes(wav.read_bytes())
    return pcm


# --- the whole chain -------------------------------------------------------------------------


def augment(clip: np.ndarray, rate: int, rng: np.random.Generator, *args, **kwargs) -> np.ndarray:
    """One random augmentation of ``clip``: reverb, background at a random SNR, band, gain
    (`augment_pair`'s arguments, without its clean twin); int16, the same length."""
    return augment_pair(clip, rate, rng, *args, **kwargs)[0]


def augment_pair(
    clip: np.ndarray,
    rate: int,
    rng: np.random.Generator,
    backgrounds: list[np.ndarray] | None = None,
    speech: list[np.ndarray] | None = None,
    snr_db: tuple[float, float] = (0.0, 25.0),
    p_reverb: float = 0.5,
    p_band: float = 0.5,
    p_clean: float = 0.1,
    clean_db: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One random augmentation of ``clip`` (reverb, background at a random SNR, band, gain)
    and, with ``clean_db``, its clean twin: the same room, band limit and gain, with the same
    background ``clean_db`` dB below the clip (a quiet room). The twin takes no random draw
    of its own, so the first array is the same with or without it.

    Args:
        clip: int16 samples.
        rate: sample rate.
        rng: random generator.
        backgrounds: long int16 recordings (music, noise) to cut backgrounds from.
        speech: clips for babble.
        snr_db: range of signal-to-background ratios.
        p_reverb: probability of a room.
        p_band: probability of a microphone band limit.
        p_clean: probability of no background at all.
        clean_db: the twin's signal-to-background ratio (None: no twin).

    Returns:
        (int16 array of the same length, its int16 twin or None).
    """
    n = len(clip)
    x = clip.astype(np.float32)
    if rng.random() < p_reverb:
        x = reverb(x, rate, rng)
    twin = None if clean_db is None else x
    if rng.random() >= p_clean:
        choice = rng.random()
        if backgrounds and choice < 0.4:
            bg = backgrounds[rng.integers(len(backgrounds))]
            start = int(rng.integers(0, max(1, len(bg) - n)))
            b = np.resize(bg[start : start + n].astype(np.float32), n)
        elif speech and choice < 0.6:
            b = babble(n, rng, speech, talkers=int(rng.integers(3, 7)))
        else:
            b = noise(n, rng)
        if twin is not None:
            twin = mix(x, b, float(clean_db))
        x = mix(x, b, float(rng.uniform(*snr_db)))
    # a peak between -30 dBFS and +1 dBFS: clipping now and then, like a close talker
    x, twin = band_and_level(x, twin, rate, rng, p_band, top_db=1.0)
    return to_int16(x), None if twin is None else to_int16(twin)


def band_and_level(
    x: np.ndarray,
    twin: np.ndarray | None,
    rate: int,
    rng: np.random.Generator,
    p_band: float,
    top_db: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The last steps of every mix (`augment_pair`, `tracks.mix_track`): a microphone band
    limit (with probability `p_band`), then a level (the peak at -30..`top_db` dBFS; nothing
    drawn for silence). The clean twin, if any, gets the same band and the same gain, so that
    its speech sits at the noisy mix's level. Returns the float arrays."""
    if rng.random() < p_band:
        lo, hi = float(rng.uniform(60, 300)), float(rng.uniform(3500, 7800))
        x = band_limit(x, rate, lo, hi)
        if twin is not None:
            twin = band_limit(twin, rate, lo, hi)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0:
        gain = (32767.0 / peak) * 10 ** (float(rng.uniform(-30, top_db)) / 20)
        x = x * gain
        if twin is not None:
            twin = twin * gain
    return x, twin
