"""The on-chip audio front end: 16 kHz int16 samples in, one byte vector per 10 ms out.

    fe = Frontend()
    n = fe.process(pcm)       # any length, int16 array/memoryview; returns new frames
    fe.frame                  # newest frame: bytearray(N_MELS), overwritten each step

Three ways to get every frame without allocating:
- `.frame` after `process()` returned 1 (feed STEP samples at a time, the common case);
- `Frontend(callback=f)`: f(frame) is called for each new frame, with `.frame` (a shared
  buffer: copy it if you keep it);
- the ring `.frames` (bytearray of `ring` frames): frame number i (counting from 0 since
  construction; `.count` frames so far) is at offset (i % ring) * N_MELS. `frame_offset(i)`.

Output does not depend on how the audio is chunked. Frame i covers samples
[i*STEP, i*STEP + WINDOW). Buffers are made once in __init__; `process` allocates nothing.
"""

from micropython import const

from .fft import H_FIRST, H_N, H_OFF, H_POS, copy_in, fft, finish, mel, new_arena, power, window
from .params import N_MELS, STEP, WINDOW

_BLOCKS = const(3)  # WINDOW // STEP: blocks needed before the first frame
_STEP = const(160)  # STEP, and the header words H_OFF, H_N as constants (checked in
_H_OFF = const(6)  # __init__): an imported name is a global lookup at run time
_H_N = const(7)


class Frontend:
    def __init__(self, callback=None, ring=8):
        assert WINDOW == _BLOCKS * STEP and STEP == _STEP and (H_OFF, H_N) == (_H_OFF, _H_N)
        # Ring of the last WINDOW samples, FFT buffer, energies, noise floor and tables:
        # one arena (see fft.py for why). Header word 2 = 1 seeds the noise floor.
        self._arena = new_arena()
        self.frame = bytearray(N_MELS)  # newest frame (shared buffer)
        self.frames = bytearray(N_MELS * ring)  # the last `ring` frames
        mv = memoryview(self.frames)
        self._slots = [mv[i * N_MELS : (i + 1) * N_MELS] for i in range(ring)]
        self.ring = ring
        self.count = 0  # frames made since construction
        self._cb = callback
        self._slot = 0  # where the next frame goes in .frames
        self._fill = 0  # samples in the current block
        self._blocks = 0  # complete blocks seen, up to _BLOCKS

    def reset(self):
        """Forget the audio and the noise floor (the next frame needs WINDOW samples)."""
        self._fill = self._blocks = self._slot = 0
        self._arena[H_POS] = 0
        self._arena[H_FIRST] = 1  # seed the noise floor again
        self.count = 0

    def frame_offset(self, i):
        """Offset of frame number i in `.frames` (valid for the last `ring` frames)."""
        return (i % self.ring) * N_MELS

    def process(self, samples):
        """Feed int16 samples (any length). Returns the number of new frames."""
        # Few locals and short calls: a bytecode frame over 11 words comes from the heap.
        if self._fill or self._blocks != _BLOCKS or len(samples) != _STEP:
            return self._process(samples)
        a = self._arena  # the common case: one whole block in steady state, _step inline
        a[_H_OFF] = 0
        a[_H_N] = _STEP
        copy_in(a, samples)
        window(a)
        fft(a)
        power(a)
        mel(a)
        finish(a, self.frame, self._slots[self._slot])
        self.count += 1
        self._slot += 1
        if self._slot == self.ring:
            self._slot = 0
        if self._cb is not None:
            self._cb(self.frame)
        return 1

    def _process(self, samples):
        n = len(samples)
        i = 0
        new = 0
        a = self._arena
        while i < n:
            k = _STEP - self._fill
            if k > n - i:
                k = n - i
            a[_H_OFF] = i
            a[_H_N] = k
            copy_in(a, samples)
            i += k
            k += self._fill
            if k == _STEP:
                self._fill = 0
                if self._blocks == _BLOCKS:
                    self._step(a)
                    new += 1
                else:
                    self._blocks += 1
                    if self._blocks == _BLOCKS:
                        self._step(a)
                        new += 1
            else:
                self._fill = k
        return new

    def _step(self, a):
        window(a)
        fft(a)
        power(a)
        mel(a)
        s = self._slot
        finish(a, self.frame, self._slots[s])
        self.count += 1  # a small int for 170 days of audio
        s += 1
        self._slot = 0 if s == self.ring else s
        if self._cb is not None:
            self._cb(self.frame)
