"""Helpers for the MQTT tests: a real Mosquitto on a free loopback port, a host-side MQTT
subscriber, and a MicroPython driver process for the firmware's client. Also imported by
tests/host/test_privacy.py. The tests here check the helpers themselves against Mosquitto.

Nothing here reaches the network: the broker listens on 127.0.0.1 only.
"""

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from voicenode_tools import FIRMWARE_DIR

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real Mosquitto broker on 127.0.0.1:`port`, started and stopped by the test."""

    def __init__(self, workdir, port=None, passwords=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        conf = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if passwords:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in passwords.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pw), user, password],
                    check=True,
                    capture_output=True,
                )
            os.chmod(pw, 0o600)
            conf += ["allow_anonymous false", f"password_file {pw}"]
            if os.geteuid() == 0:  # else Mosquitto drops to user "mosquitto", who cannot read it
                conf += ["user root"]
        else:
            conf += ["allow_anonymous true"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout=10):
        self.log = open(self.dir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + (self.dir / "mosquitto.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not accept connections")

    def kill(self):
        """Pull the plug: SIGKILL, no goodbye to anyone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _enc_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def _enc_len(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Subscriber:
    """A tiny MQTT 3.1.1 subscriber on the host (QoS 1), collecting every message.

    `messages` holds dicts {topic, payload (bytes), retain, qos, dup}; a background thread
    reads the socket and answers PUBACK and keep-alive.
    """

    def __init__(self, port, topic="#", client_id="host-sub", keepalive=30):
        self.messages = []
        self._cv = threading.Condition()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        body = (
            _enc_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keepalive) + _enc_str(client_id)
        )
        self.sock.sendall(bytes([0x10]) + _enc_len(len(body)) + body)
        hdr, data = self._read_packet()
        assert hdr == 0x20 and data[1] == 0, "CONNACK refused"
        body = struct.pack(">H", 1) + _enc_str(topic) + bytes([1])
        self.sock.sendall(bytes([0x82]) + _enc_len(len(body)) + body)
        hdr, _ = self._read_packet()
        assert hdr == 0x90, "no SUBACK"
        self.sock.settimeout(None)
        self._alive = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _read_packet(self):
        hdr = self._recv_exact(1)[0]
        rl, mult = 0, 1
        while True:
            b = self._recv_exact(1)[0]
            rl += (b & 0x7F) * mult
            mult <<= 7
            if not b & 0x80:
                break
        return hdr, self._recv_exact(rl) if rl else b""

    def _run(self):
        try:
            while self._alive:
                hdr, data = self._read_packet()
                if hdr & 0xF0 == 0x30:
                    qos = (hdr >> 1) & 3
                    tl = struct.unpack(">H", data[:2])[0]
                    topic = data[2 : 2 + tl].decode()
                    i = 2 + tl
                    if qos:
                        pid = data[i : i + 2]
                        i += 2
                        self.sock.sendall(b"\x40\x02" + pid)
                    with self._cv:
                        self.messages.append(
                            {
                                "topic": topic,
                                "payload": data[i:],
                                "retain": bool(hdr & 1),
                                "qos": qos,
                                "dup": bool(hdr & 8),
                            }
                        )
                        self._cv.notify_all()
        except (OSError, EOFError):
            pass

    def wait_for(self, pred, timeout=10):
        """Wait until pred(messages) is true; returns the messages."""
        t0 = time.monotonic()
        with self._cv:
            while not pred(self.messages):
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    raise AssertionError(f"timed out; got {self.messages}")
                self._cv.wait(left)
            return list(self.messages)

    def on(self, topic):
        with self._cv:
            return [m for m in self.messages if m["topic"] == topic]

    def close(self):
        self._alive = False
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# The firmware's client in a MicroPython process, driven by commands on stdin:
#   pub QOS RETAIN TOPIC PAYLOAD | state | hold | go | die | bye | quit
# ("hold" stops calling poll() until "go": the test can restart the broker and subscribe
# before the client may reconnect).
# It answers one JSON line per command and prints {"state": ...} on every change.
DRIVER = r"""
import sys, json, select, os, time
sys.path.insert(0, %(fw)r)
import voicenode
from voicenode.actions import mqtt, outbox
box = outbox.Outbox(slots=%(slots)d, slot_bytes=%(slot_bytes)d)
def on_state(s):
    print(json.dumps({"state": s, "ms": time.ticks_ms()}))
intro = %(intro)r
if %(discovery)r:
    intro = [(%(will)r, "online", True)] + mqtt.discovery(%(cid)r, "voicenode/" + %(cid)r, ["hey_jarvis"])
c = mqtt.MQTTClient(%(cid)r, "127.0.0.1", %(port)d, user=%(user)r, password=%(password)r,
                    keepalive=%(keepalive)d, will_topic=%(will)r, intro=intro,
                    box=box, min_backoff_ms=%(minb)d, max_backoff_ms=%(maxb)d,
                    connect_timeout_ms=2000, on_state=on_state)
p = select.poll()
p.register(sys.stdin, select.POLLIN)
print(json.dumps({"ready": 1}))
hold = False
while True:
    if not hold:
        c.poll()
    if not p.poll(2):
        continue
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.strip().split(" ", 4)
    if cmd[0] == "pub":
        ok = box.put(cmd[3], cmd[4], int(cmd[1]), cmd[2] == "1")
        print(json.dumps({"put": ok}))
    elif cmd[0] == "state":
        print(json.dumps({"now": c.state_name(), "connects": c.connects, "failures": c.failures,
                          "pending": len(box), "inflight": box.inflight(), "counters": voicenode.counters}))
    elif cmd[0] == "hold":
        hold = True
        print(json.dumps({"hold": 1}))
    elif cmd[0] == "go":
        hold = False
        print(json.dumps({"go": 1}))
    elif cmd[0] == "die":
        os._exit(3)
    elif cmd[0] == "bye":
        c.disconnect()
        print(json.dumps({"bye": 1}))
    elif cmd[0] == "quit":
        break
"""


