"""The command grammar on the host: phone classes, compiling a command set, the decoder twin."""

import numpy as np
import pytest

from voicenode_tools import commandset as C
from voicenode_tools import grammar as G
from voicenode_tools import phones


@pytest.fixture(scope="module")
def home():
    cs = C.load(C.default_path())
    g, layout = G.compile_commandset(cs)
    return cs, g, layout


N_PHONES = len(phones.CLASSES)


def perfect(classes, frames_per_phone=2, gap=True, n=N_PHONES):
    """A cost matrix that says exactly these classes (0 for the class, 100 for the others)."""
    rows = []
    for c in [0, 0] + list(classes) + [0, 0]:
        for _ in range(frames_per_phone if c else 1):
            r = np.full(n, 100, np.uint8)
            r[c] = 0
            rows.append(r)
        if gap and c:
            r = np.full(n, 100, np.uint8)
            r[0] = 0
            rows.append(r)
    return np.array(rows)


def test_ipa_folds_into_broad_classes():
    assert phones.fold("ˈaɪ") == ["AY"]
    assert phones.fold("ɔːɹ") == ["AA", "R"]
    assert phones.fold("ts") == ["T", "S"]
    assert phones.phonemize("turn on the light", "en-us") == (
        "T", "ER", "N", "AA", "N", "DH", "AH", "L", "AY", "T",
    )  # fmt: skip
    # a foreign voice reading English: its own vowels, still our classes; no language tags
    nl = phones.phonemize("turn on the living room lights", "nl")
    assert nl and all(p in phones.INDEX for p in nl)
    assert phones.phonemize("turn on", "hi")[:3] == ("T", "ER", "N")
    # "a" alone is the letter; inside a sentence it is a schwa: both are pronunciations
    assert ("AH",) in phones.pronunciations("a") and ("EY",) in phones.pronunciations("a")


def test_home_set_compiles_and_round_trips(home):
    cs, g, layout = home
    assert len(g.patterns) == len(cs.intents)
    assert layout["intents"] == cs.intent_names
    data = g.to_bytes()
    assert len(data) % 4 == 0
    g2 = G.Grammar.from_bytes(data)
    assert g2.patterns == g.patterns
    for a in ("ph", "flags", "addidx", "adds", "pstart", "preds"):
        assert np.array_equal(getattr(g2, a), getattr(g, a)), a
    # the chip's buffers stay small (nodes: phones of every sentence's words, shared prefixes)
    assert g.n_nodes < 4000 and g.heap_bytes() < 32 * 1024


@pytest.mark.parametrize(
    "where, change, message",
    [
        (0, b"XXXX", "not a voicenode grammar"),
        (4, b"\x07\x00", "format version 7"),
        (40, b"\xff", "checksum"),
    ],
)
def test_damaged_grammar_files_are_refused(home, where, change, message):
    data = bytearray(home[1].to_bytes())
    data[where : where + len(change)] = change
    with pytest.raises(G.GrammarError, match=message):
        G.Grammar.from_bytes(bytes(data))


def test_truncated_grammar_is_refused(home):
    data = home[1].to_bytes()
    with pytest.raises(G.GrammarError, match="the header says"):
        G.Grammar.from_bytes(data[:-10])
    with pytest.raises(G.GrammarError, match="too short"):
        G.Grammar.from_bytes(data[:10])


@pytest.mark.parametrize(
    "text, voice, intent, slots",
    [
        ("turn on the kitchen light", "en-us", "light.on", {"room": "kitchen"}),
        ("switch off the living room lights", "en-gb", "light.off", {"room": "living room"}),
        ("set a timer for twenty five minutes", "en-us", "timer.set", {"minutes": 25}),
        ("set a timer for sixty minutes", "en-gb", "timer.set", {"minutes": 60}),
        ("set a timer for fifteen minutes", "en-us", "timer.set", {"minutes": 15}),
        ("set the bedroom light to purple", "en-us", "light.colour",
         {"room": "bedroom", "colour": "purple"}),
        ("volume up", "en-us", "volume.up", {}),
    ],
)  # fmt: skip
def test_a_perfectly_heard_command_decodes_to_its_intent_and_slots(
    home, text, voice, intent, slots
):
    cs, g, layout = home
    cost = perfect(phones.ids(phones.phonemize(text, voice)))
    r = G.decode(g, cost)
    name = layout["intents"][r["intent"]]
    assert name == intent
    assert G.slots_of(r["token"], name, layout) == slots
    assert r["token"] >> 24 == len(text.split())  # byte 3: the words on the path
    assert r["frames"] == len(cost) and r["avg"] == (r["cost"] << 8) // len(cost)
    assert r["second"] is not None and r["second"] > r["avg"]


