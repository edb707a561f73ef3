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
    # inside a command a frame counts as speech only within this of the loudest frame so far
    # (0: off, as in sidecars before 27 Nov). 2000 was the smallest of 800-3200 that kept
    # the shipped command model's best path within 0.5 points of no drop on its validation
    # windows (20 / 10 / 5 dB): 84.7 / 76.5 / 62.0 % against 84.8 / 76.7 / 62.2 %, with
    # 95 / 78 / 72 % of the answers within 500 ms of the speech's end, against 78 / 74 / 70 %
    "drop": 2000,
}

#: The settings every command model's sidecar has ("drop" came later: absent means 0).
REQUIRED = tuple(k for k in DEFAULTS if k != "drop")


def settings(vad: dict) -> dict:
    """`endpoint`'s keyword arguments from a sidecar's or recipe's ``vad`` dict."""
    return {k: (vad[k] if k in REQUIRED else vad.get(k, 0)) for k in DEFAULTS}


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
    drop: int = 0,
) -> Segment:
    """The firmware's end-pointer over the frames of one listening window (from its start).

    ``drop`` is off (0) unless given: a sidecar's or recipe's settings go through `settings`.
    """
    e = energy(frames)
    st, run, start, last, end, peak = WAITING, 0, 0, 0, 0, 0
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
                    peak = int(e[n])
            else:
                run = 0
            if st == WAITING and n + 1 >= max_frames:
                st = SILENCE
        else:
            if drop:
                peak = max(peak, int(e[n]))
                speech = speech and e[n] >= peak - drop
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
