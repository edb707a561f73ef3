"""The outbox ring (voicenode.actions.outbox) on the MicroPython Unix port, without a broker:
the client's calls (next_unsent, sending, sent, acked, requeue) in the orders a flaky link
produces them."""

import json
import subprocess

from voicenode_tools import FIRMWARE_DIR

CODE = r"""
import sys, json
sys.path.insert(0, %r)
import voicenode
from voicenode.actions import outbox
r = {}
def msgs(b):
    out = []
    for k in range(b.span):
        i = (b.head + k) %% b.slots
        if b.flags[i] & 1:
            out.append(bytes(b.payload(i)).decode())
    return out

# drop the oldest when full, counted
b = outbox.Outbox(slots=3, slot_bytes=32)
for n in range(5):
    b.put("t", "m%%d" %% n, qos=1)
r["full"] = [msgs(b), b.dropped, voicenode.counters.get("mqtt_dropped")]

# a slot dropped while its packet is being written: the newer message in it is not lost
b = outbox.Outbox(slots=2, slot_bytes=32)
b.put("t", "a", qos=1); b.put("t", "b", qos=1)
i = b.next_unsent(); b.sending(i)          # "a" goes out...
b.put("t", "c", qos=1)                      # ...ring full: "a" dropped, "c" takes its slot
b.sent(i, 7)                                # the write of "a" completes
nxt = b.next_unsent()
r["busy"] = [msgs(b), bytes(b.payload(nxt)).decode(), b.acked(7), len(b)]

# PUBACKs out of order; requeue marks DUP; a cut-off packet is sent again
b = outbox.Outbox(slots=4, slot_bytes=32)
for m in ("x", "y", "z"):
    b.put("t", m, qos=1)
ids = []
for pid in (1, 2):
    i = b.next_unsent(); b.sending(i); b.sent(i, pid); ids.append(i)
i3 = b.next_unsent(); b.sending(i3)         # "z" cut off mid-write
r["ack2"] = [b.acked(2), msgs(b), b.acked(2)]
b.requeue()
order = []
while True:
    i = b.next_unsent()
    if i < 0:
        break
    order.append([bytes(b.payload(i)).decode(), b.dup(i)])
    b.sending(i); b.sent(i, 9)
r["requeue"] = [order, b.inflight()]

# QoS 0 frees its slot once written; too big is refused, never truncated
b = outbox.Outbox(slots=2, slot_bytes=8)
r["q0"] = [b.put("t", "hello", qos=0), b.put("topic", "toolong"), b.too_big]
i = b.next_unsent(); b.sending(i); b.sent(i)
r["q0"] += [len(b), b.span]
print(json.dumps(r))
"""


def test_outbox_ring_semantics():
    res = subprocess.run(
        ["micropython", "-c", CODE % str(FIRMWARE_DIR)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.splitlines()[-1])
    assert r["full"] == [["m2", "m3", "m4"], 2, 2]
    assert r["busy"] == [["b", "c"], "b", False, 2]  # "c" still waits: never marked as sent
    assert r["ack2"] == [True, ["x", "z"], False]
    assert r["requeue"] == [[["x", True], ["z", False]], 2]
    assert r["q0"] == [True, False, 1, 0, 0]
