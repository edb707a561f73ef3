"""Recipes: everything that determines a model, hashed so that data can be cached and reused.

A recipe is plain JSON (`models/recipes/<name>.json`). Its *data hash* covers everything that
changes the generated audio (phrase, negatives, counts, voices, augmentation, seed, sample rate
and this module's DATA_VERSION), so `~/.cache/voicenode/data/<hash>/` can be reused by any
training run with the same data settings. Its *clips hash* leaves out the settings only the
training tracks read (`TRACK_KEYS`), so recipes that differ in those alone share their
synthesized clips (`data.load_or_generate` links them instead of synthesizing again).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

from voicenode_tools import REPO_ROOT

#: Bump when the data generator changes in a way that changes its output.
DATA_VERSION = 2
# The data settings that only the training tracks read (`trainer`), not the synthesis.
TRACK_KEYS = ("augment_copies", "snr_db", "room_fraction", "babble_fraction")
RECIPES_DIR = REPO_ROOT / "models" / "recipes"

#: Defaults; a recipe file overrides any of these keys (nested dicts merge).
DEFAULTS = {
    "name": None,
    "phrase": None,
    "negatives": [],  # confusable phrases on top of the generated ones
    "seed": 1,
    "data": {
        "positives": 2400,  # training clips of the phrase
        "piper_fraction": 0.25,  # share of training positives said by piper
        "confusables": 2400,  # training clips of confusable phrases
        "speech_minutes": 60,  # long negative speech for false-accept training
        "music_clips": 6,  # 20 s pieces of random music
        "val_positives": 300,  # held-out espeak voices
        "val_piper_positives": 200,  # piper only (cross-synthesizer check)
        "val_confusables": 300,
        "val_speech_minutes": 60,  # held-out voices reading held-out text
        "augment_copies": 2,  # augmented copies of each training positive
        "snr_db": [0, 25],
        # optional "room_fraction": share of training utterances put in a synthetic room
        # (0.5 when absent, as in every shipped recipe; `room_fraction`)
        # optional "babble_fraction": share of training tracks over babble (0.2 when absent,
        # as in every shipped recipe; music and noise share the rest 3:5; `bed_shares`)
    },
    # The streaming network: (kind, out_ch, k, stride, dilation) per layer, see train/model.py.
    "model": {
        "spec": [
            ["conv", 48, 3, 3, 1],
            ["dwconv", 0, 5, 1, 1],
            ["dense", 64, 1, 1, 1],
            ["dwconv", 0, 5, 1, 2],
            ["dense", 64, 1, 1, 1],
            ["dwconv", 0, 9, 1, 4],
            ["dense", 96, 1, 1, 1],
            ["dwconv", 0, 9, 1, 1],
            ["dense", 96, 1, 1, 1],
            ["conv", 1, 6, 1, 1],
        ]
    },
    "train": {
        "steps": 6000,
        "batch": 64,
        "chunk": 450,
        "lr": 0.003,
        "neg_weight": 3.0,
        "p_stream_start": 0.2,
        # On-the-fly feature augmentation (`specaug`): other vocal tracts (mel bands shifted
        # by up to 2) and SpecAugment masks. With 6000 steps it took the shipped alexa model
        # from 41 % / 24 % to 15 % / 9 % false rejects (held-out espeak / piper, 0.5 FA/h).
        "augment": {"shift": 2, "freq_masks": 2, "freq_width": 5, "time_masks": 2, "time_width": 8},
    },
    # window: the cutoff applies to the mean of this many model steps (30 ms each); 5 beat 2,
    # 3, 4, 6 and 8 on both shipped phrases at 0.5 FA/h (docs/WAKEWORD_HISTORY.md)
    "detect": {"window": 5, "target_fa_per_hour": 0.5},
}


def slug(phrase: str) -> str:
    """File-friendly name of a phrase: "hey jarvis" -> "hey_jarvis"."""
    s = re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")
    if not s:
        raise ValueError(f"phrase {phrase!r} has no letters")
    return s


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def shipped_file(phrase: str) -> Path | None:
    """The shipped recipe file of ``phrase`` (``models/recipes/<slug>.json``), or None."""
    path = RECIPES_DIR / f"{slug(phrase)}.json"
    return path if path.exists() else None


def make(phrase: str, seed: int = 1, **overrides) -> dict:
    """A complete recipe for ``phrase``: the shipped recipe file if there is one, else defaults.

    Args:
        phrase: the wake phrase, e.g. "hey jarvis".
        seed: random seed for data and training.
        **overrides: nested dicts merged over the recipe (e.g. ``data={"positives": 50}``).
    """
    path = shipped_file(phrase)
    base = _merge(DEFAULTS, {"name": slug(phrase), "phrase": phrase.lower().strip()})
    if path is not None:
        base = _merge(base, json.loads(path.read_text()))
    base["seed"] = seed
    return check(_merge(base, overrides))


def benchmark(phrase: str, seed: int = 1) -> dict:
    """The recipe whose clips and backgrounds the benchmarks play for ``phrase``.

    The shipped recipe (its phrase, what is said, its confusables), but always the default
    ``data`` settings: those of a shipped recipe choose its training data, and the rng they
    share moves the validation draws too, so a shipped recipe that sets one (more piper, a
    room share) would otherwise change the benchmark's audio under every published table.
    """
    rec = make(phrase, seed=seed)
    rec["data"] = copy.deepcopy(DEFAULTS["data"])
    return rec


def load(path: str | os.PathLike) -> dict:
    """Read a recipe file and fill in the defaults."""
    rec = json.loads(Path(path).read_text())
    if not rec.get("phrase"):
        raise ValueError(f"{path}: recipe has no phrase")
    rec.setdefault("name", slug(rec["phrase"]))
    try:
        return check(_merge(DEFAULTS, rec))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def check(recipe: dict) -> dict:
    """The recipe, if its phrase can be trained; else a ValueError saying why.

    A phrase with no vowel to change ("x", "hmm") gives no confusable negatives, and a
    detector trained without them fires on anything like it.
    """
    from . import synth

    room_fraction(recipe.get("data", {}))
    bed_shares(recipe.get("data", {}))
    synth.refuse_mbrola(recipe.get("data", {}))
    phrase = spoken(recipe)
    if not confusables(phrase, recipe.get("negatives")):
        raise ValueError(
            f"phrase {phrase!r} gives no confusable negatives to train against (no"
            " vowel to vary): pick a longer phrase (two or more syllables work best) or list"
            ' "negatives" in a recipe file'
        )
    return recipe


def _share(data: dict, key: str, default: float) -> float:
    """``data[key]`` as a share (``default`` when absent); a ValueError naming the key when
    it is not a number from 0 to 1."""
    share = data.get(key, default)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"data.{key} must be a number from 0 to 1, not {share!r}")
    return float(share)


def room_fraction(data: dict) -> float:
    """Share of the training utterances put in a synthetic room: the recipe's optional
    ``data.room_fraction`` (absent from the shipped recipes, so their data hashes stay),
    else 0.5. The validation tracks always use 0.5, as the benchmark does.

    Raises:
        ValueError: when it is not a number from 0 to 1.
    """
    return _share(data, "room_fraction", 0.5)


def bed_shares(data: dict) -> dict:
    """The training tracks' background kinds and their shares (`tracks.BED_SHARES`): with
    the recipe's optional ``data.babble_fraction`` (absent from the shipped recipes) babble
    takes that share and music and noise the rest in their usual ratio. The validation
    tracks always use the usual shares, as the benchmark does.

    Raises:
        ValueError: when the fraction is not a number from 0 to 1.
    """
    from .tracks import BED_SHARES

    if "babble_fraction" not in data:
        return dict(BED_SHARES)
    b = _share(data, "babble_fraction", BED_SHARES["babble"])
    rest = (1 - b) / (1 - BED_SHARES["babble"])
    music = BED_SHARES["music"] * rest
    return {"music": music, "babble": b, "noise": max(0.0, 1 - music - b)}


def canonical(obj) -> str:
    """Canonical JSON: sorted keys, no spaces (the input of the hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _data_key(recipe: dict, rate: int) -> dict:
    key = {
        "v": DATA_VERSION,
        "rate": rate,
        "phrase": recipe["phrase"],
        "negatives": sorted(recipe.get("negatives", [])),
        "seed": recipe["seed"],
        "data": recipe["data"],
    }
    if recipe.get("say"):  # only when set: the hashes of recipes without it stay the same
        key["say"] = recipe["say"]
    return key


def _hash(key: dict) -> str:
    return hashlib.sha256(canonical(key).encode()).hexdigest()[:16]


def data_hash(recipe: dict, rate: int) -> str:
    """Hash of everything that changes the generated data (16 hex digits): the clips and the
    tracks made from them."""
    return _hash(_data_key(recipe, rate))


def clips_hash(recipe: dict, rate: int) -> str:
    """Hash of everything that changes the synthesized clips: `data_hash`'s settings but the
    `TRACK_KEYS`. Recipes with the same clips hash make the same clips."""
    key = _data_key(recipe, rate)
    key["data"] = {k: v for k, v in key["data"].items() if k not in TRACK_KEYS}
    return _hash(key)


def recipe_hash(recipe: dict) -> str:
    """Hash of the whole recipe (16 hex digits)."""
    return hashlib.sha256(canonical(recipe).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where generated data lives: $VOICENODE_CACHE or ~/.cache/voicenode."""
    root = os.environ.get("VOICENODE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "voicenode"
    )
    return Path(root) / "data"


# --- confusable phrases ----------------------------------------------------------------------

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "tr", "st", "br", "gr", "pl")  # fmt: skip


def _split_onset(word: str) -> tuple[str, str]:
    m = re.match(r"^([^aeiouy]*)(.*)$", word)
    return (m.group(1), m.group(2)) if m else ("", word)


def spoken(recipe: dict) -> str:
    """What the synthesizers read for the phrase: the recipe's ``say`` or the phrase itself.

    espeak-ng (and piper, which speaks through espeak-ng's phonemes) reads "mycroft" as
    "mick-roft"; a recipe spells it the way it is said (``"say": "hey my croft"``).
    """
    return str(recipe.get("say") or recipe["phrase"]).lower().strip()


def confusables(phrase: str, extra: list[str] | None = None) -> list[str]:
    """Phrases that sound like parts of ``phrase`` but are not it.

    Made from the phrase by: each word alone, the phrase without one word, each word with its
    first consonants changed ("jarvis" -> "garvis", "travis"), the words reversed, and the
    recipe's own list.
    """
    words = phrase.lower().split()
    out = set(extra or [])
    for i, w in enumerate(words):
        out.add(w)
        if len(words) > 1:
            out.add(" ".join(words[:i] + words[i + 1 :]))
        onset, rest = _split_onset(w)
        for o in _ONSETS:
            # No empty onset ("ey jarvis" is "hey jarvis" said softly) and no "ch"/"sh"
            # ("hey charvis" is within a synthetic accent of "hey jarvis"): not negatives.
            if o != onset and rest:
                out.add(" ".join(words[:i] + [o + rest] + words[i + 1 :]))
    if len(words) > 1:
        out.add(" ".join(reversed(words)))
    out.discard(phrase.lower())
    return sorted(out)
