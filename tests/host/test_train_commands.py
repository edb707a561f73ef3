"""Command training: sentence drawing, a tiny end-to-end run, and the CLI's checks."""

import json

import numpy as np
import pytest

from voicenode_tools import cli, phones
from voicenode_tools import commandset as C
from voicenode_tools.reference import commands as rc
from voicenode_tools.train import commands as tc

SMALL = """name = "mini"
[slots.room]
values = ["kitchen", "bedroom"]
[slots.minutes]
type = "number"
min = 1
max = 4
[intents."light.on"]
phrases = ["turn on the {room} light[s]"]
[intents."timer.set"]
phrases = ["set a timer for {minutes} minute[s]"]
[intents."fan.off"]
phrases = ["turn off the fan"]
"""


def test_drawn_sentences_cover_every_intent_and_value():
    cs = C.load(C.default_path())
    rng = np.random.default_rng(0)
    drawn = tc.draw_commands(cs, 3000, rng)
    sents = {t: (i, v) for t, i, v in cs.expand()}
    assert {k for _, k, _ in drawn} == set(range(len(cs.intents)))
    minutes = {v["minutes"] for _, k, v in drawn if "minutes" in v}
    assert minutes == set(range(60))
    for t, k, v in drawn:
        assert sents[t] == (cs.intents[k].name, v)
    unk = tc.unknown_sentences(cs, "train", 400, rng)
    assert len(unk) == 400 and not set(unk) & set(sents)
    val = tc.unknown_sentences(cs, "val", 200, rng)
    assert any(s.startswith("turn on the") for s in unk + val)


def test_threads_reach_the_training(tmp_path, monkeypatch):
    """`train-commands --threads 1` trains with one PyTorch thread (beside other work two
    trainings of two threads each on two cores ran about 20 times slower than one)."""
    import torch

    from voicenode_tools.cli import main

    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "mini.toml"
    f.write_text(SMALL)
    before = torch.get_num_threads()
    seen = []
    real = tc.fit

    def fit(*a, **k):
        out = real(*a, **k)
        seen.append(torch.get_num_threads())
        return out

    monkeypatch.setattr(tc, "fit", fit)
    try:
        assert main(["train-commands", str(f), "--quick", "--threads", "1", "-q",
                     "-o", str(tmp_path / "out")]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    # the sidecar says so (with the CPU's vector unit and PyTorch's version: a rebuild on
    # another machine can differ, docs/TRAINING.md)
    made = json.loads((tmp_path / "out" / "commands_mini.json").read_text())["trained_on"]
    assert made["threads"] == 1 and made["torch"] == torch.__version__
    assert made["vector_unit"] == torch.backends.cpu.get_cpu_capability() and made["cpu"]


def test_tiny_training_run_makes_a_valid_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "mini.toml"
    f.write_text(SMALL)
    over = {"data": {"train_commands": 60, "train_unknown": 20, "val_commands": 16, "val_unknown": 8},
            "train": {"epochs": 3}}  # fmt: skip
    side = tc.build(f, tmp_path / "out", seed=3, quick=True, overrides=over)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "commands_mini.json", "commands_mini.vcg", "commands_mini_net.vnm",
        "commands_mini_net.json",
    }  # fmt: skip
    model = rc.load(out / "commands_mini")  # checks files, CRCs and the sidecar against them
    s = model.sidecar
    assert s == side and s["kind"] == "commands" and s["network"] == "commands_mini_net"
    assert s["layout"]["intents"] == ["light.on", "timer.set", "fan.off"]
    assert s["layout"]["slots"]["minutes"] == {"kind": "number", "values": [1, 2, 3, 4]}
    assert s["layout"]["intent_slots"]["timer.set"] == ["minutes"]
    assert model.net.layers[-1].out_ch == len(s["layout"]["classes"]) and model.stride == 3
    assert s["layout"]["classes"][:2] == ["_", "<unk>"] and s["logit_scale"] > 0
    assert s["seed"] == 3 and s["recipe"]["seed"] == 3
    assert s["cutoff_avg"] == tc.NO_CUTOFF and s["margin_avg"] == 0  # the rule decides
    # the word bonus is the candidate with the most commands right (the first of the best)
    sweep = s["scores"]["word_bonus_intent_accuracy"]
    assert list(sweep) == [str(b) for b in s["recipe"]["word_bonus"]]
    assert s["word_bonus"] == next(int(b) for b in sweep if sweep[b] == max(sweep.values()))
    assert model.decoder.word_bonus == s["word_bonus"]
    assert sweep[str(s["word_bonus"])] == s["scores"]["mean"]["intent_accuracy"]
    assert s["reject"]["features"] == list(rc.REJECT_FEATURES)
    assert all(type(w) is int for w in s["reject"]["weights"] + [s["reject"]["bias"]])
    sc = s["scores"]["snr20"]
    assert sc["commands"] == 16 and sc["unknown"] == 8
    assert 0.0 <= s["scores"]["mean"]["intent_accuracy"] <= 1.0
    assert s["commandset"]["sentences"] == 2 * 2 + 4 * 2 + 1
    assert s["heap_bytes"]["grammar"] == model.grammar.heap_bytes()
    # what training scored is what the twin decides on a window
    w = np.zeros((300, 40), np.uint8)
    assert rc.recognize(model, w)["intent"] == "unknown"
    # a sidecar for another grammar is refused
    bad = dict(s, grammar=dict(s["grammar"], crc32=s["grammar"]["crc32"] ^ 1))
    (out / "commands_mini.json").write_text(json.dumps(bad))
    with pytest.raises(rc.CommandModelError, match="another grammar"):
        rc.load(out / "commands_mini")


