"""voicenode.hal.mic.Microphone on the Unix port, fed by a fake I2S (duck-typed readinto)."""

import subprocess

from voicenode_tools import FIRMWARE_DIR

PRELUDE = r"""
import sys, random
sys.path.insert(0, %r)
# mic.py on its own: voicenode.hal's __init__ imports the board, which this test does not need.
sys.path.insert(0, %r + "/voicenode/hal")
from array import array
import voicenode
from mic import Microphone, ibuf_for

class FakeI2S:
    # Serves little-endian slot words from a bytes object, block by block.
    def __init__(self, data):
        self.data = data
        self.pos = 0
    def readinto(self, buf):
        # A plain loop: slicing would allocate, and the heap-lock test locks around this.
        n = min(len(buf), len(self.data) - self.pos)
        d = self.data
        p = self.pos
        for i in range(n):
            buf[i] = d[p + i]
        self.pos = p + n
        return n

def words32(values):
    b = bytearray()
    for v in values:
        b += (v & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(b)

def twin(word, bit_delay, shift):
    # The board's documented conversion (voicenode.hal.to_int16) without the high-pass.
    w = (word << bit_delay) & 0xFFFFFFFF
    if w & 0x80000000:
        w -= 0x100000000
    s = w >> shift
    return max(-32768, min(32767, s)), (s > 32767 or s < -32768)

random.seed(5)
""" % (str(FIRMWARE_DIR), str(FIRMWARE_DIR))


