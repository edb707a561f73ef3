"""Speech without the wake phrase, loud noise and a quiet room never wake the node."""

import numpy as np
import pytest

from voicenode_tools.hil import clips


def negatives():
    out = [clips.negative(t, clips.VOICES[i % 3], seed=i) for i, t in enumerate(clips.NEGATIVES)]
    out.append(clips.noise_clip(6.0, seed=1, level=900))
    out.append(clips.Clip("quiet", clips.silence(6.0, seed=2), clips.rate(), 0, 0, False))
    return out


@pytest.fixture(scope="module")
def negative_stream():
    """All the negatives back to back (one injection: fast, and no reset between them)."""
    parts = negatives()
    return np.concatenate([c.pcm for c in parts]), parts


def test_no_wake_on_negatives(negative_stream, inject, record_property):
    pcm, parts = negative_stream
    res = inject(pcm)
    wakes = res.of_kind("wake")
    record_property("negative_seconds", round(len(pcm) / clips.rate(), 1))
    record_property("false_wakes", len(wakes))
    where = []
    for pos, e in wakes:
        start = 0
        for c in parts:
            if pos < start + len(c.pcm):
                where.append(f"{c.name} at {e.get('at')} s (score {e.get('score')})")
                break
            start += len(c.pcm)
    assert not wakes, "false wakes: " + "; ".join(where)
    assert res.samples == len(pcm)
