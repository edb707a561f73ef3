"""The soak's pieces on the host: the audio mix knows where each wake phrase ends, the pass
criteria judge what was recorded, and the reports (JUnit XML, summary, plot) are written."""

import xml.etree.ElementTree as ET

import numpy as np

from voicenode_tools.hil import soak
from voicenode_tools.hil.clips import speech_bounds


def test_mix_marks_where_each_phrase_ends():
    rate = 16000
    mix = soak.MixedAudio("hey jarvis", rate, seed=3)
    expected = []
    pcm = np.concatenate(list(mix.chunks(120, 1024, expected)))
    assert len(pcm) == 120 * rate
    assert all(len(c) <= 1024 for c in mix.chunks(10, 1024, []))
    assert len(expected) >= 3  # about 15 % of the segments say the phrase
    for t in expected:
        end = int(t * rate)
        before = np.abs(pcm[end - 800 : end].astype(np.int32)).max()
        after = np.abs(pcm[end + 400 : end + 4000].astype(np.int32)).max()
        assert before > 300 >= after  # loud speech up to the mark, the quiet room after it
        # The phrase ends at the clip's own end of speech.
        s, e = speech_bounds(pcm[end - rate : end + 1])
        assert e == rate


def test_checks_and_matching():
    r = soak.SoakResult(rate=16000, audio_seconds=3600, wall_seconds=100, port="sim")
    r.heap = [(t, 40000 + (5000 if t < 30 else (t % 7)), 200000) for t in range(0, 3600, 5)]
    r.expected = [100.0, 200.0, 300.0]
    r.events = [
        (100.3, {"t": 1.0, "event": "wake"}),
        (300.2, {"t": 2.0, "event": "wake"}),
        (1000.0, {"t": 3.0, "event": "wake"}),
    ]
    r.counters_before, r.counters = {"wakes": 4}, {"wakes": 7}
    lat, misses, false = r.match()
    assert np.allclose(lat, [0.3, 0.2]) and misses == 1 and false == [1000.0]
    checks = r.checks()
    assert all(ok for ok, _ in checks.values()), checks
    r.counters = {"wakes": 6}  # a wake the node counted whose event never came back
    ok, msg = r.checks()["wakes_counted"]
    assert not ok and "counted 2 wakes, 3 wake events" in msg
    r.counters = {}  # no final status: not a pass
    assert not r.checks()["wakes_counted"][0]
    r.counters = {"wakes": 7}
    r.heap.append((3600, 43000, 190000))  # a 3 KB step after warm-up: not flat
    r.events.append((3500, {"event": "error", "msg": "boom"}))
    checks = r.checks()
    assert not checks["heap_flat"][0] and not checks["no_crash"][0]
    assert "1 missed" not in r.summary() and "missed 1" in r.summary()


def test_reports_written(tmp_path):
    r = soak.SoakResult(rate=16000, audio_seconds=600, wall_seconds=20, port="/dev/pts/9")
    r.heap = [(t, 40000, 200000) for t in range(0, 600, 5)]
    r.expected = [50.0]
    r.events = [(50.4, {"t": 9.1, "event": "wake"})]
    r.counters = {"wakes": 1}
    files = soak.save(r, tmp_path)
    root = ET.parse(files["junit"]).getroot()
    assert root.tag == "testsuite" and root.get("name") == "voicenode-hil-soak"
    assert root.get("tests") == "4" and root.get("failures") == "0"
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "detected 1, missed 0" in files["summary"].read_text()
    assert '"audio_s": 50.4' in files["events"].read_text()


def test_truncated_ring_events_keep_their_kind():
    from voicenode_tools.hil.link import parse_event

    full = '{"t": 0.028, "event": "model_error", "error": "/app/x/models/hey_jarvis.vnm: not a'
    ev = parse_event(full)
    assert ev["event"] == "model_error" and ev["t"] == 0.028 and ev["truncated"] == full
    assert parse_event('{"t": 1.5, "event": "wake", "at": 2.0}') == {
        "t": 1.5,
        "event": "wake",
        "at": 2.0,
    }


def test_the_wake_phrase_is_said_as_the_recipe_spells_it(tmp_path):
    import json

    from voicenode_tools.hil.clips import wake_phrase

    side = {
        "wake_phrase": "hey mycroft",
        "recipe": {"phrase": "hey mycroft", "say": "hey my croft"},
    }
    (tmp_path / "hey_mycroft.json").write_text(json.dumps(side))
    assert wake_phrase(tmp_path / "hey_mycroft.vnm") == "hey my croft"  # not "mick-roft"
    (tmp_path / "a.json").write_text(json.dumps({"wake_phrase": "alexa", "recipe": {}}))
    assert wake_phrase(tmp_path / "a.vnm") == "alexa"
