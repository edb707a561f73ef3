"""Microphone capture: I2S slots in, DC-free int16 samples out, nothing allocated per read.

    mic = Microphone(i2s, fmt)          # fmt: voicenode.hal.SAMPLE_FORMAT (or keywords)
    pcm = mic.read()                    # blocks for one block (10 ms); a shared view
    fe.process(pcm)

`i2s` is anything with `readinto(buf)` (machine.I2S, the virtual board's, or a test fake).
The sample format comes from the board definition as arguments, never from a board import:

- slot_bits 16 or 32; channels 1 (MONO) or 2 (STEREO, the microphone in word `channel`);
- bit_delay: left shift that wraps in 32 bits (the SPH0645 lands one bit late);
- shift: arithmetic right shift that turns the slot into a 16-bit sample (INMP441: 24
  significant bits in a 32-bit slot; shift 16 keeps the top 16, shift 14 adds x4 gain).

Then a one-pole integer high-pass removes the microphone's DC offset (cut-off
rate / (2 pi 2**hp_shift): 2.5 Hz at 16 kHz with hp_shift 10; hp_shift 0 disables it), and
the result saturates to int16. Counters, reported by `voicenode.status()`:

- mic_blocks: blocks delivered (a small int for 120 days at 10 ms blocks);
- mic_clipped: samples that saturated;
- mic_overruns: blocks the I2S driver must have dropped because `read()` came later than its
  DMA buffering allows (only when `ibuf` is given), plus samples dropped from the ring.

ibuf (the ESP32 I2S driver's DMA buffering, bytes). MicroPython's esp32 port cuts ibuf into DMA
buffers of 256 frames (16 ms at 16 kHz); a blocking readinto() returns as soon as its bytes are
in, so ibuf does not add latency: it is the margin against stalls (GC, flash writes, network)
and costs internal DMA-capable RAM. At 16 kHz with 32-bit slots one second is 64000 bytes mono,
128000 stereo. We use ibuf_for(250) = 16384 bytes mono (256 ms; 32768 stereo): several times
the worst GC pause of a 256 KB heap, and well under the 500 ms after which a missed wake word
becomes likely. `ibuf_for(ms, ...)` computes it for other formats.

An optional ring (`ring=N` samples) keeps the most recent audio for consumers that need
history (command recognition after the wake word): `available()`, `take(out)`.
"""

import time
from array import array

import micropython
from micropython import const

import voicenode

_DMA_FRAMES = const(256)  # frames per DMA buffer in MicroPython's esp32 machine_i2s.c
_DC_FRAC = const(12)  # fraction bits of the DC estimate (fewer for very small shifts)


