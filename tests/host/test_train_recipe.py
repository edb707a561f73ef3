"""Recipes: defaults, hashing, confusable phrases."""

import json

from voicenode_tools.train import recipe


def test_data_hash_deterministic_and_sensitive():
    a = recipe.make("hey jarvis", seed=1)
    b = recipe.make("Hey Jarvis", seed=1)
    assert recipe.data_hash(a, 16000) == recipe.data_hash(b, 16000)
    assert len(recipe.data_hash(a, 16000)) == 16
    assert recipe.data_hash(a, 16000) != recipe.data_hash(recipe.make("hey jarvis", seed=2), 16000)
    assert recipe.data_hash(a, 16000) != recipe.data_hash(a, 8000)
    c = recipe.make("hey jarvis", seed=1, data={"positives": 10})
    assert recipe.data_hash(a, 16000) != recipe.data_hash(c, 16000)
    # Training settings do not change the data.
    d = recipe.make("hey jarvis", seed=1, train={"steps": 5})
    assert recipe.data_hash(a, 16000) == recipe.data_hash(d, 16000)
    assert recipe.recipe_hash(a) != recipe.recipe_hash(d)


def test_confusables_exclude_the_phrase():
    c = recipe.confusables("hey jarvis", ["hey service"])
    assert "hey jarvis" not in c
    assert {"jarvis", "hey", "hey service", "hey garvis", "bey jarvis", "jarvis hey"} <= set(c)
    assert "ey jarvis" not in c


def test_a_phrase_with_nothing_to_vary_is_refused_with_the_reason(tmp_path, capsys):
    import json

    import pytest

    from voicenode_tools.cli import main

    with pytest.raises(ValueError, match="no confusable negatives"):
        recipe.make("x")
    # its own negatives make it trainable
    assert recipe.make("x", negatives=["ex"])["negatives"] == ["ex"]
    f = tmp_path / "hmm.json"
    f.write_text(json.dumps({"phrase": "hmm"}))
    with pytest.raises(ValueError, match=r"hmm\.json: phrase 'hmm' gives no confusable"):
        recipe.load(f)
    # the command line says so before any synthesis (it crashed inside the data step)
    assert main(["train-wakeword", "x", "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "no confusable negatives" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_slug():
    assert recipe.slug("Hey, Jarvis!") == "hey_jarvis"


def test_say_is_what_the_voices_read_and_keys_the_data():
    jarvis = recipe.make("hey jarvis", seed=2)
    assert recipe.spoken(jarvis) == "hey jarvis" and "say" not in jarvis
    # a recipe without "say" hashes as before it existed: the shipped model's data
    assert recipe.data_hash(jarvis, 16000) == "4e3851babd1048c6"
    mycroft = recipe.make("hey mycroft", seed=1)  # espeak-ng alone says "mick-roft"
    assert mycroft["phrase"] == "hey mycroft" and recipe.spoken(mycroft) == "hey my croft"
    plain = {k: v for k, v in mycroft.items() if k != "say"}
    assert recipe.data_hash(mycroft, 16000) != recipe.data_hash(plain, 16000)
    assert recipe.spoken(recipe.make("x", say=" Hey My Croft ")) == "hey my croft"


def test_the_voices_read_the_recipes_say_text():
    from voicenode_tools.train import data

    tiny = {"positives": 3, "confusables": 4, "speech_minutes": 0.01, "music_clips": 0,
            "val_positives": 2, "val_piper_positives": 0, "val_confusables": 2,
            "val_speech_minutes": 0.01, "piper_fraction": 0.0}  # fmt: skip
    clips = data.generate(recipe.make("hey mycroft", seed=1, data=tiny), 16000, workers=1)
    for group in ("train_pos", "val_pos"):
        assert clips.info[group] and all(i.endswith("|hey my croft") for i in clips.info[group])
    said = [i.split("|", 1)[1] for i in clips.info["train_conf"] + clips.info["val_conf"]]
    assert "hey my croft" not in said and "hey mycroft" not in said


def test_the_benchmark_plays_the_default_data_whatever_a_shipped_recipe_sets(tmp_path, monkeypatch):
    # A shipped recipe that trains on more piper and other rooms: its training data changes,
    # the benchmark's clips and backgrounds (its data hash) do not.
    base = recipe.benchmark("hey jarvis", seed=1)
    assert recipe.data_hash(base, 16000) == recipe.data_hash(recipe.make("hey jarvis"), 16000)
    shipped = json.loads((recipe.RECIPES_DIR / "hey_jarvis.json").read_text())
    shipped["data"] = {"piper_fraction": 0.5, "room_fraction": 0.8}
    (tmp_path / "hey_jarvis.json").write_text(json.dumps(shipped))
    monkeypatch.setattr(recipe, "RECIPES_DIR", tmp_path)
    assert recipe.make("hey jarvis")["data"]["piper_fraction"] == 0.5
    assert recipe.data_hash(recipe.make("hey jarvis"), 16000) != recipe.data_hash(base, 16000)
    bench = recipe.benchmark("hey jarvis", seed=1)
    assert recipe.data_hash(bench, 16000) == recipe.data_hash(base, 16000)
    assert bench["negatives"] == base["negatives"] and bench["train"] == base["train"]
    # The defaults themselves are not handed out to be changed.
    bench["data"]["positives"] = 1
    assert recipe.DEFAULTS["data"]["positives"] == 2400
