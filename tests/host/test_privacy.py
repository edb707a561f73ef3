"""Privacy, proven: only events and intents leave the node.

The real firmware pipeline (voicenode.node.Node: front end -> wake-word detector -> event log)
runs on the MicroPython Unix port with the real actions (voicenode.actions.start: event-log
hook -> outbox -> MQTT client) against a real Mosquitto on a free loopback port. It hears a
session of speech synthesized by espeak-ng at test time (wake phrases, commands, background
talk) plus the repository's speech recording. EVERYTHING the node sends is captured:

- every MQTT message, by a host subscriber to '#' on the broker (and the retained ones);
- every line the node prints on its console (stdout) and stderr;
- every socket the process opens and every address it connects or sends to, twice: inside
  MicroPython (a `socket` module wrapper on sys.path that records getaddrinfo/connect) and at
  the operating-system level (strace of the socket, connect, sendto, sendmsg and bind calls).

and checked: each MQTT payload and each console line is a small JSON event, intent,
discovery or availability message (<= 512 bytes, known keys only); no payload or line holds
any 64-byte window of the PCM or of the feature matrix, raw, hex or base64; no long hex or
base64 run at all; the only connection is to the configured broker and no datagram is sent.

Intents come from the real command recogniser (config "commands": the shipped
commands_home model) listening after each wake, as on a board; the wake events come from a
wake model that fires often on this session (what it detects is irrelevant to what may leave).
"""

import base64
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.audio import load_16k, read_wav, resample
from voicenode_tools.reference import frontend, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unix"))
from test_mqtt_broker import Broker, Subscriber  # noqa: E402

NODE_ID = "privacy"
SPEC = [
    ("conv", 12, 3, 2, 1, "relu"),
    ("dwconv", 0, 5, 1, 2, "relu"),
    ("dense", 1, 1, 1, 1, "sigmoid"),
]
WINDOW = 64  # bytes: no payload may contain this much of the audio or the features
MAX_PAYLOAD = 512

SENTENCES = [
    "hey jarvis, turn on the kitchen light",
    "the weather today is cloudy with a chance of rain in the afternoon",
    "hey jarvis, set a timer for five minutes",
    "I think we should leave at seven, the traffic will be bad",
    "hey jarvis, turn off the light in the hall",
    "my bank account number is four two seven one nine, please keep it secret",
]

SOCKET_SHIM = r"""
# Test instrumentation (not firmware): the socket module, recording every use to a file.
import sys
_path = sys.path
sys.path = []
import socket as _s
from socket import *
sys.path = _path
_LOG = %r


def _rec(*a):
    with open(_LOG, "a") as f:
        f.write(repr(a) + "\n")


def getaddrinfo(*a):
    r = _s.getaddrinfo(*a)
    _rec("getaddrinfo", a)
    return r


class socket(_s.socket):
    def __init__(self, *a):
        _rec("socket", a)
        super().__init__(*a)

    def connect(self, addr):
        _rec("connect", _s.sockaddr(addr))
        return super().connect(addr)

    def sendto(self, *a):
        _rec("sendto", a)
        return super().sendto(*a)
"""

SESSION = r"""
import sys, time
sys.path[:0] = [%(shim)r, %(fw)r]
from array import array
import voicenode
from voicenode import node, actions
from voicenode.actions import eventlog
cfg = {"wake_words": ["hey_jarvis"], "cutoffs": {}, "status_every_s": 0,
       "commands": "commands_home"}
n = node.Node(cfg=cfg, models=%(models)r)
acts = actions.start(cfg, secrets={"mqtt": {"host": "127.0.0.1", "port": %(port)d,
                                           "node_id": %(nid)r, "keepalive": 10}})
assert n.commands is not None, "the command model did not load"
buf = array('h', bytes(320))
mv = memoryview(buf)
with open(%(pcm)r, 'rb') as f:
    while True:
        got = f.readinto(buf) // 2
        if not got:
            break
        n.feed(mv[:got])
        acts.poll()
box = acts.client.box
t0 = time.ticks_ms()
while (len(box) or not acts.client.is_up()) and time.ticks_diff(time.ticks_ms(), t0) < 10000:
    acts.poll()
    time.sleep_ms(1)
eventlog.emit("status", wakes=n.wakes, pending=len(box), mqtt=acts.client.state_name(),
              counters=voicenode.counters)
acts.client.disconnect()
"""


