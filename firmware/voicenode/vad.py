"""Voice-activity end-pointing on feature frames: where a spoken command starts and stops.

After a wake word the recogniser listens for at most `max_frames` feature frames (10 ms each).
The front end's features are already relative to a per-band noise floor, so the sum of a
frame's 40 bytes is a loudness above the background: a frame is *speech* when that sum
reaches `threshold`. Speech starts after `onset` speech frames in a row (the segment begins
`preroll` frames before them, to keep a soft first consonant) and ends after `hangover`
frames without speech (the segment keeps `tail` frames after the last speech frame). With
`drop` (0: off), a frame inside a command also counts as speech only while its sum is within
`drop` of the loudest frame of the command so far: in steady noise a little above
`threshold` the command then ends when the voice does, not when the window closes. The
listening window closes at `max_frames`: a command still running then is cut there, and a
window without speech ends as SILENCE. Everything is integer state; `step` allocates nothing.

The host twin is `voicenode_tools.reference.vad` (same states, same frame numbers).
"""

import array

import micropython
from micropython import const

WAITING = const(0)  # no speech yet
SPEECH = const(1)  # inside a command
DONE = const(2)  # segment [start, end) ready
SILENCE = const(3)  # the window closed without speech

# The state lives in one array("i") so that the per-frame step is a viper function: a
# bytecode method with this many locals would take its frame from the heap on every call.
S_STATE = const(0)
S_N = const(1)  # frames seen
S_RUN = const(2)  # speech frames in a row (while waiting)
S_START = const(3)
S_LAST = const(4)  # last speech frame
S_END = const(5)
S_ENERGY = const(6)  # energy of the newest frame
S_PEAK = const(7)  # loudest frame energy since the onset
S_THRESHOLD = const(8)  # settings from here on (reset() keeps them)
S_ONSET = const(9)
S_HANGOVER = const(10)
S_MAX = const(11)
S_PREROLL = const(12)
S_TAIL = const(13)
S_NMELS = const(14)
S_DROP = const(15)
S_LEN = const(16)


@micropython.viper
def frame_energy(frame: ptr8, n: int) -> int:
    """Sum of the n bytes of a feature frame."""
    s = 0
    i = 0
    while i < n:
        s += frame[i]
        i += 1
    return s


def frame_energy_py(frame, n):
    return sum(frame[i] for i in range(n))


@micropython.viper
def vad_step(frame: ptr8, s: ptr32) -> int:
    """One frame of the end-pointer on the state array s; returns the new state."""
    st = int(s[S_STATE])
    if st >= DONE:
        return st
    nm = int(s[S_NMELS])
    e = 0
    i = 0
    while i < nm:
        e += frame[i]
        i += 1
    s[S_ENERGY] = e
    n = int(s[S_N])
    loud = 0
    if e >= int(s[S_THRESHOLD]):
        loud = 1
    if st == WAITING:
        if loud:
            run = int(s[S_RUN]) + 1
            s[S_RUN] = run
            if run >= int(s[S_ONSET]):
                st = SPEECH
                b = n + 1 - int(s[S_ONSET]) - int(s[S_PREROLL])
                if b < 0:
                    b = 0
                s[S_START] = b
                s[S_LAST] = n
                s[S_PEAK] = e
        else:
            s[S_RUN] = 0
        if st == WAITING and n + 1 >= int(s[S_MAX]):
            st = SILENCE
    else:
        drop = int(s[S_DROP])
        if drop:
            peak = int(s[S_PEAK])
            if e > peak:
                peak = e
                s[S_PEAK] = peak
            if e < peak - drop:
                loud = 0
        if loud:
            s[S_LAST] = n
        last = int(s[S_LAST])
        if n - last >= int(s[S_HANGOVER]):
            st = DONE
            end = last + 1 + int(s[S_TAIL])
            if end > n + 1:
                end = n + 1
            s[S_END] = end
        elif n + 1 >= int(s[S_MAX]):
            st = DONE
            s[S_END] = n + 1
    s[S_N] = n + 1
    s[S_STATE] = st
    return st


class Endpointer:
    """End-pointing state machine; feed it every frame of the listening window.

    Args:
        threshold: frame energy (sum of the feature bytes) that counts as speech.
        onset: speech frames in a row that start a command.
        hangover: frames without speech that end it.
        max_frames: length of the listening window (frames).
        preroll, tail: frames kept before the onset and after the last speech frame.
        n_mels: bytes per frame.
        drop: inside a command, a frame more than this below the loudest one so far is not
            speech (0: off).

    Read `state`, `n`, `start`, `end` (segment [start, end) of the window), `last`, `energy`.
    """

    def __init__(
        self,
        threshold,
        onset=3,
        hangover=30,
        max_frames=300,
        preroll=8,
        tail=5,
        n_mels=40,
        drop=0,
    ):
        self.s = s = array.array("i", bytes(4 * S_LEN))
        s[S_THRESHOLD] = threshold
        s[S_ONSET] = onset
        s[S_HANGOVER] = hangover
        s[S_MAX] = max_frames
        s[S_PREROLL] = preroll
        s[S_TAIL] = tail
        s[S_NMELS] = n_mels
        s[S_DROP] = drop
        self.drop = drop
        self.threshold = threshold
        self.onset = onset
        self.hangover = hangover
        self.max_frames = max_frames
        self.preroll = preroll
        self.tail = tail
        self.n_mels = n_mels

    def reset(self):
        """A new listening window."""
        s = self.s
        for i in range(S_THRESHOLD):
            s[i] = 0

    def step(self, frame):
        """Feed one frame; returns the state (WAITING, SPEECH, DONE or SILENCE)."""
        return vad_step(frame, self.s)

    @property
    def state(self):
        return self.s[S_STATE]

    @property
    def n(self):
        return self.s[S_N]

    @property
    def start(self):
        return self.s[S_START]

    @property
    def end(self):
        return self.s[S_END]

    @property
    def last(self):
        return self.s[S_LAST]

    @property
    def energy(self):
        return self.s[S_ENERGY]
