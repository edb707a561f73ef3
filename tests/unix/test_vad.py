"""The end-pointer (firmware/voicenode/vad.py) on the Unix port against its numpy twin."""

import json
import subprocess

import numpy as np

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import vad as ref_vad
from voicenode_tools.train import commands as tc
from voicenode_tools.train import synth

CODE = """
import sys, json
sys.path.insert(0, {fw!r})
from voicenode import vad
data = open({path!r}, 'rb').read()
nw = {nw}
out = []
ep = vad.Endpointer({threshold}, {onset}, {hangover}, {max_frames}, {preroll}, {tail}, 40, {drop})
fr = bytearray(40)
per = len(data) // (40 * nw)
for w in range(nw):
    ep.reset()
    st = 0
    k = 0
    while st < vad.DONE and k < per:
        off = (w * per + k) * 40
        fr[:] = data[off:off + 40]
        st = ep.step(fr)
        k += 1
    out.append([st, ep.start, ep.end, ep.last, k])
print(json.dumps(out))
"""


def firmware_endpoint(wins, tmp_path, **settings):
    s = {**ref_vad.DEFAULTS, "drop": 0, **settings}
    p = tmp_path / "w.bin"
    p.write_bytes(np.concatenate(wins).astype(np.uint8).tobytes())
    prog = CODE.format(fw=str(FIRMWARE_DIR), path=str(p), nw=len(wins), **s)
    r = subprocess.run(["micropython", "-c", prog], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _frames(levels):
    """Frames whose 40 bytes all equal the given per-frame level."""
    return np.repeat(np.asarray(levels, np.uint8)[:, None], 40, axis=1)


def test_twin_equals_firmware_on_patterns_and_real_speech(tmp_path):
    rng = np.random.default_rng(2)
    wins = []
    for _ in range(12):  # random bursts of loud and quiet frames
        lv = np.where(rng.random(300) < rng.uniform(0.05, 0.6), 60, 20)
        lv[: rng.integers(0, 100)] = 15
        wins.append(_frames(lv))
    wins.append(_frames(np.full(300, 20)))  # silence
    wins.append(_frames(np.full(300, 90)))  # speech that never stops
    pcm_rng = np.random.default_rng(4)
    for t in ("turn on the kitchen lights", "set a timer for twenty minutes", "stop"):
        pcm = synth.say(t, synth.random_espeak_voice(pcm_rng))
        w, _ = tc.scene(pcm, int(pcm_rng.integers(1 << 30)), (10, 10), 300, clean=0.0)
        wins.append(w)
    got = firmware_endpoint(wins, tmp_path)
    for w, g in zip(wins, got, strict=True):
        s = ref_vad.endpoint(w)
        assert g == [s.state, s.start, s.end, s.last, s.frames_used]
    states = [g[0] for g in got]
    assert states[12] == ref_vad.SILENCE and got[12][4] == 300
    assert states[13] == ref_vad.DONE and got[13][2] == 300  # cut at the 3 s window
    assert all(st == ref_vad.DONE for st in states[14:])  # every spoken command end-pointed
    # with the drop below the loudest frame (the shipped setting and a tight one), on the
    # same windows plus speech of falling loudness over noise above the threshold
    for lo in (45, 55):
        lv = np.full(300, lo)
        lv[:20] = 10
        lv[20:120] = np.linspace(110, lo, 100).astype(int)
        wins.append(_frames(lv))
    for drop in (ref_vad.DEFAULTS["drop"], 600):
        got = firmware_endpoint(wins, tmp_path, drop=drop)
        want = [ref_vad.endpoint(w, drop=drop) for w in wins]
        assert got == [[s.state, s.start, s.end, s.last, s.frames_used] for s in want]
        assert got[-1][2] < 300 and got[-2][2] < 300  # the noise after the voice ends it
    assert [ref_vad.endpoint(w).end for w in wins[-2:]] == [300, 300]  # without: the window


def test_drop_ends_a_command_in_steady_noise_above_the_threshold():
    lv = np.full(300, 10)
    lv[50:150] = 100  # one second of speech (sum 4000), then noise of 45 (1800 >= 1600)
    lv[150:] = 45
    lv[100:104] = 48  # a soft syllable inside, within the drop of the loudest frame: kept
    off = ref_vad.endpoint(_frames(lv))
    assert (off.state, off.end) == (ref_vad.DONE, 300)  # without: cut when the window closes
    on = ref_vad.endpoint(_frames(lv), drop=2000)  # speech is >= 4000 - 2000 = 2000 now
    assert (on.state, on.last, on.end, on.frames_used) == (ref_vad.DONE, 149, 155, 180)
    assert ref_vad.settings({k: 1 for k in ref_vad.REQUIRED})["drop"] == 0  # older sidecars


def test_end_pointing_rules():
    d = ref_vad.DEFAULTS
    lv = np.full(300, 10)
    lv[50:150] = 80  # one second of speech
    lv[100:110] = 10  # a short pause inside is not the end
    s = ref_vad.endpoint(_frames(lv))
    assert s.state == ref_vad.DONE
    assert s.start == 50 - d["preroll"]
    assert s.last == 149 and s.end == 150 + d["tail"]
    # the decision comes `hangover` frames after the speech stops: 300 ms <= 500 ms target
    assert s.frames_used == 150 + d["hangover"]
    assert (s.frames_used - 150) * 10 <= 500
    # two isolated loud frames are not an onset
    lv = np.full(300, 10)
    lv[[30, 60]] = 80
    assert ref_vad.endpoint(_frames(lv)).state == ref_vad.SILENCE