def synth_session(tmp_path):
    """The session's audio: espeak-ng speech (several voices) + the shipped recording."""
    parts = []
    rng = np.random.default_rng(7)
    for i, text in enumerate(SENTENCES):
        wav = tmp_path / f"s{i}.wav"
        voice = ["en-us", "en", "en-us+f3", "en+m3"][i % 4]
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(140 + 10 * i), "-w", str(wav), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        x, rate = read_wav(wav)
        parts.append(resample(x, rate, 16000) if rate != 16000 else x)
        parts.append(rng.normal(0, 300, 8000).astype(np.int16))  # room noise between utterances
    parts.append(load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav"))
    return np.concatenate(parts).astype(np.int16)


def make_model(folder, pcm, seed=1, frac=0.9):
    """A random wake model whose cutoff lets the top `frac` quantile of windows through, so
    this session has wake events (what it detects is irrelevant to what may leave)."""
    feats = frontend.features(pcm)
    model = nn.random_model(np.random.default_rng(seed), spec=SPEC)
    p = model.stream(feats).astype(np.float64)
    means = np.convolve(p, np.ones(4) / 4, mode="valid")
    cutoff = float(np.clip(np.quantile(means, frac) / 255.0, 0.01, 0.99))
    side = dict(
        name="hey_jarvis",
        wake_phrase="hey jarvis",
        cutoff=cutoff,
        window=4,
        cooloff=100,
        frontend=nn.frontend_params(),
    )
    model.save(folder / "hey_jarvis.vnm", side)
    return feats


def windows(data, n=WINDOW):
    return {data[i : i + n] for i in range(0, len(data) - n + 1)}


HEX_RUN = re.compile(rb"[0-9a-fA-F]{%d,}" % (2 * WINDOW))
B64_RUN = re.compile(rb"[A-Za-z0-9+/]{%d,}={0,2}" % (4 * WINDOW // 3))


def decoded_forms(payload):
    """The payload and everything a hex or base64 run in it decodes to."""
    forms = [payload]
    for run in HEX_RUN.findall(payload):
        for k in (0, 1):
            r = run[k:]
            forms.append(bytes.fromhex(r[: len(r) // 2 * 2].decode()))
    for run in B64_RUN.findall(payload):
        for k in range(4):
            r = run[k:].rstrip(b"=")
            r = r[: len(r) // 4 * 4]
            try:
                forms.append(base64.b64decode(r))
            except ValueError:
                pass
    return forms


ALLOWED_KEYS = {
    "wake": {"event_type", "word", "score", "at"},
    "intent": {"event_type", "intent", "slots", "score", "at", "reason"},
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("strace") is None:
        raise AssertionError("espeak-ng and strace are needed (scripts/setup.sh installs them)")
    tmp = tmp_path_factory.mktemp("privacy")
    pcm = synth_session(tmp)
    raw = tmp / "session.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    feats = make_model(tmp, pcm)
    for f in ("commands_home.json", "commands_home.vcg", "commands_home_net.vnm",
              "commands_home_net.json"):  # fmt: skip
        shutil.copy(REPO_ROOT / "models" / f, tmp / f)
    shim = tmp / "shim"
    shim.mkdir()
    sock_log = tmp / "sockets.log"
    (shim / "socket.py").write_text(SOCKET_SHIM % str(sock_log))
    broker = Broker(tmp / "broker").start()
    try:
        with Subscriber(broker.port, "#", "observer") as sub:
            code = SESSION % dict(
                shim=str(shim),
                fw=str(FIRMWARE_DIR),
                models=str(tmp),
                port=broker.port,
                nid=NODE_ID,
                pcm=str(raw),
            )
            trace = tmp / "strace.txt"
            t0 = time.monotonic()
            res = subprocess.run(
                [
                    "strace",
                    "-f",
                    "-qq",
                    "-o",
                    str(trace),
                    "-e",
                    "trace=socket,connect,sendto,sendmsg,sendmmsg,bind",
                    "micropython",
                    "-X",
                    "heapsize=1m",
                    "-c",
                    code,
                ],
                capture_output=True,
                text=True,
                timeout=240,
            )
            took = time.monotonic() - t0
            # What the console says went out must have reached the observer: on a busy
            # machine the broker can pass the last messages on after the node has exited.
            said = re.findall(r'"event": "(wake|intent)"', res.stdout)
            sent = [f"voicenode/{NODE_ID}/{e}" for e in said]

            def arrived(msgs):
                topics = [m["topic"] for m in msgs]
                return all(topics.count(t) >= sent.count(t) for t in set(sent))

            try:
                sub.wait_for(arrived, timeout=10)
            except AssertionError:
                pass  # the tests below say what is missing
            time.sleep(0.3)  # and nothing more than that follows
            live = list(sub.messages)
        with Subscriber(broker.port, "#", "late") as late:
            time.sleep(0.5)
            retained = list(late.messages)
    finally:
        broker.stop()
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(
        pcm=pcm,
        feats=feats,
        res=res,
        live=live,
        retained=retained,
        port=broker.port,
        sock_log=sock_log.read_text(),
        strace=trace.read_text(),
        took=took,
    )


def console_events(session):
    return [json.loads(line) for line in session["res"].stdout.splitlines()]


def test_the_session_really_ran_events_out(session):
    events = console_events(session)
    wakes = [e for e in events if e["event"] == "wake"]
    intents = [e for e in events if e["event"] == "intent"]
    status = events[-1]
    assert status["event"] == "status" and status["mqtt"] == "up" and status["pending"] == 0
    assert len(wakes) >= 3 and len(wakes) == status["wakes"]
    # the recogniser answers each listening window it finishes (a new wake restarts it)
    assert 1 <= len(intents) <= len(wakes)
    topics = [m["topic"] for m in session["live"]]
    assert topics.count(f"voicenode/{NODE_ID}/wake") == len(wakes)
    assert topics.count(f"voicenode/{NODE_ID}/intent") == len(intents)
    assert status["counters"].get("mqtt_dropped", 0) == 0


def test_console_is_only_json_events(session):
    assert session["res"].stderr == ""
    for line in session["res"].stdout.splitlines():
        e = json.loads(line)  # every console line is one JSON object
        assert isinstance(e, dict) and set(e) >= {"t", "event"}
        assert isinstance(e["event"], str) and "error" not in e["event"], e
        if e["event"] != "status":
            assert len(line.encode()) <= MAX_PAYLOAD


def test_mqtt_payloads_are_only_small_events_intents_discovery_availability(session):
    messages = session["live"] + session["retained"]
    assert messages
    base = f"voicenode/{NODE_ID}/"
    for m in messages:
        t, p = m["topic"], m["payload"]
        assert len(p) <= MAX_PAYLOAD, (t, len(p))
        if t == base + "availability":
            assert p in (b"online", b"offline")
        elif t == base + "muted":
            assert p in (b"ON", b"OFF")
        elif t.startswith("homeassistant/"):
            cfg = json.loads(p)
            assert t.endswith("/config") and cfg["stat_t"].startswith(base)
        else:
            kind = t[len(base) :]
            assert t.startswith(base) and kind in ALLOWED_KEYS, t
            body = json.loads(p)
            assert set(body) <= ALLOWED_KEYS[kind] and body["event_type"] == kind, body
            for v in body.values():  # scalars or a small slot dict: no arrays of samples
                assert not isinstance(v, list)


def leak(sent, secrets):
    """(secret index, offset) of the first 64-byte window of a secret found in anything sent
    (raw, or decoded from a hex or base64 run), or None."""
    mine = set()
    for s in sent:
        for form in decoded_forms(s):
            mine |= windows(form)
    for k, secret in enumerate(secrets):
        for i in range(len(secret) - WINDOW + 1):
            if secret[i : i + WINDOW] in mine:
                return k, i
    return None


def test_the_leak_check_finds_planted_audio():
    pcm = np.random.default_rng(3).integers(-3000, 3000, 8000).astype("<i2").tobytes()
    piece = pcm[1001 : 1001 + 70]
    clean = [b'{"event_type": "wake", "word": "hey_jarvis", "score": 0.9}']
    assert leak(clean, [pcm]) is None
    planted = [
        b'{"x": "' + piece.hex().encode() + b'"}',
        b'{"x": "' + base64.b64encode(piece) + b'"}',
        b'{"x": "' + base64.b64encode(b"ab" + piece) + b'"}',  # base64 not aligned to it
        b"raw" + piece,
    ]
    for p in planted:
        assert leak(clean + [p], [b"other" * 100, pcm]) == (1, 1001), p[:40]


def test_nothing_sent_holds_audio_or_features(session):
    pcm_bytes = session["pcm"].astype("<i2").tobytes()
    feat_bytes = np.ascontiguousarray(session["feats"], dtype=np.uint8).tobytes()
    assert len(pcm_bytes) > 500_000 and len(feat_bytes) > 50_000
    sent = [m["payload"] for m in session["live"] + session["retained"]]
    sent += [m["topic"].encode() for m in session["live"]]
    sent += [line.encode() for line in session["res"].stdout.splitlines()]
    assert sum(len(s) for s in sent) > 2000  # there is something to check
    for s in sent:  # no long hex or base64 run at all
        assert not HEX_RUN.search(s) and not B64_RUN.search(s), s[:100]
    assert leak(sent, [pcm_bytes, feat_bytes]) is None


def test_the_only_connection_is_to_the_configured_broker(session):
    port = session["port"]
    calls = [eval(line) for line in session["sock_log"].splitlines()]  # noqa: S307 - our repr()
    connects = [c for c in calls if c[0] == "connect"]
    assert connects and all(
        c[1][0] == 2 and c[1][1] == b"\x7f\x00\x00\x01" and c[1][2] == port for c in connects
    ), connects
    assert not [c for c in calls if c[0] == "sendto"]
    assert [c[1][:2] for c in calls if c[0] == "getaddrinfo"] == [("127.0.0.1", port)]
    # The operating system's view of the whole process tree: one TCP socket, one connect.
    lines = session["strace"].splitlines()
    sockets = [ln for ln in lines if re.search(r"\bsocket\(", ln)]
    connects = [ln for ln in lines if re.search(r"\bconnect\(", ln)]
    assert sockets and connects, session["strace"]
    assert all("socket(AF_INET, SOCK_STREAM" in ln for ln in sockets), sockets
    for ln in connects:
        assert f"sin_port=htons({port})" in ln and 'inet_addr("127.0.0.1")' in ln, ln
    assert not [
        ln for ln in lines if re.search(r"\b(sendto|sendmsg|sendmmsg|bind)\(", ln) and "sin" in ln
    ], "a datagram or bound socket"
