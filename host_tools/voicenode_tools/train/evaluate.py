"""Validation: detections with the chip's post-processing, false rejects and false accepts.

Detection follows docs/MODEL_FORMAT.md (ESPHome's micro_wake_word): a ring of the last
`window` uint8 probabilities (zeros after a reset); the word is detected when
`sum(ring) >= cutoff_u8 * window` outside a cool-off, then the ring is cleared and the next
`cooloff` model steps cannot detect.
"""

from __future__ import annotations

import numpy as np

#: A positive counts as detected from its first frame to this long after its end.
DETECT_AFTER_S = 1.0


def detections(probs: np.ndarray, cutoff_u8: int, window: int, cooloff: int) -> list[int]:
    """Model steps at which the detector fires.

    Exactly the ring semantics: clearing the ring after a detection matters only while the
    cool-off is shorter than the window, which is handled by re-summing from the clear.
    """
    p = np.asarray(probs, np.int64)
    csum = np.concatenate([[0], np.cumsum(p)])
    need = cutoff_u8 * window
    m_idx = np.arange(len(p))
    lo = np.maximum(m_idx + 1 - window, 0)
    sums = csum[m_idx + 1] - csum[lo]
    cand = np.flatnonzero(sums >= need)
    out = []
    cleared_at = -1  # the ring was cleared after this step
    i = 0
    while i < len(cand):
        m = int(cand[i])
        s = csum[m + 1] - csum[max(m + 1 - window, cleared_at + 1)]
        if s >= need:
            out.append(m)
            cleared_at = m
            # Skip the cool-off: steps m+1 .. m+cooloff cannot detect.
            i = int(np.searchsorted(cand, m + cooloff + 1))
        else:
            i += 1
    return out


def frame_of_step(step: int, stride: int) -> int:
    """The feature frame that completed model step ``step``."""
    return step * stride + stride - 1


def score_tracks(probs_list, tracks, stride: int, cutoff_u8: int, window: int, cooloff: int):
    """Count (detected positives, positives, false accepts) over tracks.

    A detection inside a positive's span (its first frame to DETECT_AFTER_S after its end)
    detects it; any other detection is a false accept.
    """
    hit = total = fa = 0
    after = int(DETECT_AFTER_S * 100)
    for probs, tr in zip(probs_list, tracks, strict=True):
        pos = [(s, e + after) for s, e, k in tr.events if k == "pos"]
        found = [False] * len(pos)
        for m in detections(probs, cutoff_u8, window, cooloff):
            f = frame_of_step(m, stride)
            inside = [i for i, (a, b) in enumerate(pos) if a <= f <= b]
            if inside:
                found[inside[0]] = True
            else:
                fa += 1
        hit += sum(found)
        total += len(pos)
    return hit, total, fa


def sweep(probs_list, tracks, stride, window, cooloff, cutoffs=range(1, 255)):
    """`score_tracks` for every uint8 cutoff: arrays (hits, positives, false accepts)."""
    res = np.array([score_tracks(probs_list, tracks, stride, c, window, cooloff) for c in cutoffs])
    return res[:, 0], res[:, 1], res[:, 2]


def hours(tracks) -> float:
    """Duration of tracks in hours (10 ms feature frames)."""
    return sum(len(t.feats) for t in tracks) / 100.0 / 3600.0
