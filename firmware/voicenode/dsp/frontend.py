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

from array import array

from micropython import const

from . import tables as T
from .fft import copy_in, fft256, finish, norm_shift, normalise, power_mel, window
from .params import FFT_SIZE, N_MELS, STEP, WINDOW

_BLOCKS = const(3)  # WINDOW // STEP: blocks needed before the first frame


class Frontend:
    def __init__(self, callback=None, ring=8):
        assert WINDOW == _BLOCKS * STEP
        self._ring = array("h", bytes(2 * WINDOW))  # the last WINDOW samples
        self._work = array("h", bytes(2 * FFT_SIZE))  # window / FFT, in place
        self._energy = array("I", bytes(4 * (N_MELS + 2)))
        self._floor = array("I", bytes(4 * N_MELS))
        self.frame = bytearray(N_MELS)  # newest frame (shared buffer)
        self.frames = bytearray(N_MELS * ring)  # the last `ring` frames
        self.ring = ring
        self.count = 0  # frames made since construction
        self._cb = callback
        self._slot = 0  # where the next frame goes in .frames
        self._pos = 0  # ring write position = oldest sample
        self._fill = 0  # samples in the current block
        self._blocks = 0  # complete blocks seen, up to _BLOCKS

    def reset(self):
        """Forget the audio and the noise floor (the next frame needs WINDOW samples)."""
        self._pos = self._fill = self._blocks = self._slot = 0
        self.count = 0

    def frame_offset(self, i):
        """Offset of frame number i in `.frames` (valid for the last `ring` frames)."""
        return (i % self.ring) * N_MELS

    def process(self, samples):
        """Feed int16 samples (any length). Returns the number of new frames."""
        n = len(samples)
        i = 0
        new = 0
        while i < n:
            k = STEP - self._fill
            if k > n - i:
                k = n - i
            copy_in(self._ring, self._pos, samples, i, k)
            i += k
            self._pos += k
            if self._pos == WINDOW:
                self._pos = 0
            self._fill += k
            if self._fill == STEP:
                self._fill = 0
                if self._blocks < _BLOCKS:
                    self._blocks += 1
                if self._blocks == _BLOCKS:
                    self._step()
                    new += 1
        return new

    def _step(self):
        work = self._work
        peak = window(self._ring, self._pos, T.WINDOW_TAB, work)
        s = norm_shift(peak)
        normalise(work, s)
        fft256(work, T.FFT_TW)
        power_mel(work, T.DIGITREV, T.POST_TW, T.MEL_SLOT, T.MEL_W, self._energy,
                  T.MEL_K_LO, T.MEL_K_HI)
        finish(self._energy, T.LOG_TAB, s, self._floor, self.frame, self.frames,
               self._slot * N_MELS, 0 if self.count else 1)
        self.count += 1  # a small int for 170 days of audio
        self._slot += 1
        if self._slot == self.ring:
            self._slot = 0
        if self._cb is not None:
            self._cb(self.frame)
