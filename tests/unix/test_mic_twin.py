"""The host twin of the microphone's DC high-pass (reference/mic.py) equals the firmware."""

import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import mic

CODE = r"""
import sys
sys.path.insert(0, %(fw)r)
sys.path.insert(0, %(fw)r + "/voicenode/hal")
from array import array
from mic import Microphone

class WordsI2S:
    def __init__(self, path):
        self.f = open(path, "rb")
    def readinto(self, buf):
        return self.f.readinto(buf)

mic = Microphone(WordsI2S(%(path)r), {"slot_bits": %(bits)d, "channels": 1, "channel": 0,
                 "bit_delay": 0, "shift": %(shift)d})
out = open(%(out)r, "wb")
for _ in range(%(blocks)d):
    out.write(mic.read())
out.close()
"""


@pytest.mark.parametrize("bits,shift", [(32, 14), (32, 16), (16, 0)])
def test_highpass_twin_matches_firmware(tmp_path, bits, shift):
    rng = np.random.default_rng(bits + shift)
    n = 160 * 50
    t = np.arange(n)
    pcm = (3000 * np.sin(t / 7.0) + rng.normal(0, 2000, n) + 5000).astype(np.int64)
    pcm[100:140] = 32767  # full scale with a DC offset: the filter's output saturates
    pcm = np.clip(pcm, -32768, 32767)
    if bits == 32:
        words = (
            (pcm << shift).astype("<i4").tobytes()
        )  # the board's scaling, as the sim delivers it
    else:
        words = pcm.astype("<i2").tobytes()
    src, dst = tmp_path / "words.bin", tmp_path / "out.bin"
    src.write_bytes(words)
    code = CODE % dict(
        fw=str(FIRMWARE_DIR), path=str(src), out=str(dst), bits=bits, shift=shift, blocks=n // 160
    )
    res = subprocess.run(["micropython", "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    chip = np.frombuffer(dst.read_bytes(), "<i2")
    want, clipped = mic.highpass(pcm, frac=mic.dc_frac(bits, shift))
    assert np.array_equal(chip, want)
    assert np.abs(want[4000:].astype(np.int64).mean()) < 200  # the 5000 DC offset is gone
