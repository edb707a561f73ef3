"""Clips for the HIL suite, made at test time with espeak-ng (nothing downloaded).

A clip is a wake phrase (or a negative sentence) said by espeak-ng, placed in quiet noise with
a known position: `Clip.word_end` is the sample where the speech ends, so that an event's
latency is "sample position of the event - word_end". The mixed stream of the soak test is
built from the same parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT

#: The voice for the suite's positives: espeak-ng's default American voice, plain settings.
VOICE = ("en-us", "", 150, 50)
#: Voices for the clips of the wake-word tests (name, variant, speed, pitch).
VOICES = (
    ("en-us", "", 150, 50),
    ("en-gb", "m3", 140, 40),
    ("en-us", "f2", 160, 60),
)
#: Sentences without the wake phrase (the no-wake tests and the soak's negatives).
NEGATIVES = (
    "what time is it in the kitchen",
    "please pass me the salt and the pepper",
    "the weather will be cloudy with light rain tomorrow",
    "open the window in the living room",
    "my favourite colour is green",
    "we are going to the market on saturday",
)
#: Peak level of the speech and RMS of the background noise (int16 units).
SPEECH_PEAK = 12000
NOISE_RMS = 60


@dataclass
class Clip:
    """A clip with the position of its speech.

    Attributes:
        name: a label for reports.
        pcm: int16 samples.
        rate: samples per second.
        word_start: first sample of the speech.
        word_end: last sample of the speech (the end of the wake phrase in a positive).
        positive: True when the clip says the wake phrase.
        text: what is said.
    """

    name: str
    pcm: np.ndarray
    rate: int
    word_start: int
    word_end: int
    positive: bool
    text: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate


def rate() -> int:
    """The node's sample rate (the parameter file shared with the firmware)."""
    from voicenode_tools.train.synth import default_rate

    return default_rate()


#: A folder of models to use instead of the shipped ones (the plugin's --models).
MODELS_OVERRIDE = None


def models_dirs() -> list[Path]:
    """Where shipped models live: deployed with the app (firmware/models), or models/."""
    if MODELS_OVERRIDE:
        return [Path(MODELS_OVERRIDE)]
    return [FIRMWARE_DIR / "models", REPO_ROOT / "models"]


def shipped_models() -> list[Path]:
    """The shipped wake-word models (`*.vnm` with a JSON sidecar next to them)."""
    for d in models_dirs():
        found = sorted(p for p in d.glob("*.vnm") if p.with_suffix(".json").is_file())
        if found:
            return found
    return []


def default_model() -> Path | None:
    """The model the node runs by default (`hey_jarvis`), else the first shipped one."""
    models = shipped_models()
    for m in models:
        if m.stem == "hey_jarvis":
            return m
    return models[0] if models else None


def wake_phrase(model: Path | None = None) -> str | None:
    """The wake phrase of a shipped model, as a voice says it; None if none ships.

    From its sidecar: the recipe's ``say`` when it spells the phrase for the synthesizers
    ("hey my croft" for "hey mycroft"), else the phrase (or the recipe's, or the name).
    """
    models = [model] if model else [m for m in [default_model()] if m]
    for m in models:
        side = json.loads(Path(m).with_suffix(".json").read_text())
        recipe = side.get("recipe")
        if isinstance(recipe, dict) and isinstance(recipe.get("say"), str):
            return recipe["say"]
        for key in ("phrase", "wake_phrase", "wake_word"):
            if isinstance(side.get(key), str):
                return side[key]
        if isinstance(recipe, dict) and isinstance(recipe.get("phrase"), str):
            return recipe["phrase"]
        name = side.get("name") or Path(m).stem
        if isinstance(name, str) and name:
            return name.replace("_", " ")
    return None


def say(text: str, voice=VOICE, sample_rate: int | None = None) -> np.ndarray:
    """`text` said by espeak-ng, trimmed of silence, scaled to SPEECH_PEAK, int16."""
    from voicenode_tools.train.synth import Voice, espeak

    name, variant, speed, pitch = voice
    pcm = espeak(text, Voice("espeak", name, variant, speed, pitch), sample_rate or rate())
    x = pcm.astype(np.float32)
    peak = float(np.max(np.abs(x))) or 1.0
    return np.clip(np.round(x * (SPEECH_PEAK / peak)), -32768, 32767).astype(np.int16)


def noise(n: int, rng: np.random.Generator, level: float = NOISE_RMS) -> np.ndarray:
    """Quiet white noise (a room, not silence: a front end sees real microphones' hiss)."""
    return np.clip(np.round(rng.standard_normal(n) * level), -32768, 32767).astype(np.int16)


def speech_bounds(speech: np.ndarray, thresh: int = 300) -> tuple[int, int]:
    """First and last sample louder than `thresh` (where the words start and end)."""
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > thresh)
    if len(loud) == 0:
        return 0, len(speech)
    return int(loud[0]), int(loud[-1])


def place(
    speech: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    before: float = 1.0,
    after: float = 1.5,
) -> tuple[np.ndarray, int, int]:
    """Speech in noise with `before`/`after` seconds around it; (pcm, word_start, word_end)."""
    a = int(before * sample_rate)
    b = int(after * sample_rate)
    out = noise(a + len(speech) + b, rng).astype(np.int32)
    out[a : a + len(speech)] += speech
    s, e = speech_bounds(speech)
    return np.clip(out, -32768, 32767).astype(np.int16), a + s, a + e


def positive(phrase: str, voice=VOICE, seed: int = 0, sample_rate: int | None = None) -> Clip:
    """A clip of the wake phrase in quiet noise."""
    sr = sample_rate or rate()
    rng = np.random.default_rng(seed)
    pcm, s, e = place(say(phrase, voice, sr), sr, rng)
    name = f"wake:{voice[0]}{'+' + voice[1] if voice[1] else ''}"
    return Clip(name, pcm, sr, s, e, True, phrase)


def negative(text: str, voice=VOICE, seed: int = 0, sample_rate: int | None = None) -> Clip:
    """A clip of a sentence without the wake phrase."""
    sr = sample_rate or rate()
    rng = np.random.default_rng(seed)
    pcm, s, e = place(say(text, voice, sr), sr, rng)
    return Clip(f"neg:{text[:24]}", pcm, sr, s, e, False, text)


def noise_clip(
    seconds: float, seed: int = 0, level: float = 400, sample_rate: int | None = None
) -> Clip:
    """Louder noise with no speech (a fan, a street): must never wake the node."""
    sr = sample_rate or rate()
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    pcm = noise(n, rng, level)
    return Clip(f"noise:{level:.0f}", pcm, sr, 0, 0, False, "")


def silence(seconds: float, seed: int = 0, sample_rate: int | None = None) -> np.ndarray:
    sr = sample_rate or rate()
    return noise(int(seconds * sr), np.random.default_rng(seed))
