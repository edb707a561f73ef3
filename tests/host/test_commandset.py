"""Command-set files: the default set parses, expansions are counted, bad files name the line."""

import pytest

from voicenode_tools import commandset as C

HEAD = """name = "t"
[slots.room]
values = ["kitchen", "living room"]
[slots.n]
type = "number"
min = 1
max = 12
"""


def test_default_set_parses_with_about_twenty_intents():
    cs = C.load(C.default_path())
    names = cs.intent_names
    assert 18 <= len(names) <= 24
    for need in ("light.on", "light.off", "light.brighter", "light.dimmer", "fan.on", "fan.off",
                 "volume.up", "volume.down", "media.play", "media.pause", "media.stop",
                 "media.next", "timer.set", "timer.cancel", "time.query", "audio.mute",
                 "audio.unmute"):  # fmt: skip
        assert need in names
    assert cs.intent("timer.set").slots == ["minutes"]
    assert cs.slots["minutes"].values == list(range(1, 61))
    assert cs.slots["minutes"].spoken[24] == "twenty five"
    lay = cs.layout()
    assert lay["outputs"] == len(names) + 7 + 7 + 60
    sents = list(cs.expand())
    assert ("set a timer for twenty five minutes", "timer.set", {"minutes": 24}) in sents
    assert ("turn on the living room lights", "light.on", {"room": 1}) in sents
    # No sentence means two things.
    by_text = {}
    for t, i, v in sents:
        assert by_text.setdefault(t, (i, v)) == (i, v)


def test_expansion_counts():
    cs = C.loads(
        HEAD
        + """
[intents."a.on"]
phrases = ["turn (on|up) the {room} light[s] [now|please]"]
[intents."t.set"]
phrases = ["timer [for] {n} minute[s]"]
[intents."x"]
phrases = ["stop"]
"""
    )
    assert cs.count() == {"a.on": 2 * 2 * 2 * 3, "t.set": 2 * 12 * 2, "x": 1}
    texts = [t for t, _ in cs.expand_intent(cs.intent("a.on"))]
    assert "turn up the living room lights please" in texts
    assert "turn on the kitchen light" in texts
    assert all("  " not in t and not t.endswith(" ") for t in texts)
    assert C.number_words(60) == "sixty" and C.number_words(13) == "thirteen"
    assert C.number_words(101) == "one hundred and one"


def _bad(body):
    with pytest.raises(C.CommandSetError) as e:
        C.loads(HEAD + body, "bad.toml")
    return str(e.value)


@pytest.mark.parametrize(
    "body, line, words",
    [
        ('[intents."a"]\nphrases = ["turn on the {garage} light"]\n', 9, "unknown slot {garage}"),
        ('[intents."a"]\nphrases = ["turn (on|off the light"]\n', 9, "never closed"),
        ('[intents."a"]\nphrases = ["turn on] the light"]\n', 9, "unbalanced"),
        ('[intents."a"]\nphrases = [\n  "ok",\n  "turn (on||off)",\n]\n', 11, "empty alternative"),
        ('[intents."a"]\nphrases = ["turn (on|) now"]\n', 9, "empty alternative"),
        ('[intents."a"]\nphrases = ["go [] now"]\n', 9, "empty brackets"),
        (
            '[intents."a"]\nphrases = ["lights on"]\n[intents."b"]\nphrases = [\n "x",\n "lights (on|up)",\n]\n',
            13,
            "duplicate phrase",
        ),
        ('[intents."a"]\nphrases = ["{room} on", "on"]\n', 9, "same slots"),
        ('[intents."a"]\nphrases = ["set 5 minutes"]\n', 9, "bad word"),
        ('[intents."a"]\nphrases = ["on {room} {room}"]\n', 9, "used twice"),
        ('[intents."unknown"]\nphrases = ["on"]\n', 8, "bad intent name"),
        ('[intents."a"]\nphrases = "on"\n', 8, "non-empty list"),
        ('[intents."a"]\nphrases = ["on" "off"]\n', 9, "TOML syntax error"),
    ],
)
def test_bad_files_name_the_line_and_problem(body, line, words):
    msg = _bad(body)
    assert msg.startswith(f"bad.toml:{line}:"), msg
    assert words in msg, msg