def ibuf_for(ms, slot_bits=32, channels=1, rate=16000):
    """I2S ibuf bytes holding at least `ms` milliseconds, in whole DMA buffers."""
    frame = (slot_bits // 8) * channels
    frames = (rate * ms + 999) // 1000
    bufs = (frames + _DMA_FRAMES - 1) // _DMA_FRAMES
    return bufs * _DMA_FRAMES * frame


# The converter's state, an int32 array (the viper kernels take three arguments so that the
# bytecode calling them keeps a small frame: see Microphone.read()).
_S_DC = const(0)  # DC estimate, Q(frac)
_S_HP = const(1)  # hp_shift (0: no high-pass)
_S_CH = const(2)  # channel: index of our slot in a frame
_S_FS = const(3)  # log2 of the frame size in bytes
_S_BD = const(4)  # bit_delay
_S_SHIFT = const(5)  # shift
_S_FRAC = const(6)  # fraction bits of the DC estimate
_S_BYTES = const(7)  # in: bytes read
_S_CLIP = const(8)  # out: samples clipped in the last block


@micropython.viper
def _convert32(raw: ptr16, out: ptr16, st: ptr32) -> int:
    """out[i] = saturate(highpass((word_i << bd) >> shift)) for the frames of 32-bit words in
    raw (little-endian; our word is the frame's slot st[_S_CH]). Returns the frame count and
    stores the number of clipped samples in st[_S_CLIP]. raw and out (the two register
    locals) walk the frames and the samples.
    """
    sgn = 1
    sgn <<= 31  # not folded at compile time: 1 << 31 is no small int on a 32-bit chip
    dc = (st[_S_DC] ^ sgn) - sgn  # ptr32 loads zero-extend on 64-bit hosts
    hp = int(st[_S_HP])
    fs = int(st[_S_FS])
    bd = int(st[_S_BD])
    shift = int(st[_S_SHIFT])
    frac = int(st[_S_FRAC])
    n = int(st[_S_BYTES]) >> fs
    step = 1 << fs
    raw = ptr16(uint(raw) + (int(st[_S_CH]) << 2))
    e = uint(out) + 2 * n
    rnd = (1 << frac) >> 1
    clipped = 0
    while uint(out) < e:
        lo = raw[0]
        hi = raw[1]
        if bd:
            hi = ((hi << bd) | (lo >> (16 - bd))) & 0xFFFF
            lo = (lo << bd) & 0xFFFF
        w = (((hi ^ 0x8000) - 0x8000) << 16) | lo  # the signed 32-bit word
        s = w >> shift
        if hp:
            dc += ((s << frac) - dc) >> hp
            s -= (dc + rnd) >> frac
        if s > 32767:
            s = 32767
            clipped += 1
        elif s < -32768:
            s = -32768
            clipped += 1
        out[0] = s
        out = ptr16(uint(out) + 2)
        raw = ptr16(uint(raw) + step)
    st[_S_DC] = dc
    st[_S_CLIP] = clipped
    return n


@micropython.viper
def _convert16(raw: ptr16, out: ptr16, st: ptr32) -> int:
    """As _convert32 for 16-bit slots (shift is normally 0)."""
    sgn = 1
    sgn <<= 31  # not folded at compile time: 1 << 31 is no small int on a 32-bit chip
    dc = (st[_S_DC] ^ sgn) - sgn
    hp = int(st[_S_HP])
    fs = int(st[_S_FS])
    shift = int(st[_S_SHIFT])
    frac = int(st[_S_FRAC])
    n = int(st[_S_BYTES]) >> fs
    step = 1 << fs
    raw = ptr16(uint(raw) + (int(st[_S_CH]) << 1))
    e = uint(out) + 2 * n
    rnd = (1 << frac) >> 1
    clipped = 0
    while uint(out) < e:
        s = ((raw[0] ^ 0x8000) - 0x8000) >> shift
        if hp:
            dc += ((s << frac) - dc) >> hp
            s -= (dc + rnd) >> frac
        if s > 32767:
            s = 32767
            clipped += 1
        elif s < -32768:
            s = -32768
            clipped += 1
        out[0] = s
        out = ptr16(uint(out) + 2)
        raw = ptr16(uint(raw) + step)
    st[_S_DC] = dc
    st[_S_CLIP] = clipped
    return n


@micropython.viper
def _ring_put(ring, size: int, wpos: int, src, n: int) -> int:
    """Copy n int16 samples into the ring at wpos (wrapping); returns the new wpos."""
    r = ptr16(ring)
    s = ptr16(src)
    i = 0
    while i < n:
        r[wpos] = s[i]
        wpos += 1
        if wpos == size:
            wpos = 0
        i += 1
    return wpos


@micropython.viper
def _ring_get(ring, size: int, rpos: int, dst, n: int) -> int:
    r = ptr16(ring)
    d = ptr16(dst)
    i = 0
    while i < n:
        d[i] = r[rpos]
        rpos += 1
        if rpos == size:
            rpos = 0
        i += 1
    return rpos


class Microphone:
    def __init__(
        self,
        i2s,
        fmt=None,
        *,
        slot_bits=32,
        channels=1,
        channel=0,
        bit_delay=0,
        shift=14,
        rate=16000,
        block=160,
        hp_shift=10,
        ring=0,
        ibuf=None,
        **_ignored,
    ):
        if fmt:
            slot_bits = fmt.get("slot_bits", slot_bits)
            channels = fmt.get("channels", channels)
            channel = fmt.get("channel", channel)
            bit_delay = fmt.get("bit_delay", bit_delay)
            shift = fmt.get("shift", shift)
            rate = fmt.get("rate", rate)
        if slot_bits not in (16, 32):
            raise ValueError("slot_bits must be 16 or 32")
        if not 0 <= channel < channels <= 2:
            raise ValueError("channel must be 0 or 1 and below channels")
        if slot_bits == 32 and not (0 <= bit_delay < 16 and 0 <= shift <= 31):
            raise ValueError("bit_delay 0..15 and shift 0..31 for 32-bit slots")
        self._i2s = i2s
        self.rate = rate
        self.block_len = block
        # DC estimate precision: keep |sample| << frac below 2**30.
        frac = _DC_FRAC if slot_bits == 16 else max(0, min(_DC_FRAC, shift - 1))
        frame = channels * slot_bits // 8  # 2, 4 or 8 bytes
        self._raw = bytearray(block * frame)
        self._block = array("h", bytes(2 * block))
        self.block = memoryview(self._block)  # the last block read (shared buffer)
        st = [0] * 9
        st[_S_HP], st[_S_CH], st[_S_FS] = hp_shift, channel, (1, 2, 3)[frame // 4]
        st[_S_BD], st[_S_SHIFT], st[_S_FRAC] = bit_delay, shift, frac
        self._state = array("i", st)
        self._conv = _convert32 if slot_bits == 32 else _convert16
        self._ring_size = ring
        self._ring = array("h", bytes(2 * ring)) if ring else None
        self._rpos = self._wpos = self._avail = 0
        self._ibuf_us = None
        if ibuf:
            frame = channels * slot_bits // 8
            self._ibuf_us = (ibuf // frame) * 1000000 // rate
        self._last_us = None
        for name in ("mic_blocks", "mic_clipped", "mic_overruns"):
            voicenode.count(name, 0)

    def read(self):
        """Read one block (blocking), convert it, keep it in the ring if any.

        Returns `.block`, a memoryview of a shared buffer overwritten by the next read.
        """
        # MicroPython takes a bytecode call's frame from the heap when its locals and value
        # stack pass 11 words (and silently from the C stack under heap_lock()), so read()
        # and its helpers keep few locals and short calls: the converter's parameters live
        # in the state array.
        st = self._state
        n = self._i2s.readinto(self._raw)
        st[_S_BYTES] = len(self._raw) if n is None else n
        if self._ibuf_us is not None:
            self._check_late()
        n = self._conv(self._raw, self._block, st)
        if st[_S_CLIP]:
            voicenode.count("mic_clipped", st[_S_CLIP])
        voicenode.count("mic_blocks")
        if self._ring is not None:
            self._push(n)
        return self.block if n == self.block_len else self.block[:n]

    def _check_late(self):
        now = time.ticks_us()
        if self._last_us is not None:
            if time.ticks_diff(now, self._last_us) > self._ibuf_us:  # type: ignore[operator]  # only called when set
                voicenode.count("mic_overruns")
        self._last_us = now

    def _push(self, n):
        self._wpos = _ring_put(self._ring, self._ring_size, self._wpos, self._block, n)
        self._avail += n
        if self._avail > self._ring_size:
            voicenode.count("mic_overruns", self._avail - self._ring_size)
            self._avail = self._ring_size
            self._rpos = self._wpos

    def available(self):
        """Samples waiting in the ring."""
        return self._avail

    def take(self, out):
        """Move up to len(out) of the oldest ring samples into the int16 buffer out."""
        n = len(out)
        if n > self._avail:
            n = self._avail
        self._rpos = _ring_get(self._ring, self._ring_size, self._rpos, out, n)
        self._avail -= n
        return n

    def reset_dc(self):
        """Forget the DC estimate (after the microphone was muted or restarted)."""
        self._state[_S_DC] = 0
