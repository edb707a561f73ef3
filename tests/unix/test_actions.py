"""Actions on the MicroPython Unix port: GPIO outputs from intents (through the real
voicenode.hal and a board module), LED feedback patterns, the event-log hook, secrets and
Wi-Fi bring-up, and the .mpy build for the ESP32-S3.

`machine` and `network` here are recording test doubles of the ESP32 port's modules; the code
under test is voicenode.actions, voicenode.net and the HAL they go through.
"""

import json
import shutil
import subprocess

from voicenode_tools import BOARDS_DIR, FIRMWARE_DIR

FAKE_MACHINE = r"""
log = []
class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    levels = {}
    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        if value is not None:
            Pin.levels[id] = value
        elif pull == Pin.PULL_UP and id not in Pin.levels:
            Pin.levels[id] = 1
        log.append(["Pin", id, mode, value])
    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.id, 0)
        Pin.levels[self.id] = v
        log.append(["set", self.id, v])
def bitstream(pin, encoding, timing, buf):
    log.append(["px", pin.id, buf[1], buf[0], buf[2]])
"""

FAKE_NETWORK = r"""
STA_IF = 0
calls = []
class WLAN:
    up = False
    def __init__(self, i):
        calls.append(["WLAN", i])
    def active(self, a=None):
        calls.append(["active", a])
    def connect(self, ssid, pw):
        calls.append(["connect", ssid])
    def isconnected(self):
        return WLAN.up
    def config(self, key):
        return b"\x24\x0a\xc4\x12\x34\x56"
def hostname(h):
    calls.append(["hostname", h])
"""

# The reference board plus two named outputs (board.json "outputs" -> board.OUTPUTS).
OUTPUTS = '\nOUTPUTS = {"RELAY1": 10, "RELAY2": (11, True)}\n'


def run_mpy(tmp_path, code, network=False, board=True, heapsize="256k"):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    if network:
        (tmp_path / "network.py").write_text(FAKE_NETWORK)
    if board:
        shutil.copy(BOARDS_DIR / "ESP32_S3_DEVKITC_INMP441" / "board.py", tmp_path / "board.py")
        with open(tmp_path / "board.py", "a") as f:
            f.write(OUTPUTS)
    prog = f"import sys\nsys.path[:0] = {[str(tmp_path), str(FIRMWARE_DIR)]!r}\n" + code
    res = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip().splitlines()


def last_json(lines):
    return json.loads(lines[-1])


def test_intents_drive_named_board_outputs(tmp_path):
    code = r"""
import json, time, machine
from voicenode.actions import gpio
cfg = {
    "light.on": {"pin": "RELAY1", "value": 1},
    "light.off": {"pin": "RELAY1", "value": 0},
    "door.open": {"pin": "RELAY2", "value": 1, "pulse_ms": 60},
    "fan.on": [{"pin": "RELAY1", "value": 1, "slots": {"room": "kitchen"}}],
    "bad": {"pin": "RELAY9", "value": 1},
    "worse": {"pin": 10},
}
errors = []
o = gpio.Outputs(cfg, log=errors.append)
L = machine.Pin.levels
r = {"init": [L[10], L[11]], "errors": errors}
r["on"] = [o.handle("light.on"), L[10], o.value("RELAY1")]
r["off"] = [o.handle("light.off"), L[10]]
r["hall"] = [o.handle("fan.on", {"room": "hall"}), L[10]]
r["kitchen"] = [o.handle("fan.on", {"room": "kitchen"}), L[10]]
r["unknown"] = o.handle("dance")
r["door"] = [o.handle("door.open"), L[11], o.value("RELAY2")]
o.poll()
r["door_soon"] = L[11]
time.sleep_ms(80)
o.poll()
r["door_later"] = [L[11], o.value("RELAY2"), len(o.pulses)]
print(json.dumps(r))
"""
    r = last_json(run_mpy(tmp_path, code))
    # RELAY2 is active-low: made "off" = electrical 1
    assert r["init"] == [0, 1]
    assert len(r["errors"]) == 2
    assert "RELAY9" in r["errors"][0] and "ESP32_S3_DEVKITC_INMP441" in r["errors"][0]
    assert "pin name" in r["errors"][1]
    assert r["on"] == [1, 1, 1] and r["off"] == [1, 0]
    assert r["hall"] == [0, 0] and r["kitchen"] == [1, 1]
    assert r["unknown"] == 0
    assert r["door"] == [1, 0, 1]  # on = electrical low
    assert r["door_soon"] == 0 and r["door_later"] == [1, 0, 0]


