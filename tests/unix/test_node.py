"""The node pipeline (front end -> detector -> events) on the Unix port against its host twin."""

import json
import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.audio import load_16k
from voicenode_tools.reference import frontend, nn
from voicenode_tools.reference import node as ref_node

SPEC = [
    ("conv", 12, 3, 2, 1, "relu"),
    ("dwconv", 0, 5, 1, 2, "relu"),
    ("dense", 1, 1, 1, 1, "sigmoid"),
]


def run_mpy(code, heapsize="512k"):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def pcm():
    speech = load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav")
    noise = np.random.default_rng(5).normal(0, 800, 16000).astype(np.int16)
    return np.concatenate([speech, noise, speech // 2]).astype(np.int16)


def make_model(folder, name, pcm, seed, frac):
    """A random model whose cutoff lets the top `frac` quantile of windows through."""
    feats = frontend.features(pcm)
    model = nn.random_model(np.random.default_rng(seed), spec=SPEC)
    p = model.stream(feats).astype(np.float64)
    window = 4
    means = np.convolve(p, np.ones(window) / window, mode="valid")
    cutoff = float(np.clip(np.quantile(means, frac) / 255.0, 0.01, 0.99))
    side = dict(
        name=name,
        wake_phrase=name.replace("_", " "),
        cutoff=cutoff,
        window=window,
        cooloff=20,
        frontend=nn.frontend_params(),
    )
    path = folder / f"{name}.vnm"
    model.save(path, side)
    return path


NODE_HEAD = """
from array import array
import json
from voicenode import node
from voicenode.actions import eventlog
class Out:
    def __init__(self): self.lines = []
    def write(self, s): self.lines.append(s.strip())
out = Out()
eventlog._out = out
n = node.Node(cfg={cfg!r}, models={models!r})
"""
# then {chunk}-sample feeds of the raw file {pcm}, and the events printed
NODE_FEED = """
buf = array('h', bytes(2 * {chunk}))
mv = memoryview(buf)
with open({pcm!r}, 'rb') as f:
    while True:
        got = f.readinto(buf) // 2
        if not got:
            break
        n.feed(mv[:got])
print('EVENTS ' + json.dumps([json.loads(x) for x in out.lines]))
"""
NODE_CODE = NODE_HEAD + NODE_FEED


def firmware_events(tmp_path, pcm, models_dir, words, chunk, cutoffs=None):
    raw = tmp_path / "pcm.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    cfg = {"wake_words": words, "cutoffs": cutoffs or {}, "status_every_s": 0}
    lines = run_mpy(NODE_CODE.format(cfg=cfg, models=str(models_dir), pcm=str(raw), chunk=chunk))
    events = json.loads([x for x in lines if x.startswith("EVENTS ")][-1][7:])
    return [
        {k: e[k] for k in ("event", "word", "score", "at")} for e in events if e["event"] == "wake"
    ]


def test_node_events_equal_host_twin_for_any_chunking(tmp_path, pcm):
    a = make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    b = make_model(tmp_path, "alexa", pcm, seed=2, frac=0.95)
    host = ref_node.events(pcm, [a, b], default=a)
    assert len(host) >= 2, "the models must fire a few times for the test to mean anything"
    assert {e["word"] for e in host} == {"hey_jarvis", "alexa"}
    for chunk in (160, 37, 1000):
        assert firmware_events(tmp_path, pcm, tmp_path, ["hey_jarvis", "alexa"], chunk) == host


def test_cutoff_override_from_config(tmp_path, pcm):
    a = make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    base = ref_node.events(pcm, [a], default=a)
    stricter = ref_node.events(pcm, [a], default=a, cutoffs={"hey_jarvis": 1.0})
    assert len(stricter) < len(base)
    assert (
        firmware_events(tmp_path, pcm, tmp_path, ["hey_jarvis"], 160, cutoffs={"hey_jarvis": 1.0})
        == stricter
    )


def test_steady_state_feed_allocates_nothing(tmp_path, pcm):
    # Only a detection formats an event (and allocates): pick a model that stays quiet here.
    for seed in range(3, 40):
        m = make_model(tmp_path, "hey_jarvis", pcm, seed=seed, frac=0.9)
        if not ref_node.events(pcm[:16000], [m], cutoffs={"hey_jarvis": 1.0}):
            break
    else:
        raise AssertionError("no quiet random model found")
    raw = tmp_path / "pcm.raw"
    raw.write_bytes(pcm[:16000].astype("<i2").tobytes())
    code = f"""
from array import array
import micropython
from voicenode import node
n = node.Node(cfg={{"wake_words": ["hey_jarvis"], "cutoffs": {{"hey_jarvis": 1.0}}, "status_every_s": 0}},
              models={str(tmp_path)!r})
pcm = array('h', open({str(raw)!r}, 'rb').read())
blocks = [memoryview(pcm)[i:i + 160] for i in range(0, len(pcm), 160)]
for b in blocks[:20]:
    n.feed(b)
def steady(n, blocks):
    # heap_lock() makes any heap allocation raise; mem_total() also catches the bytecode
    # frames that would come from the heap and silently fall back to the C stack when locked.
    micropython.heap_lock()
    try:
        for i in range(20, len(blocks)):
            n.feed(blocks[i])
    finally:
        micropython.heap_unlock()
def count(n, blocks):
    t0 = micropython.mem_total()
    for i in range(20, len(blocks)):
        n.feed(blocks[i])
    return micropython.mem_total() - t0
steady(n, blocks)
n.reset()
for b in blocks[:20]:
    n.feed(b)
allocated = count(n, blocks)
print('OK', n.samples, allocated)
"""
    assert run_mpy(code)[-1] == "OK 16000 0"


def test_corrupt_config_falls_back_to_defaults(tmp_path):
    bad = tmp_path / "config.json"
    cases = {
        "{not json": "not valid JSON",
        "\xff\xfe\x00garbage\x80": "not valid JSON",
        '{"wake_words": "alexa"}': "'wake_words' must be a list",
        '{"colour": 1}': "unknown key",
        '{"cutoffs": {"alexa": 7}}': "cutoff for 'alexa'",
    }
    for text, why in cases.items():
        bad.write_bytes(text.encode("latin-1"))
        code = f"""
import json, voicenode
from voicenode import config
from voicenode.actions import eventlog
class Out:
    def write(self, s): self.line = s.strip()
eventlog._out = out = Out()
cfg = config.load({str(bad)!r})
print(json.dumps(cfg == config.DEFAULTS), voicenode.counters['config_errors'])
print(out.line)
"""
        same, last = run_mpy(code)[-2:]
        assert same == "true 1"
        ev = json.loads(last)
        assert ev["event"] == "error" and ev["where"] == "config" and why in ev["msg"], (text, ev)


def test_missing_model_falls_back_to_default(tmp_path, pcm):
    make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    code = f"""
import voicenode
from voicenode import node
n = node.Node(cfg={{"wake_words": ["no_such_word"], "cutoffs": {{}}, "status_every_s": 0}},
              models={str(tmp_path)!r})
print([m.name for m in n.detector.models], voicenode.counters.get('model_errors'))
"""
    assert run_mpy(code)[-1] == "['hey_jarvis'] 1"


def test_wake_opens_a_command_window_that_ends_in_an_intent(tmp_path, pcm):
    import shutil

    make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    for f in ("commands_home.json", "commands_home.vcg", "commands_home_net.vnm",
              "commands_home_net.json"):  # fmt: skip
        shutil.copy(REPO_ROOT / "models" / f, tmp_path / f)
    raw = tmp_path / "pcm.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    cfg = {
        "wake_words": ["hey_jarvis"],
        "cutoffs": {},
        "status_every_s": 0,
        "commands": "commands_home",
    }
    lines = run_mpy(
        NODE_CODE.format(cfg=cfg, models=str(tmp_path), pcm=str(raw), chunk=160), heapsize="2m"
    )
    events = json.loads([x for x in lines if x.startswith("EVENTS ")][-1][7:])
    kinds = [e["event"] for e in events]
    assert "wake" in kinds and "intent" in kinds, kinds
    # every intent follows a wake, within the 3 s listening window (plus the end-pointer's tail)
    last_wake = None
    for e in events:
        if e["event"] == "wake":
            last_wake = e["at"]
        elif e["event"] == "intent":
            assert last_wake is not None and 0 < e["at"] - last_wake <= 3.5, e
            assert isinstance(e["intent"], str) and 0 <= e["score"] <= 1 and "slots" in e


def test_missing_command_model_is_logged_not_fatal(tmp_path, pcm):
    make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    code = f"""
import voicenode
from voicenode import node
n = node.Node(cfg={{"wake_words": ["hey_jarvis"], "cutoffs": {{}}, "status_every_s": 0,
                   "commands": "nope"}}, models={str(tmp_path)!r})
print(n.commands, voicenode.counters.get('model_errors'))
"""
    assert run_mpy(code)[-1] == "None 1"


def test_wake_word_and_command_model_fit_64k_together():
    """The shipped hey_jarvis and commands_home take turns in one block of memory: the node's
    models and state fit 64 KB together (Unix port, 64-bit), and the command model adds far
    less than its network's own buffers."""
    from voicenode_tools.bench.commands import node_heap
    from voicenode_tools.reference import commands as rc

    res = node_heap(REPO_ROOT / "models" / "commands_home", turns=1)
    net = rc.load(REPO_ROOT / "models" / "commands_home").net
    assert res["node_heap_with_commands"] <= 64 * 1024, res
    assert res["node_heap_with_commands"] - res["node_heap_wake_words"] < net.heap_bytes() // 2


AFTER_BOOT_CODE = (
    NODE_HEAD
    + """if {offset} < 0:  # the file is gone from the flash after boot
    import os
    os.remove({victim!r})
else:  # the file goes bad on the flash after boot
    with open({victim!r}, 'r+b') as f:
        f.seek({offset})
        b = f.read(1)
        f.seek({offset})
        f.write(bytes([b[0] ^ 0x55]))
"""
    + NODE_FEED
    + "print('STATE', n.commands is None, len(n.detector.models))\n"
)


def run_after_boot(tmp_path, pcm, victim, remove=False):
    import shutil

    make_model(tmp_path, "hey_jarvis", pcm, seed=1, frac=0.9)
    for f in ("commands_home.json", "commands_home.vcg", "commands_home_net.vnm",
              "commands_home_net.json"):  # fmt: skip
        shutil.copy(REPO_ROOT / "models" / f, tmp_path / f)
    raw = tmp_path / "pcm.raw"
    raw.write_bytes(np.concatenate([pcm, pcm]).astype("<i2").tobytes())
    cfg = {"wake_words": ["hey_jarvis"], "cutoffs": {}, "status_every_s": 0,
           "commands": "commands_home"}  # fmt: skip
    path = tmp_path / victim
    code = AFTER_BOOT_CODE.format(cfg=cfg, models=str(tmp_path), pcm=str(raw), victim=str(path), chunk=160,
                                  offset=-1 if remove else path.stat().st_size // 2)  # fmt: skip
    lines = run_mpy(code, heapsize="2m")
    events = json.loads([x for x in lines if x.startswith("EVENTS ")][-1][7:])
    return events, lines[-1]


@pytest.mark.parametrize("remove", [False, True], ids=["corrupted", "removed"])
def test_command_network_gone_bad_after_boot_leaves_wake_words_running(tmp_path, pcm, remove):
    """The command network is read from the flash at every wake: a file corrupted (or
    removed) after boot is caught there, logged, and the node runs on with its wake words."""
    events, state = run_after_boot(tmp_path, pcm, "commands_home_net.vnm", remove)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "wake" and kinds[1] == "error", kinds
    why = "cannot open" if remove else "checksum"
    assert events[1]["where"] == "commands" and why in events[1]["msg"], events[1]
    assert "intent" not in kinds and kinds.count("wake") >= 3, kinds
    assert state == "STATE True 1"


def test_wake_model_gone_bad_after_boot_is_dropped_not_fatal(tmp_path, pcm):
    """The wake words are read back after each command: a wake model corrupted meanwhile is
    refused by its checksum and dropped with a model_error event; the node keeps running."""
    events, state = run_after_boot(tmp_path, pcm, "hey_jarvis.vnm")
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["wake", "intent", "model_error"], kinds
    assert "checksum" in events[2]["error"], events[2]
    assert kinds.count("wake") == 1 and state == "STATE False 0", (kinds, state)
