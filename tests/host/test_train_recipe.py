"""Recipes: defaults, hashing, confusable phrases."""

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


def test_slug():
    assert recipe.slug("Hey, Jarvis!") == "hey_jarvis"