def test_speech_that_is_no_command_costs_more_than_a_command(home):
    cs, g, _ = home
    cmd = G.decode(g, perfect(phones.ids(phones.phonemize("turn off the fan", "en-us"))))
    other = G.decode(
        g, perfect(phones.ids(phones.phonemize("what a lovely morning it is", "en-us")))
    )
    assert cmd["avg"] == 0 and other["avg"] > 20


def test_costs_are_max_minus_logit():
    lg = np.array([[10, 200, 30], [255, 0, 255]], np.uint8)
    assert G.costs(lg).tolist() == [[190, 0, 170], [0, 255, 0]]


def test_decoder_ties_and_unreachable_tokens_are_deterministic(home):
    g = home[1]
    zeros = np.zeros((5, len(phones.CLASSES)), np.uint8)
    a = G.decode(g, zeros)
    b = G.decode(g, zeros.copy())
    assert a == b and a["cost"] == 0
    assert G.decode(g, zeros[:0])["intent"] == -1


def test_word_bonus_lets_a_long_command_heard_faintly_beat_a_one_word_command(home):
    """Every word of "turn on the kitchen lights" is second best (cost 20, the blank first)
    on its row, and "stop" is one row's third best (cost 10): without a bonus the one-word
    path wins (10 against 100). A path pays the bonus on each row it does not enter a node:
    5 words in T rows pay 24 * (T - 5), "stop" 24 * (T - 1), so the long one wins with 24."""
    g, layout = G.compile_commandset(home[0], "words")
    classes = layout["classes"]
    said = G.word_labels("turn on the kitchen lights", classes)
    rows = np.full((3 * len(said) + 2, len(classes)), 60, np.uint8)
    rows[:, 0] = 0  # the blank leads on every row
    for i, w in enumerate(said):
        rows[2 + 3 * i, w] = 20
    rows[3, classes.index("stop")] = 10
    names = layout["intents"]
    plain = G.decode(g, rows)
    assert names[plain["intent"]] == "media.stop" and plain["cost"] == 10
    bonus = G.decode(g, rows, word_bonus=24)
    assert names[bonus["intent"]] == "light.on" and (bonus["token"] >> 24) == 5
    assert bonus["cost"] == 100 + 24 * (len(rows) - 5)
    assert G.slots_of(bonus["token"], "light.on", layout) == {"room": "kitchen"}
    # the prefix of blank rows pays it too: the same answer whenever the command starts
    later = G.decode(g, np.concatenate([np.tile(rows[:1], (7, 1)), rows]), word_bonus=24)
    assert later["pattern"] == bonus["pattern"] and later["cost"] == bonus["cost"] + 7 * 24


def test_a_number_slot_too_big_for_the_token_is_an_error():
    cs = C.loads(
        'name = "x"\n[slots.n]\ntype = "number"\nmin = 1\nmax = 300\n'
        '[intents."a"]\nphrases = ["go {n}"]\n'
    )
    with pytest.raises(G.GrammarError, match="above 255"):
        G.compile_commandset(cs)


def test_a_phrase_too_long_for_the_word_count_is_an_error():
    """Byte 3 of the token counts words; the chip's sums stay below 2**30 with <= 40."""
    long = " ".join(["go"] * 41)
    cs = C.loads(f'name = "x"\n[intents."a"]\nphrases = ["{long}"]\n')
    with pytest.raises(G.GrammarError, match="41 words"):
        G.compile_commandset(cs, "words")


def test_word_units_one_node_per_word_and_unknown_words(home):
    cs = home[0]
    g, layout = G.compile_commandset(cs, "words")
    classes = layout["classes"]
    assert classes[:2] == ["_", "<unk>"] and "kitchen" in classes and "twenty" in classes
    assert g.n_classes == len(classes) and g.n_nodes < home[1].n_nodes // 3
    said = G.word_labels("set a timer for twenty five minutes", classes)
    r = G.decode(g, perfect(said, n=len(classes)))
    name = layout["intents"][r["intent"]]
    assert (name, G.slots_of(r["token"], name, layout), r["avg"]) == (
        "timer.set", {"minutes": 25}, 0,
    )  # fmt: skip
    # a near miss: "turn on the radio" has a word outside the set, which no path explains
    near = G.word_labels("turn on the radio", classes)
    assert near[-1] == 1
    assert G.decode(g, perfect(near, n=len(classes)))["avg"] > 20
    with pytest.raises(ValueError, match="units"):
        G.compile_commandset(cs, "letters")
