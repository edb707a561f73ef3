"""The independent evaluation voices: synthesizers training never uses, and real recordings.

`train.synth.RESERVED_SYNTHESIZERS` keeps flite, festival and human recordings out of
training and out of cutoff choice. This module is the only place that makes audio with them,
and only the benchmark (`bench.wakeword`) calls it: it reports, it never tunes.

* flite (Debian `flite`): voices kal, kal16, awb, rms, slt; speed with
  `--setf duration_stretch=`, pitch with `--setf int_f0_target_mean=`.
* festival (Debian `festival`, `festvox-kallpc16k`, `festvox-kdlpc16k`, `festvox-us-slt-hts`:
  the English voices Debian bookworm has): kal_diphone and ked_diphone (speed with
  `Duration_Stretch`, pitch with `int_lr_params`), cmu_us_slt_arctic_hts (hts_engine's `-r`
  speed and `-fm` half-tones).
* human: the real speech recordings Debian has (`pocketsphinx-testdata`: about 47 s of read
  English, digits and commands). None says a wake phrase, so they can only be negatives.

Everything is resampled to 16 kHz int16 with `train.synth.resample` and trimmed like the
training clips.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: flite's built-in English voices (`flite -lv`; awb_time is a talking clock and is left out).
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
#: festival's English voices in Debian bookworm: (voice, package, female).
FESTIVAL_VOICES = (
    ("kal_diphone", "festvox-kallpc16k", False),
    ("ked_diphone", "festvox-kdlpc16k", False),
    ("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", True),
)
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices/english", "/usr/share/festival/voices/us")
#: Speed (duration stretch: bigger is slower) and pitch factors of the positives.
STRETCHES = (0.8, 0.95, 1.1, 1.3)
PITCHES = (0.85, 1.0, 1.2)
#: Real speech recordings from Debian's pocketsphinx-testdata (16 kHz, 16-bit mono).
HUMAN_DIR = Path("/usr/share/pocketsphinx/test/data")
#: Bumped whenever the audio this module makes changes (part of the cache key).
VERSION = 1


@dataclass(frozen=True)
class EvalVoice:
    """One way a reserved synthesizer says a text.

    Attributes:
        synth: "flite" or "festival".
        name: the synthesizer's voice name.
        stretch: duration stretch (1.0 = the voice's own speed, bigger is slower).
        pitch: pitch factor relative to the voice's usual mean F0.
        warp: resampling factor applied afterwards (vocal-tract length and pitch together).
    """

    synth: str
    name: str
    stretch: float = 1.0
    pitch: float = 1.0
    warp: float = 1.0

    def label(self) -> str:
        """Short human-readable description."""
        return f"{self.synth}:{self.name}:d{self.stretch:.2f}:p{self.pitch:.2f}:w{self.warp:.3f}"


def flite_voices() -> list[str]:
    """The flite voices installed (empty without flite)."""
    exe = shutil.which("flite")
    if exe is None:
        return []
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
    have = out.split(":", 1)[-1].split()
    return [v for v in FLITE_VOICES if v in have]


def festival_voices() -> list[str]:
    """The festival English voices installed (empty without festival)."""
    if shutil.which("text2wave") is None:
        return []
    out = []
    for name, _, _ in FESTIVAL_VOICES:
        if any(Path(d, name).is_dir() for d in FESTIVAL_VOICE_DIRS):
            out.append(name)
    return out


def _female(v: EvalVoice) -> bool:
    return v.name == "slt" or any(n == v.name and f for n, _, f in FESTIVAL_VOICES)


def _finish(wav: bytes, v: EvalVoice, rate: int) -> np.ndarray:
    from voicenode_tools.train import synth

    pcm, src = synth.read_wav_bytes(wav)
    return synth.to_int16(synth.resample(synth._trim(pcm), src * v.warp, rate))


def flite(text: str, v: EvalVoice, rate: int = 16000) -> np.ndarray:
    """Say ``text`` with flite; int16 PCM at ``rate``."""
    exe = shutil.which("flite")
    if exe is None:
        raise RuntimeError("flite is not installed (apt-get install flite)")
    f0 = (170.0 if _female(v) else 105.0) * v.pitch
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        cmd = [exe, "-voice", v.name, "--setf", f"duration_stretch={v.stretch}"]
        cmd += ["--setf", f"int_f0_target_mean={f0:.0f}", "-t", text, "-o", out]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return _finish(Path(out).read_bytes(), v, rate)


def festival(text: str, v: EvalVoice, rate: int = 16000) -> np.ndarray:
    """Say ``text`` with festival's text2wave; int16 PCM at ``rate``."""
    exe = shutil.which("text2wave")
    if exe is None:
        raise RuntimeError("festival is not installed (apt-get install festival festvox-kallpc16k)")
    evals = [f"(voice_{v.name})"]
    if v.name.endswith("_hts"):
        semitones = 12.0 * np.log2(v.pitch)
        evals.append(
            "(set! hts_engine_params (append hts_engine_params "
            f'(list (list "-r" {1.0 / v.stretch:.3f}) (list "-fm" {semitones:.2f}))))'
        )
    else:
        evals.append(f"(Parameter.set 'Duration_Stretch {v.stretch})")
        f0 = 105.0 * v.pitch
        evals.append(
            f"(set! int_lr_params (list (list 'target_f0_mean {f0:.0f}) (list 'target_f0_std 18)"
            " (list 'model_f0_mean 170) (list 'model_f0_std 34)))"
        )
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "t.txt"), os.path.join(d, "o.wav")
        Path(src).write_text(text + "\n")
        cmd = [exe]
        for e in evals:
            cmd += ["-eval", e]
        subprocess.run(cmd + [src, "-o", out], check=True, capture_output=True, timeout=120)
        return _finish(Path(out).read_bytes(), v, rate)


