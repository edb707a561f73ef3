"""The firmware's MQTT client (voicenode.actions.mqtt) on the MicroPython Unix port against a
REAL Mosquitto broker on a free loopback port, watched by a host-side subscriber.

Each test starts its own broker (and kills it at the end, whatever happens) and drives the
client in a `micropython` process line by line (see test_mqtt_broker.Driver).
"""

import json
import signal
import subprocess
import time

import pytest
from test_mqtt_broker import Broker, Driver, Subscriber, free_port

from voicenode_tools import FIRMWARE_DIR

NODE = "voicenode/node1"
AVAIL = NODE + "/availability"


def settled(drv, timeout=5):
    """The driver's state once nothing is pending in its outbox (PUBACKs arrive after the
    subscriber's copy)."""
    t0 = time.monotonic()
    while (q := drv.query())["pending"] and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    return q


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    try:
        yield b.start()
    finally:
        b.stop()


def test_qos0_and_qos1_delivered_and_acknowledged(broker):
    with Subscriber(broker.port) as sub, Driver(broker.port) as drv:
        drv.wait_state("up")
        assert drv.pub(NODE + "/wake", '{"word": "hey_jarvis"}', qos=0)
        assert drv.pub(NODE + "/intent", '{"intent": "light.on"}', qos=1)
        got = sub.wait_for(lambda m: len(m) == 2)
        assert [(m["topic"], m["payload"], m["qos"]) for m in got] == [
            (NODE + "/wake", b'{"word": "hey_jarvis"}', 0),
            (NODE + "/intent", b'{"intent": "light.on"}', 1),
        ]
        q = settled(drv)  # the PUBACK freed the QoS 1 slot
        assert q["pending"] == 0 and q["inflight"] == 0 and q["failures"] == 0


def test_keepalive_holds_the_link_over_several_periods(broker):
    # keep-alive 1 s: Mosquitto drops a client that is silent for 1.5 s, and the last will
    # ("offline") would then appear. Stay idle for 4 periods.
    with Subscriber(broker.port) as sub, Driver(broker.port, keepalive=1) as drv:
        drv.wait_state("up")
        time.sleep(4.2)
        q = drv.query()
        assert q["now"] == "up" and q["connects"] == 1 and q["failures"] == 0
        assert sub.on(AVAIL) == []


def test_silent_broker_is_detected_by_missing_pingresp(broker):
    with Driver(broker.port, keepalive=1) as drv:
        drv.wait_state("up")
        broker.proc.send_signal(signal.SIGSTOP)  # the TCP link stays open, nobody answers
        try:
            t0 = time.monotonic()
            drv.wait_state("down", timeout=5)
            # ping after 0.5 s of silence, no PINGRESP for 1 s: down at about 1.5 s
            assert 1.0 < time.monotonic() - t0 < 3.5
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        drv.wait_state("up", timeout=5)


def test_broker_down_at_start_backs_off_then_delivers(tmp_path):
    port = free_port()
    b = Broker(tmp_path / "b", port=port)
    try:
        with Driver(port, min_backoff_ms=100, max_backoff_ms=800) as drv:
            assert drv.pub(NODE + "/intent", '{"intent": "late"}', qos=1, retain=True)
            time.sleep(2.5)
            tries = [m for m in drv.states if m == "connecting"]
            q = drv.query()
            assert q["now"] in ("down", "connecting") and q["connects"] == 0
            # 100, 200, 400, 800, 800 ms: about 5 attempts in 2.5 s, not 25
            assert 3 <= len(tries) <= 7 and q["failures"] == len(tries)
            b.start()
            drv.wait_state("up", timeout=5)
            assert settled(drv)["pending"] == 0  # PUBACK: the broker has it
            with Subscriber(port) as sub:  # retained: a subscriber after the fact sees it
                got = sub.wait_for(lambda m: any(x["topic"] == NODE + "/intent" for x in m))
            msg = [m for m in got if m["topic"] == NODE + "/intent"][0]
            assert msg["payload"] == b'{"intent": "late"}' and msg["retain"]
    finally:
        b.stop()