def test_bad_output_entry_is_an_error_event_not_a_crash(tmp_path):
    code = r"""
import json
from voicenode.actions import gpio, eventlog
o = gpio.Outputs({"x.on": {"pin": "NOPE"}})
print(json.dumps({"actions": list(o.actions), "last": [json.loads(x) for x in eventlog.last()]}))
"""
    r = last_json(run_mpy(tmp_path, code))
    assert r["actions"] == []
    assert r["last"][-1]["event"] == "error" and r["last"][-1]["where"] == "outputs"


FEEDBACK_CODE = r"""
import json, micropython
from voicenode.actions import feedback as fb
class Led:
    def __init__(self):
        self.log = []
    def on(self, c=None):
        self.log.append(("on", c))
    def off(self):
        self.log.append(("off",))
now = [0]
led = Led()
f = fb.Feedback(led, clock=lambda: now[0])
out = {"init": led.log[:]}
led.log.clear()
def run(ms, step=10):
    t = 0
    while t < ms:
        now[0] += step
        t += step
        f.poll()
f.show(fb.LISTENING); run(3990)
out["listening"] = [led.log[:], f.name()]; led.log.clear()
run(20)
out["listening_ends"] = [led.log[:], f.name()]
f.show(fb.LISTENING); led.log.clear()  # a wake word, then the intent
f.show(fb.UNDERSTOOD); run(790); a = f.name(); run(20)
out["understood"] = [led.log[:], a, f.name()]; led.log.clear()
f.show(fb.NOT_UNDERSTOOD); run(1000)
out["not_understood"] = [led.log[:], f.name()]; led.log.clear()
f.muted(True); f.show(fb.LISTENING); run(3990)
out["muted"] = [led.log[:], f.name()]; led.log.clear()
f.muted(False)
out["unmuted"] = [led.log[:], f.name()]
# steady state and transitions allocate nothing
f.muted(True)
led.on = lambda c=None: None
led.off = lambda: None
micropython.heap_lock()
for i in range(3000):
    now[0] += 10
    f.poll()
micropython.heap_unlock()
print(json.dumps(out))
"""


def test_feedback_patterns_are_timed_by_poll(tmp_path):
    r = last_json(run_mpy(tmp_path, FEEDBACK_CODE, board=False))
    blue, green, red, dim_red = [0, 0, 32], [0, 40, 0], [48, 0, 0], [24, 0, 0]
    assert r["init"] == [["off"]]
    assert r["listening"] == [[["on", blue]], "listening"]
    assert r["listening_ends"] == [
        [["off"]],
        "idle",
    ]  # no result within 4 s: back to idle  # steady: set once, not per poll
    assert r["understood"] == [[["on", green], ["off"]], "understood", "idle"]
    assert r["not_understood"] == [[["on", red], ["off"]] * 3, "idle"]
    # muted: a blink every 2 s, and a wake word does not override it
    assert r["muted"][0] == [["on", dim_red], ["off"]] * 2 and r["muted"][1] == "muted"
    assert r["unmuted"] == [[], "idle"]  # it was in an off segment: nothing to change


def test_feedback_uses_the_boards_pixel_through_the_hal(tmp_path):
    code = r"""
import json, machine
from voicenode.actions import feedback as fb
f = fb.Feedback()
f.show(fb.UNDERSTOOD)
print(json.dumps([e for e in machine.log if e[0] == "px"]))
"""
    px = last_json(run_mpy(tmp_path, code))
    assert px[-1] == ["px", 38, 0, 40, 0]  # GPIO38, r g b


HOOK_CODE = r"""
import json
from voicenode import actions
from voicenode.actions import eventlog, outbox, feedback as fb
class Led:
    def on(self, c=None): pass
    def off(self): pass
acts = actions.Actions(outputs=None, feedback=fb.Feedback(Led()), client=object())
actions.hook(acts.on_event)
seen = [f.name() for f in [acts.feedback]]
eventlog.emit("boot", version="x")
eventlog.emit("wake", word="hey_jarvis", score=0.9, at=1.5)
seen.append(acts.feedback.name())
eventlog.emit("intent", intent="light.on", slots={"room": "kitchen"}, score=0.91)
seen.append(acts.feedback.name())
eventlog.emit("intent", intent=None, score=0.2)
seen.append(acts.feedback.name())
eventlog.emit("mute")
seen.append(acts.feedback.name())
eventlog.emit("status", heap_free=1)
box = outbox.default()
msgs = []
while True:
    i = box.next_unsent()
    if i < 0:
        break
    msgs.append([bytes(box.topic(i)).decode(), json.loads(bytes(box.payload(i))) if box.qos(i) and box.payload(i)[0:1] == b"{" else bytes(box.payload(i)).decode(), box.qos(i), box.retain(i)])
    box.sending(i)
    box.sent(i, 1)
actions.unhook()
eventlog.emit("wake", word="x")
print(json.dumps({"seen": seen, "msgs": msgs, "after_unhook": box.next_unsent()}))
"""