def say(text: str, v: EvalVoice, rate: int = 16000) -> np.ndarray:
    """Say ``text`` with a reserved voice."""
    if v.synth == "flite":
        return flite(text, v, rate)
    if v.synth == "festival":
        return festival(text, v, rate)
    raise ValueError(f"not a reserved synthesizer: {v.synth!r}")


def voices(rng: np.random.Generator | None = None, warps: int = 2) -> list[EvalVoice]:
    """Every installed reserved voice at every speed and pitch, ``warps`` times each.

    The first rendering has no warp; the others draw one from ``rng`` (as training does,
    exp(N(0, 0.06))).
    """
    rng = rng or np.random.default_rng(0)
    names = [("flite", n) for n in flite_voices()] + [("festival", n) for n in festival_voices()]
    out = []
    for synth, name in names:
        for s in STRETCHES:
            for p in PITCHES:
                for k in range(warps):
                    w = 1.0 if k == 0 else float(np.round(np.exp(rng.normal(0, 0.06)), 3))
                    out.append(EvalVoice(synth, name, s, p, w))
    return out


def human_recordings(rate: int = 16000) -> list[tuple[np.ndarray, str]]:
    """Real read speech from Debian's pocketsphinx-testdata, as (int16 PCM, file name).

    The .raw files are headerless 16 kHz 16-bit mono; the .wav files are read by their header.
    Empty if the package is not installed.
    """
    from voicenode_tools.train import synth

    out = []
    if not HUMAN_DIR.is_dir():
        return out
    for p in sorted(HUMAN_DIR.rglob("*")):
        if p.suffix == ".raw":
            pcm, src = np.frombuffer(p.read_bytes(), dtype="<i2").astype(np.int16), 16000
        elif p.suffix == ".wav":
            pcm, src = synth.read_wav_bytes(p.read_bytes())
        else:
            continue
        out.append((synth.to_int16(synth.resample(pcm, src, rate)), str(p.relative_to(HUMAN_DIR))))
    return out


def _say_all(jobs, workers=2):
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda j: say(j[0], j[1]), jobs))


def clips(phrase: str, seed: int = 1, speech_minutes: float = 10.0, workers: int = 2) -> dict:
    """The independent clips for ``phrase``: positives and negative speech (cached).

    Args:
        phrase: the wake phrase the reserved voices say.
        seed: seed of the warps and of the sentence draw.
        speech_minutes: minutes of reserved voices reading the validation text (negatives).
        workers: parallel synthesizer processes.

    Returns:
        {"pos": [int16], "pos_info": [label], "speech": [int16], "speech_info": [label],
        "human": [int16], "human_info": [file]}.
    """
    from voicenode_tools.train import recipe, text

    rng = np.random.default_rng([seed, 4242])
    vs = voices(rng)
    if not vs:
        raise RuntimeError(
            "no reserved voices: apt-get install flite festival festvox-kallpc16k"
            " festvox-kdlpc16k festvox-us-slt-hts"
        )
    key = json.dumps([VERSION, phrase, seed, speech_minutes, [v.label() for v in vs]])
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = recipe.cache_dir().parent / "eval" / f"{recipe.slug(phrase)}_{h}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        out = {}
        for g in ("pos", "speech", "human"):
            cuts = np.cumsum(z[g + "_len"])[:-1]
            out[g] = list(np.split(z[g], cuts)) if len(z[g + "_len"]) else []
            out[g + "_info"] = [str(s) for s in z[g + "_info"]]
        return out
    out = {"pos": _say_all([(phrase, v) for v in vs], workers), "pos_info": [v.label() for v in vs]}
    sents = text.corpus("val", exclude=phrase)
    speech, info, total = [], [], 0.0
    while total < speech_minutes * 60:
        jobs = [(sents[rng.integers(len(sents))], vs[rng.integers(len(vs))]) for _ in range(16)]
        for (t, v), pcm in zip(jobs, _say_all(jobs, workers), strict=True):
            speech.append(pcm)
            info.append(f"{v.label()}|{t}")
            total += len(pcm) / 16000
    out["speech"], out["speech_info"] = speech, info
    hum = human_recordings()
    out["human"], out["human_info"] = [c for c, _ in hum], [n for _, n in hum]
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for g in ("pos", "speech", "human"):
        cl = out[g]
        arrays[g] = np.concatenate(cl) if cl else np.zeros(0, np.int16)
        arrays[g + "_len"] = np.array([len(c) for c in cl], np.int64)
        arrays[g + "_info"] = np.array(out[g + "_info"], dtype=str)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return out


