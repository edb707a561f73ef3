"""Generate (and cache) the raw audio of a recipe: positives, confusables, speech, music.

The cache is `~/.cache/voicenode/data/<data hash>/clips.npz` plus `manifest.json`; the hash
comes from `recipe.data_hash`, so a second run with the same data settings reuses it. A recipe
that differs from a cached one only in settings the tracks read (`recipe.TRACK_KEYS`, e.g.
`augment_copies`) gets that one's clips linked into its own folder (the manifests record
`recipe.clips_hash`) instead of synthesizing them again. Generated audio is never committed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from . import augment, synth, text
from . import recipe as recipes

GROUPS = (
    "train_pos",  # the phrase, training voices (espeak and piper)
    "train_conf",  # confusable phrases, training voices
    "train_speech",  # sentences, training voices and text
    "music",  # random music
    "val_pos",  # the phrase, held-out espeak voices
    "val_piper",  # the phrase, piper only
    "val_conf",  # confusables, held-out voices
    "val_speech",  # held-out voices reading held-out text
)


class Clips:
    """Groups of int16 clips with their descriptions (voice labels, texts)."""

    def __init__(self, rate: int):
        self.rate = rate
        self.groups: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
        self.info: dict[str, list[str]] = {g: [] for g in GROUPS}

    def add(self, group: str, pcm: np.ndarray, info: str = ""):
        self.groups[group].append(np.asarray(pcm, dtype=np.int16))
        self.info[group].append(info)

    def seconds(self, group: str) -> float:
        return sum(len(c) for c in self.groups[group]) / self.rate

    def save(self, path: Path):
        arrays = {}
        for g, clips in self.groups.items():
            arrays[g] = np.concatenate(clips) if clips else np.zeros(0, np.int16)
            arrays[g + "_len"] = np.array([len(c) for c in clips], dtype=np.int64)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, rate=self.rate, **arrays)
        tmp.replace(path)
        (path.parent / "info.json").write_text(json.dumps(self.info))

    @classmethod
    def load(cls, path: Path) -> Clips:
        z = np.load(path)
        self = cls(int(z["rate"]))
        info_path = path.parent / "info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        for g in GROUPS:
            lens = z[g + "_len"]
            cuts = np.cumsum(lens)[:-1]
            self.groups[g] = list(np.split(z[g], cuts)) if len(lens) else []
            self.info[g] = info.get(g, [""] * len(lens))
        return self


def generate(rec: dict, rate: int, progress=None, workers: int = 2) -> Clips:
    """Synthesize all groups of a recipe.

    Args:
        rec: a full recipe (see `recipe.make`).
        rate: sample rate.
        progress: optional callable(step_name, fraction).
        workers: parallel espeak processes.
    """
    d = rec["data"]
    rng = np.random.default_rng([rec["seed"], 7])
    phrase = recipes.spoken(rec)  # what the voices read (the recipe's "say", else the phrase)
    conf_texts = recipes.confusables(phrase, rec.get("negatives"))
    synth.refuse_mbrola(d)  # however the recipe came (a teacher's variant, say)
    use_piper = d["piper_fraction"] > 0 or d["val_piper_positives"] > 0
    synth.reseed_piper(rec["seed"] * 1000 + 7)  # repeatable piper clips (see reseed_piper)
    if use_piper and not synth.piper_available():  # loads the reseeded session once
        raise RuntimeError("piper-tts is not installed: pip install 'voicenode-tools[train]'")
    clips = Clips(rate)
    report = progress or (lambda *_: None)

    # Training voices may be warped further than validation voices (female vocal tracts from
    # male ones); the draws are the same, so the validation clips do not change with it.
    train_sd = float(d.get("train_warp_sd", synth.WARP_SD))

    def voice(held_out: bool, piper_p: float = 0.0):
        sd = synth.WARP_SD if held_out else train_sd
        return synth.random_voice(rng, held_out, piper_p, sd)

    plan = [
        ("train_pos", d["positives"], lambda: (phrase, voice(False, d["piper_fraction"]))),
        ("train_conf", d["confusables"], lambda: (conf_texts[rng.integers(len(conf_texts))], voice(False, d["piper_fraction"]))),
        ("val_pos", d["val_positives"], lambda: (phrase, voice(True))),
        ("val_piper", d["val_piper_positives"], lambda: (phrase, synth.random_piper_voice(rng))),
        ("val_conf", d["val_confusables"], lambda: (conf_texts[rng.integers(len(conf_texts))], voice(True))),
    ]  # fmt: skip
    for group, n, draw in plan:
        jobs = [draw() for _ in range(n)]
        for j in range(0, n, 200):
            batch = jobs[j : j + 200]
            for (t, v), pcm in zip(batch, synth.say_many(batch, workers), strict=True):
                clips.add(group, pcm, f"{v.label()}|{t}")
            report(f"synth {group}", (j + len(batch)) / max(n, 1))
    for group, split, minutes in (
        ("train_speech", "train", d["speech_minutes"]),
        ("val_speech", "val", d["val_speech_minutes"]),
    ):
        sents = text.corpus(split, exclude=phrase)
        total = 0.0
        while total < minutes * 60:
            jobs = []
            for _ in range(32):
                s = sents[rng.integers(len(sents))]
                v = voice(split == "val", d["piper_fraction"] if split == "train" else 0.0)
                jobs.append((s, v))
            for (t, v), pcm in zip(jobs, synth.say_many(jobs, workers), strict=True):
                clips.add(group, pcm, f"{v.label()}|{t}")
                total += len(pcm) / rate
            report(f"synth {group}", min(1.0, total / (minutes * 60 + 1e-9)))
    for k in range(d["music_clips"]):
        clips.add("music", augment.render_music(rng, rate, 20.0), f"music {k}")
        report("music", (k + 1) / d["music_clips"])
    return clips


def folder_of(rec: dict, rate: int) -> Path:
    """The recipe's data cache folder (its clips, and the tracks made from them)."""
    return recipes.cache_dir() / recipes.data_hash(rec, rate)