def test_duplicate_message_names_both_lines():
    msg = _bad(
        '[intents."a"]\nphrases = ["lights on"]\n[intents."b"]\nphrases = ["lights (on|up)"]\n'
    )
    assert "'b'" in msg and "'a'" in msg and "line 9" in msg and msg.startswith("bad.toml:11:")


def test_bad_slot_definitions():
    with pytest.raises(C.CommandSetError, match=r"x.toml:2: .*number slot"):
        C.loads('[intents."a"]\n[slots.m]\ntype = "number"\nmin = 5\nmax = 2\n', "x.toml")
    with pytest.raises(C.CommandSetError, match=r"x.toml:3: .*duplicate value"):
        C.loads('[slots.r]\nvalues = ["a",\n "b", "a"]\n', "x.toml")


def test_the_default_set_as_json_is_the_same_set(tmp_path):
    """A .json file of the same tables is read like the TOML file (the issue allows either)."""
    import json

    import tomllib

    doc = tomllib.loads(C.default_path().read_text())
    f = tmp_path / "home.json"
    f.write_text(json.dumps(doc, indent=2))
    a, b = C.load(C.default_path()), C.load(f)
    assert list(b.expand()) == list(a.expand()) and b.layout() == a.layout()
    assert b.name == a.name


JSON_HEAD = """{
  "name": "t",
  "slots": {
    "room": {"values": ["kitchen", "bedroom"]}
  },
  "intents": {
"""


@pytest.mark.parametrize(
    "body, line, words",
    [
        ('    "a": {\n      "phrases": [\n        "ok",\n        "turn on the {garage} light"\n'
         "      ]\n    }\n  }\n}\n", 10, "unknown slot {garage}"),
        ('    "a": {"phrases": ["on"]},\n    "unknown": {"phrases": ["off"]}\n  }\n}\n', 8,
         "bad intent name"),
        ('    "a": {"phrases": ["on"]}\n  },\n  "colour": 1\n}\n', 9, "unknown top-level key"),
        ('    "a": {"phrases": ["on",]}\n  }\n}\n', 7, "JSON syntax error"),
        # the second "on" is the duplicate, though "on" and "b" are on earlier lines too
        ('    "a": {"phrases": ["on"]},\n    "ab": {"phrases": ["x"]},\n'
         '    "b": {"phrases": ["on"]}\n  }\n}\n', 9, "duplicate phrase"),
    ],
)  # fmt: skip
def test_a_json_file_names_the_line_too(tmp_path, body, line, words):
    f = tmp_path / "bad.json"
    f.write_text(JSON_HEAD + body)
    with pytest.raises(C.CommandSetError) as e:
        C.load(f)
    assert str(e.value).startswith(f"{f}:{line}:"), str(e.value)
    assert words in str(e.value)


def test_other_formats_get_what_to_do(tmp_path):
    y = tmp_path / "home.yaml"
    y.write_text("name: home\n")
    with pytest.raises(C.CommandSetError, match=r"home.yaml:1: YAML is not read here.*TOML.*JSON"):
        C.load(y)
    t = tmp_path / "home.toml"  # JSON text in a .toml file
    t.write_text('{"name": "x"}\n')
    with pytest.raises(C.CommandSetError, match=r"TOML syntax error.*looks like JSON"):
        C.load(t)


def test_jsgf_lists_every_template():
    cs = C.loads(HEAD + '[intents."a"]\nphrases = ["turn on the {room} light[s]"]\n')
    g = C.jsgf(cs)
    assert "<intent0> = turn on the <slot_room> light | turn on the <slot_room> lights;" in g
    assert "<slot_room> = (kitchen) | (living room);" in g
    assert g.startswith("#JSGF V1.0;")
