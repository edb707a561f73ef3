"""Endurance: a steady heap over minutes of audio, the host unplugging mid-stream, and a
corrupt model file on the flash."""

import json

import numpy as np

from voicenode_tools.hil import clips, soak
from voicenode_tools.hil.link import NodeLink


def test_heap_steady_over_mixed_audio(node, hil_target, wake_phrase, request, record_property):
    """`--hil-soak` seconds (default 120) of mixed audio: no crash, heap flat within 1 KB."""
    seconds = request.config.getoption("--hil-soak")
    res = soak.run(node, seconds, wake_phrase, seed=7, window=8 if hil_target.sim else 1)
    record_property("audio_seconds", round(res.audio_seconds, 1))
    record_property("heap_spread_bytes", res.heap_spread)
    record_property("detections", len(res.detections))
    record_property("phrases_spoken", len(res.expected))
    print(res.summary())
    failed = {k: msg for k, (ok, msg) in res.checks().items() if not ok}
    assert not failed, failed
    assert res.audio_seconds >= seconds - 0.1
    lat, misses, false = res.match()
    assert lat, "no wake phrase detected in the whole mix"


def test_host_unplugs_mid_stream(node, hil_target, wake_phrase):
    """Close the port in the middle of an injection; the next session finds the node running."""
    before = node.status()
    pid = getattr(hil_target.board, "pid", None)
    stream = np.concatenate([clips.silence(2.0, seed=3)] * 5)
    res = node.inject(stream, window=1, stop_after=len(stream) // 2)
    assert res.reason == "dropped"
    # The next session: interrupts the abandoned test input, no reset of the node.
    link = NodeLink(hil_target.path, hil_target.board, soft_reset=False)
    try:
        after = link.status()
        assert after["uptime_s"] >= before["uptime_s"]
        if hil_target.sim:
            assert hil_target.board.pid == pid, "the board rebooted"
        # Nothing of the test input stays enabled.
        hook = link.exec("from voicenode.actions import eventlog\nprint(eventlog._out)").strip()
        assert hook == "None"
        # And the pipeline still hears the phrase.
        res = link.inject(clips.positive(wake_phrase).pcm, window=8 if hil_target.sim else 1)
        assert len(res.of_kind("wake")) == 1, res.events
    finally:
        link.close()


def _app(node):
    return node.exec("print(open('/app/current').read().strip())").strip()


def test_corrupt_model_boots_safe(node):
    """Garbage in the model file: the node boots, logs the model error, keeps answering."""
    model = f"/app/{_app(node)}/models/{clips.default_model().name}"
    original = node.read_file(model)
    rng = np.random.default_rng(5)
    node.write_file(model, rng.integers(0, 256, len(original) // 2, dtype=np.uint8).tobytes())
    try:
        # main.py run to the end of its start (a hard reset's reconnection interrupts it
        # wherever it has got to, on a loaded machine once before "listening")
        node.boot(quiet=10.0)
        events = node.events()
        kinds = [e.get("event") for e in events]
        assert "model_error" in kinds or "default_model_error" in kinds, events
        assert "listening" in kinds, events
        assert node.status()["counters"].get("model_errors", 0) >= 1
        assert json.dumps(events)  # every kept event is well-formed JSON
    finally:
        node.write_file(model, original)
    assert node.read_file(model) == original
