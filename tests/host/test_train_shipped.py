"""The shipped wake-word models load and match the current front end."""

import json

import pytest

from voicenode_tools import REPO_ROOT
from voicenode_tools.reference import nn as ref

SHIPPED = ("hey_jarvis", "alexa")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_matches_current_frontend(name):
    path = REPO_ROOT / "models" / f"{name}.vnm"
    model = ref.QuantModel.load(path)
    side = model.sidecar
    ref.check_sidecar(side, model, where=str(path), frontend=ref.frontend_params())
    # Reproducible from its recipe: the recipe file and the sidecar agree on the data.
    rec_file = REPO_ROOT / "models" / "recipes" / f"{name}.json"
    assert json.loads(rec_file.read_text())["phrase"] == side["wake_phrase"]
    assert side["recipe"]["phrase"] == side["wake_phrase"]
    assert side["scores"]["negative_hours"] > 0.3


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_rebuilt_by_its_recipe(name):
    """`voicenode train-wakeword PHRASE --seed N` makes exactly the recipe the model records."""
    from voicenode_tools.train import recipe

    side = json.loads((REPO_ROOT / "models" / f"{name}.json").read_text())
    rec = recipe.make(side["wake_phrase"], seed=side["seed"])
    assert recipe.recipe_hash(rec) == side["recipe_hash"] == recipe.recipe_hash(side["recipe"])