def run(code):
    out = subprocess.run(
        ["micropython", "-X", "heapsize=512k", "-c", PRELUDE + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def test_32bit_slots_with_24_significant_bits_mono():
    out = run(r"""
vals = [(random.getrandbits(24) - (1 << 23)) << 8 for _ in range(800)]
vals[3] = 0x7FFFFF00; vals[4] = -0x80000000; vals[5] = 0x00000100
mic = Microphone(FakeI2S(words32(vals)), {"slot_bits": 32, "channels": 1, "channel": 0,
                 "bit_delay": 0, "shift": 14}, hp_shift=0)
got = []
for _ in range(5):
    got += list(mic.read())
want = [twin(v, 0, 14) for v in vals]
assert got == [w for w, _ in want], "conversion"
clips = sum(1 for _, c in want if c)
assert clips > 100
assert voicenode.counters["mic_clipped"] == clips, (voicenode.counters, clips)
assert voicenode.counters["mic_blocks"] == 5
print("ok", clips)
""")
    assert out.startswith("ok")


def test_stereo_right_slot_with_bit_delay_and_16bit_shift():
    out = run(r"""
vals = []
for _ in range(320):
    vals.append(random.getrandbits(32) - (1 << 31))  # left slot: garbage
    vals.append(((random.getrandbits(24) - (1 << 23)) << 7) & 0xFFFFFFFF)  # right, 1 bit late
mic = Microphone(FakeI2S(words32(vals)), slot_bits=32, channels=2, channel=1, bit_delay=1,
                 shift=16, hp_shift=0)
got = list(mic.read()) + list(mic.read())
want = [twin(v, 1, 16)[0] for v in vals[1::2]]
assert got == want
assert voicenode.counters["mic_clipped"] == 0
print("ok")
""")
    assert out.startswith("ok")


def test_16bit_slots():
    out = run(r"""
vals = [random.getrandbits(16) - 32768 for _ in range(160)]
b = bytearray()
for v in vals:
    b += (v & 0xFFFF).to_bytes(2, "little")
mic = Microphone(FakeI2S(bytes(b)), slot_bits=16, channels=1, shift=0, hp_shift=0)
assert list(mic.read()) == vals
print("ok")
""")
    assert out.startswith("ok")


def test_dc_offset_is_removed():
    out = run(r"""
import math
n = 16000
vals = [int((3000 + 1000 * math.sin(2 * math.pi * 440 * i / 16000))) << 14 for i in range(n)]
mic = Microphone(FakeI2S(words32(vals)), shift=14, hp_shift=10)
tail = []
for k in range(100):
    blk = mic.read()
    if k >= 50:
        tail += list(blk)
mean = sum(tail) / len(tail)
peak = max(abs(v) for v in tail)
print("mean", mean, "peak", peak)
""")
    mean = float(out.split("mean")[1].split()[0])
    peak = int(out.split("peak")[1].split()[0])
    assert abs(mean) < 20  # the 3000 offset is gone
    assert 950 < peak < 1050  # the 440 Hz tone passes


def test_ring_keeps_the_newest_and_counts_overruns():
    out = run(r"""
vals = [(i - 400) << 16 for i in range(800)]
mic = Microphone(FakeI2S(words32(vals)), shift=16, hp_shift=0, ring=320)
mic.read(); mic.read()
assert mic.available() == 320 and voicenode.counters["mic_overruns"] == 0
mic.read(); mic.read(); mic.read()
assert mic.available() == 320
assert voicenode.counters["mic_overruns"] == 480
out = array("h", bytes(2 * 200))
assert mic.take(out) == 200
assert list(out) == [i - 400 for i in range(480, 680)]
assert mic.take(out) == 120 and list(out[:120]) == [i - 400 for i in range(680, 800)]
assert mic.available() == 0
info = voicenode.status(out=False)
assert info["counters"]["mic_overruns"] == 480 and info["counters"]["mic_blocks"] == 5
print("ok")
""")
    assert out.startswith("ok")


def test_late_reads_count_as_driver_overruns():
    out = run(r"""
import time
vals = [0] * 1600
mic = Microphone(FakeI2S(words32(vals)), shift=16, ibuf=ibuf_for(16))
mic.read(); mic.read()
assert voicenode.counters["mic_overruns"] == 0
time.sleep_ms(40)
mic.read()
print("ok", voicenode.counters["mic_overruns"], ibuf_for(250), ibuf_for(250, channels=2))
""")
    assert out.split() == ["ok", "1", "16384", "32768"]


def test_read_allocates_nothing():
    out = run(r"""
import micropython
vals = [(random.getrandbits(24) - (1 << 23)) << 8 for _ in range(1600)]
mic = Microphone(FakeI2S(words32(vals)), shift=13, ring=1000, ibuf=ibuf_for(250))
out = array("h", bytes(2 * 100))
mic.read()
micropython.heap_lock()
try:
    for _ in range(3):
        mic.read()
    n = mic.take(out)
finally:
    micropython.heap_unlock()
print("ok", n, voicenode.counters["mic_clipped"] > 0)
""")
    assert out.split() == ["ok", "100", "True"]


def test_read_does_not_grow_the_heap():
    # heap_lock() misses one kind of allocation: a bytecode call whose frame (locals + value
    # stack) passes 11 words takes it from the heap, and under the lock silently from the C
    # stack instead. micropython.mem_total() (bytes ever allocated) sees it; `big` below is
    # such a call, the control that shows the measurement can fail.
    out = run(r"""
import micropython, gc
def big(a, b, c, d, e, f, g, h):
    i = j = k = m = 0  # 12 locals: the frame comes from the heap
    return a + b + c + d + e + f + g + h + i + j + k + m
def reads(mic, n):
    i = 0
    while i < n:
        mic.read()
        i += 1
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
class LoopI2S(FakeI2S):
    # Serves the data again and again (a short read would return a new slice).
    def readinto(self, buf):
        if self.pos + len(buf) > len(self.data):
            self.pos = 0
        return FakeI2S.readinto(self, buf)
vals = [(random.getrandbits(24) - (1 << 23)) << 8 for _ in range(160 * 6)]
res = []
for kw in ({"shift": 13, "ring": 1000, "ibuf": ibuf_for(250)},
           {"slot_bits": 32, "channels": 2, "channel": 1, "bit_delay": 1, "shift": 16},
           {"slot_bits": 16, "channels": 1, "shift": 0, "ring": 500}):
    mic = Microphone(LoopI2S(words32(vals)), **kw)
    res.append(grows(reads, mic))
print("reads", *res)
print("control", grows(bigs, 0))
print("clipped", voicenode.counters["mic_clipped"] > 0)
""")
    assert out.split("\n")[0].split() == ["reads", "0", "0", "0"], out
    assert int(out.split("control")[1].split()[0]) >= 100 * 8 * 8, out
    assert "clipped True" in out, out