def test_event_log_hook_publishes_events_and_drives_feedback(tmp_path):
    r = last_json(run_mpy(tmp_path, HOOK_CODE, board=False))
    assert r["seen"] == ["idle", "listening", "understood", "not_understood", "muted"]
    base = "voicenode/node"
    assert r["msgs"] == [
        [
            base + "/wake",
            {"event_type": "wake", "word": "hey_jarvis", "score": 0.9, "at": 1.5},
            1,
            False,
        ],
        [
            base + "/intent",
            {
                "event_type": "intent",
                "intent": "light.on",
                "slots": {"room": "kitchen"},
                "score": 0.91,
            },
            1,
            False,
        ],
        [base + "/intent", {"event_type": "intent", "intent": None, "score": 0.2}, 1, False],
        [base + "/muted", "ON", 1, True],
    ]
    assert r["after_unhook"] == -1


def test_secrets_bad_file_is_reported_without_its_contents(tmp_path):
    (tmp_path / "bad.json").write_text('{"wifi": {"ssid": "home", "password": 12345678}}')
    (tmp_path / "broken.json").write_text('{"wifi": {"ssid": "home", "password": "hunter2"')
    (tmp_path / "good.json").write_text((FIRMWARE_DIR / "secrets.example.json").read_text())
    code = f"""
import json
from voicenode import net
print(json.dumps([net.load_secrets({str(tmp_path / "bad.json")!r}),
                  net.load_secrets({str(tmp_path / "broken.json")!r}),
                  net.load_secrets({str(tmp_path / "none.json")!r}),
                  net.load_secrets({str(tmp_path / "good.json")!r})]))
"""
    lines = run_mpy(tmp_path, code, board=False)
    bad, broken, none, good = json.loads(lines[-1])
    assert bad == {} and broken == {} and none == {}
    assert good["mqtt"]["node_id"] == "kitchen" and good["wifi"]["ssid"] == "your-wifi"
    errors = [json.loads(x) for x in lines[:-1]]
    assert [e["where"] for e in errors] == ["secrets", "secrets"]
    assert "wifi.password must be a str" in errors[0]["msg"]
    assert "12345678" not in "\n".join(lines) and "hunter2" not in "\n".join(lines)


def test_wifi_from_secrets_connects_and_backs_off(tmp_path):
    code = r"""
import json, time, network
from voicenode import net
w = net.Wifi("home", "pw", hostname="kitchen", min_backoff_ms=30, max_backoff_ms=60)
w.start()
r = {"up0": w.poll(), "nid": net.node_id({}), "nid2": net.node_id({"mqtt": {"node_id": "hall"}})}
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 200:
    w.poll()
r["connects"] = sum(1 for c in network.calls if c[0] == "connect")
network.WLAN.up = True
r["up1"] = w.poll()
n = len(network.calls)
for _ in range(100):
    w.poll()
r["quiet"] = len(network.calls) == n
r["calls"] = network.calls[:4]
print(json.dumps(r))
"""
    r = last_json(run_mpy(tmp_path, code, network=True, board=False))
    assert r["up0"] is False and r["up1"] is True and r["quiet"]
    assert r["calls"] == [
        ["hostname", "kitchen"],
        ["WLAN", 0],
        ["active", True],
        ["connect", "home"],
    ]
    # 30, 60, 60, 60 ms back-off over 200 ms: a handful of attempts, not one per poll
    assert 2 <= r["connects"] <= 6
    assert r["nid"] == "voicenode-123456" and r["nid2"] == "hall"


def test_unix_port_is_already_online(tmp_path):
    lines = run_mpy(
        tmp_path,
        "from voicenode import net\nw = net.Wifi.from_secrets({})\nw.start()\n"
        "print(w.hosted(), w.poll(), net.node_id())",
        board=False,
    )
    assert lines[-1] == "True True voicenode"


def test_actions_compile_for_the_esp32_s3(tmp_path):
    files = [
        "actions/__init__.py",
        "actions/gpio.py",
        "actions/feedback.py",
        "actions/mqtt.py",
        "actions/outbox.py",
        "net.py",
    ]
    for f in files:
        out = tmp_path / (f.replace("/", "_") + ".mpy")
        res = subprocess.run(
            ["mpy-cross", "-march=xtensawin", "-o", str(out), str(FIRMWARE_DIR / "voicenode" / f)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        data = out.read_bytes()
        assert data[0] == ord("M") and len(data) > 200
