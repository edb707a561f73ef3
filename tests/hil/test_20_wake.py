"""The wake phrase, said by espeak-ng and injected, wakes the node: when and as the host says.

Each clip is the shipped model's phrase in quiet room noise. The node's "wake" events must be
exactly the host twin's (`voicenode_tools.reference.node.events`: same word, score and audio
time), and the plain voice must be heard. The latency of each event is measured two ways and
recorded in the JUnit report: from the end of the phrase to the audio time of the detection
("at", the end of the feature window that fired), and to the sample count at which the event
came out of the node (injection resolution: one 10 ms feed).
"""

import pytest

from voicenode_tools.hil import clips

WAKE_LATENCY_MAX = 1.0  # seconds after the end of the phrase


@pytest.fixture(scope="module")
def positives(wake_phrase):
    return [clips.positive(wake_phrase, v, seed=i) for i, v in enumerate(clips.VOICES)]


def reference_wakes(pcm):
    from voicenode_tools.reference.node import events

    model = str(clips.default_model())
    return [e for e in events(pcm, [model], default=model) if e["event"] == "wake"]


@pytest.mark.parametrize("k", range(len(clips.VOICES)), ids=[v[0] + v[1] for v in clips.VOICES])
def test_wake_phrase_detected(k, positives, inject, hil_target, record_property):
    clip = positives[k]
    res = inject(clip)
    wakes = res.of_kind("wake")
    record_property("detections", len(wakes))
    if not hil_target.acoustic:
        got = [{f: e[f] for f in ("event", "word", "score", "at")} for _, e in wakes]
        assert got == reference_wakes(clip.pcm), "the node and its host twin disagree"
    if k == 0:
        assert len(wakes) == 1, f"{clip.name}: {len(wakes)} detections of '{clip.text}'"
    end = clip.word_end / clip.rate
    for pos, e in wakes:
        out_latency = pos / clip.rate - end
        record_property("latency_out_ms", round(out_latency * 1000))
        if not hil_target.acoustic:
            at_latency = e["at"] - end
            record_property("latency_at_ms", round(at_latency * 1000))
            # A few ms early is normal: the end of speech is the last sample above a threshold,
            # and the window that fires may end just before the phrase's quiet tail.
            assert -0.15 <= at_latency <= WAKE_LATENCY_MAX, (
                f"detected {at_latency:+.3f} s after the end"
            )
            # The event leaves the node within one feed (10 ms) of the frame that fired.
            assert -0.001 <= pos / clip.rate - e["at"] <= 0.011
        assert -0.2 <= out_latency <= WAKE_LATENCY_MAX + 0.3


def test_chunking_does_not_matter(positives, node, hil_target):
    """The same clip in 160-sample and 1024-sample records gives the same events."""
    clip = positives[0]
    window = 8 if hil_target.sim else 1
    a = node.inject(clip.pcm, chunk=160, window=window).of_kind("wake")
    b = node.inject(clip.pcm, chunk=1024, window=window).of_kind("wake")
    strip = lambda w: [{f: e[f] for f in ("word", "score", "at")} for _, e in w]  # noqa: E731
    assert strip(a) == strip(b) and len(a) == 1