class Driver:
    """The firmware MQTT client running in `micropython`, commanded line by line."""

    def __init__(
        self,
        port,
        cid="node1",
        keepalive=60,
        will="voicenode/node1/availability",
        intro=(),
        slots=16,
        slot_bytes=384,
        min_backoff_ms=100,
        max_backoff_ms=800,
        user=None,
        password=None,
        discovery=False,
    ):
        code = DRIVER % dict(
            fw=str(FIRMWARE_DIR),
            slots=slots,
            slot_bytes=slot_bytes,
            cid=cid,
            port=port,
            keepalive=keepalive,
            will=will,
            intro=list(intro),
            minb=min_backoff_ms,
            maxb=max_backoff_ms,
            user=user,
            password=password,
            discovery=discovery,
        )
        self.proc = subprocess.Popen(
            ["micropython", "-X", "heapsize=256k", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.states = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.expect(lambda m: "ready" in m)

    def _read(self):
        for line in self.proc.stdout:  # ends at EOF, once the driver has exited
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"raw": line}
            if "state" in msg:
                self.states.append(msg["state"])
            self.lines.put(msg)

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def expect(self, pred, timeout=10):
        t0 = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                raise AssertionError(f"driver: timed out; states {self.states} {err}")
            try:
                msg = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if pred(msg):
                return msg

    def wait_state(self, name, timeout=10):
        return self.expect(lambda m: m.get("state") == name, timeout)

    def query(self):
        self.send("state")
        return self.expect(lambda m: "now" in m)

    def do(self, cmd):
        self.send(cmd)
        return self.expect(lambda m: cmd in m)

    def pub(self, topic, payload, qos=0, retain=False):
        self.send(f"pub {qos} {int(retain)} {topic} {payload}")
        return self.expect(lambda m: "put" in m)["put"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(3)
        # The reader takes the rest of the output to its EOF before stdout is closed under it
        # (closing it first raised "I/O operation on closed file" in that thread).
        self._reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_broker_delivers_and_retains_between_host_clients(tmp_path):
    with Broker(tmp_path) as b, Subscriber(b.port, "t/#", "a") as sub:
        # a raw publisher: CONNECT, retained QoS 0 PUBLISH, DISCONNECT
        with socket.create_connection(("127.0.0.1", b.port)) as s:
            body = _enc_str("MQTT") + bytes([4, 2, 0, 30]) + _enc_str("pub")
            s.sendall(b"\x10" + _enc_len(len(body)) + body)
            assert s.recv(4) == b"\x20\x02\x00\x00"
            body = _enc_str("t/x") + b"hello"
            s.sendall(b"\x31" + _enc_len(len(body)) + body + b"\xe0\x00")
        live = sub.wait_for(lambda m: len(m) == 1)
        assert live[0]["payload"] == b"hello" and not live[0]["retain"]
        with Subscriber(b.port, "t/#", "b") as late:
            got = late.wait_for(lambda m: len(m) == 1)
            assert got[0]["retain"] and got[0]["payload"] == b"hello"


def test_broker_stops_and_its_port_closes(tmp_path):
    b = Broker(tmp_path).start()
    port = b.port
    b.kill()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        raise AssertionError("port still open")
    except OSError:
        pass
