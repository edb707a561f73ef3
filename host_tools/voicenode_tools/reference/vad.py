"""numpy twin of `firmware/voicenode/vad.py`: end-pointing on feature frames.

`endpoint(frames, ...)` replays the firmware's `Endpointer` on a whole listening window and
returns the same state and frame numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WAITING, SPEECH, DONE, SILENCE = 0, 1, 2, 3

#: Default end-pointer settings (frames of 10 ms); the sidecar of a command model records
#: the ones it was trained with, and the firmware reads them from there.
DEFAULTS = {
    "threshold": 1600,  # sum of 40 feature bytes (mean 40 per band above the floor)
    "onset": 3,
    "hangover": 30,  # 300 ms of silence ends a command
    "max_frames": 300,  # 3 s listening window
    "preroll": 8,
    "tail": 5,
}


@dataclass
class Segment:
    state: int  # DONE or SILENCE (or WAITING/SPEECH if the frames ran out first)
    start: int
    end: int
    last: int  # last speech frame
    frames_used: int  # frames the firmware consumed before deciding


def energy(frames: np.ndarray) -> np.ndarray:
    """Frame energies: the sum of each frame's bytes."""
    return np.asarray(frames, np.int64).sum(axis=1)


def endpoint(
    frames: np.ndarray,
    threshold: int = DEFAULTS["threshold"],
    onset: int = DEFAULTS["onset"],
    hangover: int = DEFAULTS["hangover"],
    max_frames: int = DEFAULTS["max_frames"],
    preroll: int = DEFAULTS["preroll"],
    tail: int = DEFAULTS["tail"],
) -> Segment:
    """The firmware's end-pointer over the frames of one listening window (from its start)."""
    e = energy(frames)
    st, run, start, last, end = WAITING, 0, 0, 0, 0
    n = 0
    for n in range(len(e)):
        speech = e[n] >= threshold
        if st == WAITING:
            if speech:
                run += 1
                if run >= onset:
                    st = SPEECH
                    start = max(0, n + 1 - onset - preroll)
                    last = n
            else:
                run = 0
            if st == WAITING and n + 1 >= max_frames:
                st = SILENCE
        else:
            if speech:
                last = n
            if n - last >= hangover:
                st = DONE
                end = min(last + 1 + tail, n + 1)
            elif n + 1 >= max_frames:
                st = DONE
                end = n + 1
        if st >= DONE:
            return Segment(st, start, end, last, n + 1)
    return Segment(st, start, end, last, len(e))