def per_voice_frr(phrase: str, cutoffs: dict[str, float], seed: int = 1) -> dict:
    """A diagnostic: which reserved voices each probability engine misses, one clip at a time.

    Args:
        phrase: the wake phrase.
        cutoffs: {engine name: cutoff} for engines with a ``scores`` method
            (ours, microwakeword, openwakeword).
        seed: seed of the independent set.

    Returns:
        {engine: {voice: FRR}} with voices as "synth:name".
    """
    from . import wakeword

    cl = clips(phrase, seed)
    items = [
        (pcm, info.split(":d")[0]) for pcm, info in zip(cl["pos"], cl["pos_info"], strict=True)
    ]
    engines = {name: wakeword.engine(name, phrase) for name in cutoffs}
    return missed_alone(items, engines, cutoffs, np.random.default_rng([seed, 3]))


def missed_alone(items, engines: dict, cutoffs: dict[str, float], rng, condition=None) -> dict:
    """Share of clips each engine misses when it hears every clip alone.

    Each clip is played to the engine's `scores` with 2 s of faint noise before it and 1 s
    after (no background, room or level change unless ``condition`` makes one; the clip at the
    tracks' speech level), and counts as heard when a score after the first 2 s reaches the
    engine's cutoff.

    Args:
        items: [(int16 clip, voice label)].
        engines: {name: engine with ``scores(audio) -> (sample positions, scores)``}.
        cutoffs: {name: cutoff}.
        rng: numpy generator for the faint noise (and the condition's draws).
        condition: ``f(float audio, rng) -> float audio`` applied to each clip's audio
            before it is played (`bench.conditions`); None: the audio as it is.

    Returns:
        {engine: {voice: share missed}}, voices sorted.
    """
    from .wakeword import RATE

    missed: dict[str, dict[str, list[bool]]] = {n: {} for n in engines}
    for pcm, voice in items:
        x = pcm.astype(np.float64)
        x *= 3000.0 / (np.sqrt(np.mean(x**2)) + 1e-9)
        audio = np.concatenate([rng.normal(0, 30, 2 * RATE), x, rng.normal(0, 30, RATE)])
        if condition is not None:
            audio = condition(audio, rng)
        audio = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
        for name, e in engines.items():
            pos, s = e.scores(audio)
            hit = bool(np.any(s[pos >= 2 * RATE] >= cutoffs[name]))
            missed[name].setdefault(voice, []).append(not hit)
    return {
        n: {v: round(float(np.mean(m)), 3) for v, m in sorted(d.items())} for n, d in missed.items()
    }


def add_cutoff_argument(ap, required: bool = True, also: str = "") -> None:
    """The repeated ``--cutoff ENGINE=CUTOFF`` option of the play-alone diagnostics (optional
    where the cutoffs can come from elsewhere: ``also`` says from where, in the help)."""
    ap.add_argument(
        "--cutoff",
        action="append",
        required=required,
        default=None if required else [],
        help="ENGINE=CUTOFF (ours, microwakeword, openwakeword), e.g. ours=0.97" + also,
    )


def parse_cutoffs(items: list[str]) -> dict[str, float]:
    """["ours=0.97", ...] -> {"ours": 0.97, ...}."""
    return {k: float(v) for k, v in (c.split("=", 1) for c in items)}


def missed_table(res: dict, cutoffs: dict[str, float], digits: int = 0) -> str:
    """A Markdown table of `missed_alone`'s result: one row per voice, one column per engine."""
    voices_ = sorted({v for d in res.values() for v in d}, key=lambda v: (v == "all", v))
    rows = ["| voice | " + " | ".join(f"{n} @ {c:g}" for n, c in cutoffs.items()) + " |"]
    rows.append("|---|" + "---|" * len(cutoffs))
    for v in voices_:
        rows.append(
            f"| {v} | " + " | ".join(f"{100 * res[n][v]:.{digits}f} %" for n in cutoffs) + " |"
        )
    return "\n".join(rows)


def main(argv=None):
    """`python -m voicenode_tools.bench.evalvoices --phrase alexa --cutoff ours=0.999 ...`"""
    import argparse

    ap = argparse.ArgumentParser(description="FRR per reserved voice, clips alone in quiet")
    ap.add_argument("--phrase", default="hey jarvis")
    ap.add_argument("--seed", type=int, default=1)
    add_cutoff_argument(ap)
    args = ap.parse_args(argv)
    cutoffs = parse_cutoffs(args.cutoff)
    print(missed_table(per_voice_frr(args.phrase, cutoffs, args.seed), cutoffs))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