def test_backoff_doubles_to_its_limit():
    port = free_port()  # nothing listens there
    with Driver(port, min_backoff_ms=100, max_backoff_ms=400) as drv:
        times = []
        while len(times) < 6:
            m = drv.expect(lambda m: m.get("state") == "connecting")
            times.append(m["ms"])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # never sooner than the back-off; later only by scheduling delays
    assert 95 <= gaps[0] <= 350 and 195 <= gaps[1] <= 450, gaps
    assert all(395 <= g <= 800 for g in gaps[2:]), gaps


def test_broker_killed_mid_session_queued_and_inflight_qos1_are_delivered(broker):
    port = broker.port
    with Driver(port, keepalive=30) as drv:
        drv.wait_state("up")
        # in flight: the broker is frozen, so the PUBACK never comes
        broker.proc.send_signal(signal.SIGSTOP)
        assert drv.pub(NODE + "/intent", '{"n": 0}', qos=1)
        t0 = time.monotonic()
        while drv.query()["inflight"] != 1:
            assert time.monotonic() - t0 < 5
            time.sleep(0.02)
        broker.kill()
        drv.wait_state("down", timeout=5)
        for n in (1, 2, 3):  # queued while the broker is gone
            assert drv.pub(NODE + "/intent", '{"n": %d}' % n, qos=1)
        assert drv.query()["pending"] == 4
        drv.do("hold")
        broker.start()
        with Subscriber(port) as sub:
            drv.do("go")
            got = sub.wait_for(lambda m: len(m) == 4)
            assert [m["payload"] for m in got] == [
                b'{"n": 0}',
                b'{"n": 1}',
                b'{"n": 2}',
                b'{"n": 3}',
            ]
            assert all(m["topic"] == NODE + "/intent" and m["qos"] == 1 for m in got)
        q = settled(drv)
        assert q["connects"] == 2 and q["pending"] == 0 and q["inflight"] == 0


def test_outbox_overflow_drops_the_oldest_and_counts_it(tmp_path):
    port = free_port()
    b = Broker(tmp_path / "b", port=port)
    try:
        with Driver(port, slots=4) as drv:
            for n in range(7):
                assert drv.pub(NODE + "/intent", '{"n": %d}' % n, qos=1)
            q = drv.query()
            assert q["pending"] == 4 and q["counters"]["mqtt_dropped"] == 3
            drv.do("hold")
            b.start()
            with Subscriber(port) as sub:
                drv.do("go")
                sub.wait_for(lambda m: len(m) == 4)
                time.sleep(0.3)  # and nothing more arrives
                assert [m["payload"] for m in sub.messages] == [
                    b'{"n": %d}' % n for n in (3, 4, 5, 6)
                ]
            # too big for a slot: refused and counted, never truncated
            assert not drv.pub(NODE + "/intent", "x" * 400, qos=0)
            assert drv.query()["counters"]["mqtt_too_big"] == 1
    finally:
        b.stop()


def test_discovery_and_availability_are_retained(broker):
    with Driver(broker.port, discovery=True) as drv:
        drv.wait_state("up")
        time.sleep(0.5)
        with Subscriber(broker.port, "#", "late") as sub:
            got = sub.wait_for(lambda m: len(m) >= 6)
    by_topic = {m["topic"]: m for m in got}
    assert by_topic[AVAIL]["payload"] == b"online" and by_topic[AVAIL]["retain"]
    configs = {
        t: json.loads(m["payload"]) for t, m in by_topic.items() if t.startswith("homeassistant/")
    }
    assert set(configs) == {
        "homeassistant/event/node1/wake/config",
        "homeassistant/event/node1/intent/config",
        "homeassistant/sensor/node1/last_wake/config",
        "homeassistant/sensor/node1/last_intent/config",
        "homeassistant/binary_sensor/node1/muted/config",
    }
    for t, c in configs.items():
        assert by_topic[t]["retain"]
        assert (
            c["avty_t"] == AVAIL
            and c["dev"]["ids"] == ["node1"]
            and c["uniq_id"].startswith("node1_")
        )
        assert c["stat_t"].startswith(NODE + "/")
        assert len(by_topic[t]["payload"]) <= 512
    assert configs["homeassistant/event/node1/intent/config"]["evt_typ"] == ["intent"]