def test_reject_rule_keeps_the_target_share_of_unknown_speech():
    """`fit_reject` on decisions whose features tell commands from unknown speech (more
    emissions, a lower avg): integer weights, at most 1 % of the unknown speech kept, most
    commands kept; windows without rows (silence, none) do not count."""
    rng = np.random.default_rng(5)
    decs, items = [None, {"silence": True}], [("", None, 0, {}), ("", None, -1, {})]
    for i in range(400):
        cmd = i < 300
        em = int(rng.integers(2, 7)) if cmd else int(rng.integers(0, 3))
        avg = int(rng.integers(0, 80)) + (0 if cmd else 30)
        margin = int(rng.integers(0, 200))
        words = int(rng.integers(1, 6))
        f = [avg, margin, em, 0, em + 2, 60, (em + 2) * 256 // 60, words, 60 * 16 // words]
        decs.append({"frames": 60, "avg": avg, "second": avg + margin, "features": f})
        items.append(("x", None, 0 if cmd else -1, {}))
    rule = tc.fit_reject(decs, items, 0.01)
    assert all(type(w) is int for w in rule["weights"]) and type(rule["bias"]) is int
    kept = [rc.reject_score(d["features"], rule) >= 0 for d in decs[2:]]
    assert sum(kept[300:]) <= 1  # 1 % of the 101 unknown windows
    assert sum(kept[:300]) > 200
    assert rule["weights"][2] > 0 and rule["weights"][0] < 0  # emissions for, avg against


def test_batches_group_windows_of_similar_length():
    """`_batches`: every window once per epoch, repeatable from the seed; with decoded rows,
    each batch's windows are close in length (a batch is cut to its longest window)."""
    import torch

    rng = np.random.default_rng(2)
    rows = np.c_[np.zeros(1000, np.int64), rng.integers(20, 101, 1000)]
    plain = tc._batches(1000, 64, torch.Generator().manual_seed(1))
    grouped = tc._batches(1000, 64, torch.Generator().manual_seed(1), rows, group=8)
    again = tc._batches(1000, 64, torch.Generator().manual_seed(1), rows, group=8)
    for bs in (plain, grouped):
        assert sorted(int(i) for b in bs for i in b) == list(range(1000)) and len(bs) == 16
    assert all(a.tolist() == b.tolist() for a, b in zip(grouped, again, strict=True))

    def spread(bs):
        return np.mean([np.ptp(rows[b.numpy(), 1]) for b in bs])

    assert spread(grouped) < spread(plain) / 3


def test_phone_labels_follow_the_voice_that_spoke():
    from voicenode_tools.train import synth

    items = [("turn on the light", synth.Voice("espeak", "en-us")),
             ("turn on the light", synth.Voice("espeak", "nl")),
             ("turn on the light", synth.Voice("piper", "joe"))]  # fmt: skip
    us, nl, piper = tc.phone_labels(items)
    assert us == phones.ids(phones.phonemize("turn on the light", "en-us")) == piper
    assert nl != us and 0 not in nl
    assert tc.speech_fits(10, 16000, 300) and not tc.speech_fits(200, 16000, 300)


def test_cli_check_and_errors(tmp_path, capsys):
    assert cli.main(["train-commands", str(C.default_path()), "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["intents"] == len(C.load(C.default_path()).intents) and out["sentences"] > 500
    assert 500 < out["grammar_nodes"] < 4000
    bad = tmp_path / "bad.toml"
    bad.write_text('[intents."a"]\nphrases = [\n  "turn on the {garage} light",\n]\n')
    assert cli.main(["train-commands", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "unknown slot {garage}" in err
    assert cli.main(["train-commands", str(tmp_path / "missing.toml")]) == 1
    capsys.readouterr()
    for text in (
        "{not json",
        "[1, 2]",
        '{"train": {"distill": {"teacher_seeds": [1]}}}',
        '{"train": {"distill": {"teacher_seeds": [1], "weight": 1, "teacher_input": "quiet"}}}',
        '{"train": {"distill": {"teacher_seeds": [1], "weight": 1, "steps": 6000}}}',
        '{"train": {"distill": {"teacher_seeds": [1], "weight": 1, "teacher_variants": {}}}}',
    ):  # a bad recipe file is named before any work
        (tmp_path / "r.json").write_text(text)
        args = ["train-commands", str(C.default_path()), "--recipe", str(tmp_path / "r.json")]
        assert cli.main(args) == 1
        assert str(tmp_path / "r.json") in capsys.readouterr().err


def test_quant_stream_gives_the_twins_integers():
    """`model.quant_stream` (a batch at once, for the teachers) gives exactly the integers of
    the twin's `QuantModel.stream` on real features, for the command network and a wake word."""
    from voicenode_tools import REPO_ROOT
    from voicenode_tools.audio import load_16k
    from voicenode_tools.demo import DEMO_WAV
    from voicenode_tools.reference import frontend, mic
    from voicenode_tools.reference import nn as ref
    from voicenode_tools.train.model import quant_stream

    feats = frontend.features(mic.highpass(load_16k(DEMO_WAV))[0])
    windows = np.stack([feats[i : i + 300] for i in range(0, len(feats) - 300, 250)])
    windows = np.concatenate([windows, np.full((1, 300, 40), 255, np.uint8)])  # the extremes
    for name, head in (("commands_home_net", "logits"), ("hey_jarvis", "sigmoid")):
        q = ref.QuantModel.load(REPO_ROOT / "models" / f"{name}.vnm", head=head)
        got = quant_stream(q, windows).numpy()
        want = np.stack([q.stream(w) for w in windows])
        assert got.shape[:2] == (len(windows), 100)
        assert np.array_equal(got if head == "logits" else got[:, :, 0], want)


#: a few seconds of training for the tests that build teachers
TINY = tc._merge(tc.QUICK, {
    "data": {"train_commands": 40, "train_unknown": 12, "val_commands": 8, "val_unknown": 4},
    "train": {"epochs": 2}, "word_bonus": [0]})  # fmt: skip


def test_distillation_builds_its_teachers_once(tmp_path, monkeypatch):
    """`train.distill`: each teacher is the recipe without distillation at its seed, built
    once (as `train-commands --seed S` builds it) and then taken from the cache; the student
    keeps its own data; the same build again makes the same student."""
    from voicenode_tools.reference import nn as ref

    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "mini.toml"
    f.write_text(SMALL)
    tiny = TINY
    kd = tc._merge(tiny, {"train": {"distill": {"teacher_seeds": [4, 5], "weight": 0.5}}})
    side = tc.build(f, tmp_path / "out", seed=3, overrides=kd)
    assert side["recipe"]["train"]["distill"] == {"teacher_seeds": [4, 5], "weight": 0.5}
    assert side["train_seconds"]["teachers"] > 0
    folders = sorted((tmp_path / "cache" / "voicenode" / "commands" / "teachers").iterdir())
    assert len(folders) == 2
    got = sorted(json.loads((d / "commands_mini.json").read_text())["seed"] for d in folders)
    assert got == [4, 5]
    for d in folders:  # a teacher is the plain recipe: its sidecar is a plain build's
        t = json.loads((d / "commands_mini.json").read_text())
        assert "distill" not in t["recipe"]["train"]
        assert t["recipe"] == tc.make_recipe(t["seed"], overrides=tiny)
        assert ref.QuantModel.load(d / "commands_mini_net.vnm", head="logits").stride == 3
    # ... byte for byte what `train-commands FILE --seed 4` makes
    tc.build(f, tmp_path / "plain4", seed=4, overrides=tiny)
    four = [d for d in folders if json.loads((d / "commands_mini.json").read_text())["seed"] == 4]
    want = (tmp_path / "plain4" / "commands_mini_net.vnm").read_bytes()
    assert (four[0] / "commands_mini_net.vnm").read_bytes() == want
    plain = tc.make_recipe(3, overrides=tiny)
    assert side["data_hash"] == tc.data_hash(C.load(f), plain, 16000)
    stamps = [(d / "commands_mini_net.vnm").stat().st_mtime_ns for d in folders]
    tc.build(f, tmp_path / "again", seed=3, overrides=kd)
    assert [(d / "commands_mini_net.vnm").stat().st_mtime_ns for d in folders] == stamps
    for ext in ("_net.vnm", ".vcg"):
        a = (tmp_path / "again" / f"commands_mini{ext}").read_bytes()
        assert a == (tmp_path / "out" / f"commands_mini{ext}").read_bytes()
    # a smoke run trains no teachers
    assert "distill" not in tc.make_recipe(3, quick=True, overrides=kd)["train"]


def test_a_scenes_clean_twin_is_the_same_window_without_its_noise():
    from voicenode_tools.train import augment

    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal(16000) * 3000).astype(np.int16)
    tc._init([(rng.standard_normal(16000 * 20) * 3000).astype(np.int16)], None)
    for seed in range(6):  # music, noise, a room or not, a band limit or not
        w, onset = tc.scene(pcm, seed, (5, 5), 300, clean=0.0)
        wc, onset_c = tc.scene(pcm, seed, (5, 5), 300, clean=0.0, clean_db=40)
        assert onset_c == onset and wc.shape == w.shape and not np.array_equal(wc, w)
        # the front end measures from the noise floor: the speech stands higher above it
        speech = slice(onset, onset + 100)
        assert wc[speech].mean() > w[speech].mean() + 5
        # `augment` is the first of `augment_pair`: the twin changes none of its draws
        x = (rng.standard_normal(8000) * 1000).astype(np.int16)
        a = augment.augment(x, 16000, np.random.default_rng(seed), snr_db=(5, 5))
        b, t = augment.augment_pair(
            x, 16000, np.random.default_rng(seed), snr_db=(5, 5), clean_db=40
        )
        assert np.array_equal(a, b) and t.shape == a.shape


def test_teachers_can_hear_the_clean_twins_of_the_training_windows(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "mini.toml"
    f.write_text(SMALL)
    kd = {"teacher_seeds": [4], "weight": 0.5, "teacher_input": "clean"}
    heard = []  # what the teachers are given
    probs = tc.teacher_probs
    monkeypatch.setattr(tc, "teacher_probs", lambda m, x: heard.append(x) or probs(m, x))
    side = tc.build(
        f, tmp_path / "out", seed=3, overrides=tc._merge(TINY, {"train": {"distill": kd}})
    )
    assert side["recipe"]["train"]["distill"]["teacher_input"] == "clean"
    scenes = next(
        (tmp_path / "cache" / "voicenode" / "commands" / side["data_hash"]).glob("scenes_*")
    )
    noisy, clean = np.load(scenes / "train_cmd.npz"), np.load(scenes / "train_cmd_clean40.npz")
    assert np.array_equal(noisy["onset"], clean["onset"]) and noisy["w"].shape == clean["w"].shape
    assert not np.array_equal(noisy["w"], clean["w"])
    # the teachers heard the clean twins, the student (`fit`) the noisy windows
    (x,) = heard
    assert any(np.array_equal(x[0], w) for w in clean["w"])
    assert not any(np.array_equal(x[0], w) for w in noisy["w"])
