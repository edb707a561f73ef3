"""`voicenode demo`: the virtual board hears the shipped recording and wakes on its two
"hey Jarvis" (said by an espeak voice held out of training), and on nothing else."""

import io

from voicenode_tools.audio import load_16k
from voicenode_tools.demo import DEMO_WAV, SCRIPT, run_demo


def test_demo_wakes_on_both_wake_phrases_only(tmp_path):
    out = io.StringIO()
    events = run_demo(realtime=False, flash_image=tmp_path / "flash.img", out=out)
    wakes = [e for e in events if e["event"] == "wake"]
    assert [e["word"] for e in wakes] == ["hey_jarvis"] * sum(t == "Hey Jarvis." for t, _, _ in SCRIPT)
    assert all(e["score"] >= 0.5 for e in wakes)
    assert events[-1]["event"] == "status" and events[-1]["at"] >= len(load_16k(DEMO_WAV)) / 16000
    assert not any(e["event"] == "error" for e in events)
    text = out.getvalue()
    assert "virtual board on /dev/pts/" in text and "done: 2 wake event(s)" in text
