"""Voice-activity end-pointing on feature frames: where a spoken command starts and stops.

After a wake word the recogniser listens for at most `max_frames` feature frames (10 ms each).
The front end's features are already relative to a per-band noise floor, so the sum of a
frame's 40 bytes is a loudness above the background: a frame is *speech* when that sum
reaches `threshold`. Speech starts after `onset` speech frames in a row (the segment begins
`preroll` frames before them, to keep a soft first consonant) and ends after `hangover`
frames without speech (the segment keeps `tail` frames after the last speech frame). The
listening window closes at `max_frames`: a command still running then is cut there, and a
window without speech ends as SILENCE. Everything is integer state; `step` allocates nothing.

The host twin is `voicenode_tools.reference.vad` (same states, same frame numbers).
"""

import micropython
from micropython import const

WAITING = const(0)  # no speech yet
SPEECH = const(1)  # inside a command
DONE = const(2)  # segment [start, end) ready
SILENCE = const(3)  # the window closed without speech


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


class Endpointer:
    """End-pointing state machine; feed it every frame of the listening window.

    Args:
        threshold: frame energy (sum of the feature bytes) that counts as speech.
        onset: speech frames in a row that start a command.
        hangover: frames without speech that end it.
        max_frames: length of the listening window (frames).
        preroll, tail: frames kept before the onset and after the last speech frame.
        n_mels: bytes per frame.
    """

    def __init__(
        self, threshold, onset=3, hangover=30, max_frames=300, preroll=8, tail=5, n_mels=40
    ):
        self.threshold = threshold
        self.onset = onset
        self.hangover = hangover
        self.max_frames = max_frames
        self.preroll = preroll
        self.tail = tail
        self.n_mels = n_mels
        self.reset()

    def reset(self):
        """A new listening window."""
        self.state = WAITING
        self.n = 0  # frames seen
        self.run = 0  # speech frames in a row (while waiting)
        self.start = 0
        self.last = 0  # last speech frame
        self.end = 0
        self.energy = 0  # energy of the newest frame

    def step(self, frame):
        """Feed one frame; returns the state (WAITING, SPEECH, DONE or SILENCE)."""
        st = self.state
        if st >= DONE:
            return st
        n = self.n
        e = int(frame_energy(frame, self.n_mels))
        self.energy = e
        speech = e >= self.threshold
        if st == WAITING:
            if speech:
                self.run += 1
                if self.run >= self.onset:
                    st = SPEECH
                    s = n + 1 - self.onset - self.preroll
                    self.start = s if s > 0 else 0
                    self.last = n
            else:
                self.run = 0
            if st == WAITING and n + 1 >= self.max_frames:
                st = SILENCE
        else:
            if speech:
                self.last = n
            if n - self.last >= self.hangover:
                st = DONE
                e = self.last + 1 + self.tail
                self.end = e if e < n + 1 else n + 1
            elif n + 1 >= self.max_frames:
                st = DONE
                self.end = n + 1
        self.n = n + 1
        self.state = st
        return st