def load_or_generate(rec: dict, rate: int, progress=None, workers: int = 2) -> Clips:
    """The recipe's clips from the cache (`folder_of`), generating them the first time."""
    folder = folder_of(rec, rate)
    path = folder / "clips.npz"
    clips_key = recipes.clips_hash(rec, rate)
    if not path.exists():
        _link_clips(folder, clips_key, rec)
    if path.exists():
        _note_clips_hash(folder, clips_key)
        return Clips.load(path)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    clips = generate(rec, rate, progress, workers)
    clips.save(path)
    manifest = {
        "data_hash": folder.name,
        "clips_hash": clips_key,
        "phrase": rec["phrase"],
        "data": rec["data"],
        "seed": rec["seed"],
        "rate": rate,
        "seconds": {g: round(clips.seconds(g), 1) for g in GROUPS},
        "counts": {g: len(clips.groups[g]) for g in GROUPS},
        "generate_s": round(time.time() - t0, 1),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return clips


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _note_clips_hash(folder: Path, clips_key: str):
    """Record the clips hash in a manifest written before it existed (so that recipes which
    differ only in track settings can find these clips)."""
    m = _manifest(folder)
    if m is not None and "clips_hash" not in m:
        m["clips_hash"] = clips_key
        (folder / "manifest.json").write_text(json.dumps(m, indent=1))


def _link_clips(folder: Path, clips_key: str, rec: dict) -> bool:
    """Link into ``folder`` the clips of a cached folder with the same clips hash (a recipe
    that differs only in `recipe.TRACK_KEYS`); False when there is none."""
    for other in sorted(folder.parent.glob("*/manifest.json")):
        src = other.parent
        m = _manifest(src)
        if src == folder or not m or m.get("clips_hash") != clips_key:
            continue
        if not (src / "clips.npz").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("info.json", "clips.npz"):  # the clips last: they mark the folder done
            if (src / name).exists() and not (folder / name).exists():
                try:
                    os.link(src / name, folder / name)
                except OSError:  # no hard links here: a copy, put in place whole
                    tmp = folder / (name + ".tmp")
                    shutil.copyfile(src / name, tmp)
                    tmp.replace(folder / name)
        m.update(data_hash=folder.name, data=rec["data"], clips_from=src.name)
        (folder / "manifest.json").write_text(json.dumps(m, indent=1))
        return True
    return False