def test_last_will_offline_when_the_client_dies(broker):
    with Subscriber(broker.port) as sub:
        with Driver(broker.port, discovery=True) as drv:
            drv.wait_state("up")
            sub.wait_for(
                lambda m: any(x["topic"] == AVAIL and x["payload"] == b"online" for x in m)
            )
            drv.send("die")  # os._exit: no DISCONNECT, the kernel closes the socket
            drv.proc.wait(5)
        sub.wait_for(
            lambda m: [x["payload"] for x in m if x["topic"] == AVAIL][-1:] == [b"offline"]
        )
    with Subscriber(broker.port, AVAIL, "late") as late:  # and it is retained
        got = late.wait_for(lambda m: len(m) == 1)
        assert got[0]["payload"] == b"offline" and got[0]["retain"]


def test_clean_disconnect_says_offline_itself(broker):
    with Subscriber(broker.port) as sub, Driver(broker.port, discovery=True) as drv:
        drv.wait_state("up")
        sub.wait_for(lambda m: any(x["topic"] == AVAIL for x in m))
        drv.do("bye")
        sub.wait_for(
            lambda m: [x["payload"] for x in m if x["topic"] == AVAIL][-1:] == [b"offline"]
        )
        assert drv.query()["now"] == "down"


def test_username_password_refused_then_accepted(tmp_path):
    b = Broker(tmp_path / "b", passwords={"node": "s3cret"})
    try:
        b.start()
        with Driver(b.port, user="node", password="wrong") as drv:
            time.sleep(0.8)
            q = drv.query()
            assert q["connects"] == 0 and q["counters"].get("mqtt_refused", 0) >= 1
        with Driver(b.port, user="node", password="s3cret") as drv:
            drv.wait_state("up")
    finally:
        b.stop()


IDLE_CODE = """
import sys, time, micropython
sys.path.insert(0, %r)
from voicenode.actions import mqtt, outbox
c = mqtt.MQTTClient("idle", "127.0.0.1", %d, keepalive=60, box=outbox.Outbox(4, 128))
t0 = time.ticks_ms()
while c.poll() != mqtt.UP:
    assert time.ticks_diff(time.ticks_ms(), t0) < 5000
for _ in range(50):
    c.poll()  # let the SUBACK/intro settle
micropython.heap_lock()
for _ in range(2000):
    c.poll()
micropython.heap_unlock()
print("IDLE OK", c.state_name())
# the whole actions loop: LED feedback, outputs, Wi-Fi check, MQTT
from voicenode import actions
acts = actions.start({"wake_words": ["hey_jarvis"]},
                     secrets={"mqtt": {"host": "127.0.0.1", "port": %d, "node_id": "idle2"}})
t0 = time.ticks_ms()
while not acts.client.is_up() or len(acts.client.box) or acts.client._intro_i < len(acts.client.intro):
    acts.poll()
    assert time.ticks_diff(time.ticks_ms(), t0) < 5000
for _ in range(50):
    acts.poll()
micropython.heap_lock()
for _ in range(2000):
    acts.poll()
micropython.heap_unlock()
print("ACTIONS OK", acts.client.state_name())
"""


def test_idle_poll_allocates_nothing(broker):
    out = subprocess.run(
        ["micropython", "-c", IDLE_CODE % (str(FIRMWARE_DIR), broker.port, broker.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith("{")]  # events
    assert lines == ["IDLE OK up", "ACTIONS OK up"], out.stderr + out.stdout
