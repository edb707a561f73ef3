"""The firmware's test input on the MicroPython Unix port, driven through a pipe.

The node it feeds is a recorder (counts samples, emits one event at a chosen sample) so that
the protocol itself is checked exactly: acknowledgements, event positions, status, reset,
the end on a foreign byte, and the timeout when the host goes quiet. The real node is fed by
the same code in tests/hil.
"""

import base64
import json
import subprocess

import numpy as np

from voicenode_tools import FIRMWARE_DIR

RECORDER = """
import sys
sys.path.insert(0, '.')
from voicenode.actions import eventlog
class Recorder:
    def __init__(self):
        self.n = 0
        self.sizes = []
        self.resets = 0
        self.total = 0
    def reset(self):
        self.n = 0
        self.resets += 1
    def feed(self, s):
        self.sizes.append(len(s))
        self.total += sum(s)
        before = self.n
        self.n += len(s)
        if before < {fire} <= self.n:
            eventlog.emit('wake', word='test', at=self.n)
import voicenode.testinput as t
r = Recorder()
got = t.run(r, timeout_ms={timeout})
print('RESULT', got, r.n, r.resets, max(r.sizes) if r.sizes else 0, r.total)
"""


def record(pcm):
    b64 = base64.b64encode(np.asarray(pcm, "<i2").tobytes())
    return b"D%04x" % len(b64) + b64 + b"\n"


def run(stdin: bytes, fire=10**9, timeout=3000):
    out = subprocess.run(
        ["micropython", "-X", "heapsize=256k", "-c", RECORDER.format(fire=fire, timeout=timeout)],
        input=stdin,
        cwd=FIRMWARE_DIR,
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()
    return out.stdout.decode().splitlines()


def test_records_acks_events_and_status():
    pcm = np.arange(-1250, 1250, dtype=np.int16)
    # records of 512 and 511 samples: base64 with "==" and "=" padding
    cuts = [0, 512, 1023, 1535, 2047, 2500]
    recs = [record(pcm[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    stdin = b"R\n" + recs[0] + recs[1] + b"S\n" + b"".join(recs[2:])
    lines = run(stdin + b"Q\n", fire=1500)
    assert lines[0].startswith("HIL+ ")
    assert json.loads(lines[0][5:])["max_chunk"] == 512
    acks = [ln for ln in lines if ln.startswith("A")]
    assert acks == ["A%d" % c for c in cuts]
    i = next(k for k, ln in enumerate(lines) if '"event": "wake"' in ln)
    # The event is followed by the sample count at which it came out: the end of the 10 ms
    # feed (160 samples, counted from the start of each record) that crossed sample 1500.
    assert lines[i + 1] == "@%d" % (1023 + 3 * 160)
    status = json.loads(next(ln for ln in lines if ln.startswith("S{"))[1:])
    assert status["heap_free"] > 0 and "counters" in status
    end = json.loads(next(ln for ln in lines if ln.startswith("HIL- "))[5:])
    assert end["reason"] == "quit" and end["samples"] == 2500
    assert lines[-1] == "RESULT 2500 2500 1 160 %d" % int(pcm.astype(np.int64).sum())


def test_foreign_byte_ends_it_at_once():
    lines = run(record(np.zeros(300, np.int16)) + b"\r\x03\x03\r\x01")
    end = json.loads(next(ln for ln in lines if ln.startswith("HIL- "))[5:])
    assert end["reason"] == "interrupted" and "0x0d" in end["detail"]
    assert lines[-1].startswith("RESULT 300 300")


def test_gives_up_when_the_host_is_quiet():
    # stdin stays open and silent: the test input must end by itself.
    proc = subprocess.Popen(
        ["micropython", "-c", RECORDER.format(fire=10**9, timeout=300)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=FIRMWARE_DIR,
    )
    proc.stdin.write(record(np.zeros(100, np.int16)))
    proc.stdin.flush()
    out = proc.stdout.read().decode().splitlines()
    proc.wait(10)
    proc.stdin.close()
    end = json.loads(next(ln for ln in out if ln.startswith("HIL- "))[5:])
    assert end["reason"] == "timeout" and end["samples"] == 100


def test_a_record_that_is_not_base64_is_refused():
    lines = run(b"D0008AAAA!AAA\n")
    end = json.loads(next(ln for ln in lines if ln.startswith("HIL- "))[5:])
    assert end["reason"] == "error" and "not base64" in end["detail"]


def test_oversized_record_is_refused():
    big = np.zeros(2000, np.int16)
    lines = run(record(big))
    end = json.loads(next(ln for ln in lines if ln.startswith("HIL- "))[5:])
    assert end["reason"] == "error" and "base64" in end["detail"]
