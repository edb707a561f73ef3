"""Benchmark: false-reject rate at fixed false accepts per hour, ours against peer wake-word engines.

Every engine hears exactly the same audio:

* validation: the recipe's validation clips (held-out espeak-ng voices and piper) laid over
  noise, babble and music at several SNRs, and at least an hour of negatives (held-out voices
  reading held-out text over the same kinds of background; `--piper-negatives MIN` adds
  piper reading that text too). Each engine's setting (cutoff, sensitivity, threshold) for a
  false-accept budget is chosen on these negatives only.
* independent: the reserved synthesizers training never uses (flite and festival, see
  `bench.evalvoices`) saying the phrase in tracks built the same way, and reserved voices
  reading held-out text plus Debian's real recordings (pocketsphinx-testdata) as negatives.
  Reported at the settings chosen on the validation negatives, never used to choose them.

    python -m voicenode_tools.bench.wakeword --phrase "hey jarvis" --out results/hey_jarvis.json

Engines (optional extra `bench`): ours (`models/<name>.vnm`, the bit-exact int8 reference),
microWakeWord (`pymicro-wakeword`), openWakeWord (`pyopen-wakeword`), Porcupine
(`pvporcupine==1.9.5`, no access key, keyword "jarvis"/"alexa"), PocketSphinx keyphrase
spotting. Probability engines are swept over cutoffs; Porcupine and PocketSphinx over their
sensitivity / threshold settings. FRR is given at 0.1, 0.5, 2 and 5 false accepts per hour:
a budget of B FA/h over H hours of negatives allows floor(B * H) false accepts (with 1.2 h,
both 0.1 and 0.5 FA/h mean none at all; the output says how many each budget allowed).
Each engine's CPU time is process CPU seconds per hour of audio scored, single-threaded
(OMP/BLAS/ONNX threads set to 1 before anything loads). Results: JSON on stdout and in
`--out FILE`, with a DET curve `FILE.png` and a Markdown table `FILE.md` beside it, and
(`--resamples N`, 1000 by default) how sure each figure is: bootstrap intervals and, for
ours against each peer, the share of resamples in which ours misses fewer (`bench.intervals`;
the clip-by-clip outcomes they come from in `FILE.outcomes.npz`, for `bench longneg`).
"""

from __future__ import annotations

import os

# One thread for every numeric library, before any of them loads: CPU time per engine is
# then comparable (and the benchmark stays off the other core).
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ORT_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from . import intervals  # noqa: E402

RATE = 16000
COOLOFF_S = 1.5
DETECT_AFTER_S = 1.0
TARGETS = (0.1, 0.5, 2.0, 5.0)
#: Cutoffs of the probability engines, strict to lenient: every 0.01, and every 0.001 above
#: 0.98 where the small budgets are decided (uint8 outputs step by 1/255 = 0.0039).
CUTOFFS = sorted(
    {round(float(c), 2) for c in np.arange(0.01, 0.985, 0.01)}
    | {round(float(c), 3) for c in np.arange(0.98, 1.0005, 0.001)},
    reverse=True,
)
#: The sets of negative tracks (every other set holds positives).
NEGATIVE_SETS = ("negatives", "piper_negatives", "ind_negatives")
#: Bumped whenever the piper negatives `piper_speech` makes change (part of the cache key).
PIPER_SPEECH_VERSION = 1
#: Which FRR a positive set counts towards.
GROUP_LABELS = {
    "val_pos": "validation espeak (held-out voices)",
    "val_piper": "validation piper",
    "ind": "independent (flite + festival)",
}


def set_group(name: str) -> str:
    """The group of a positive set's name: "val_pos_snr10" -> "val_pos"."""
    return name.rsplit("_snr", 1)[0]


# ---- the common audio ------------------------------------------------------------------------


def make_audio(
    phrase: str,
    seed: int,
    snrs,
    max_positives: int | None = None,
    independent: bool = True,
    ind_minutes: float = 10.0,
    log=lambda *_: None,
    negative_tracks: int | None = None,
    piper_minutes: float = 0.0,
):
    """Positive tracks per (group, SNR) and negative tracks, as int16 audio with events.

    The validation clips are the recipe's (cached by `voicenode train-wakeword`); its negatives
    are its `val_speech_minutes` of held-out speech plus the backgrounds between. The
    independent sets come from `evalvoices.clips` (reserved voices and human recordings).

    Args:
        phrase: the wake phrase.
        seed: the recipe's seed.
        snrs: SNRs (dB) of the positive tracks.
        max_positives: at most this many clips per positive group (all by default).
        independent: also build the independent sets ("ind_snrN", "ind_negatives").
        ind_minutes: minutes of reserved voices reading text, for "ind_negatives".
        log: progress messages.
        negative_tracks: keep only this many negative tracks (a smoke run, not a result).
        piper_minutes: minutes of piper reading the held-out text ("piper_negatives", part
            of the validation negatives; 0: none).

    Returns:
        ({set name: [(int16 audio, [(start, end, kind)])]}, info dict).
    """
    from voicenode_tools.train import data, recipe, tracks

    rec = recipe.benchmark(phrase, seed=seed)
    clips = data.load_or_generate(rec, RATE)
    g = clips.groups
    rng = np.random.default_rng([seed, 99])
    babble = tracks.babble_pool(g["val_speech"], rng)
    groups = {k: g[k] for k in ("val_pos", "val_piper")}
    info = {"clips": {}}
    if independent:
        from . import evalvoices

        log("synthesizing the independent set (flite, festival; cached) ...")
        ind = evalvoices.clips(recipe.spoken(rec), seed, ind_minutes)
        groups["ind"] = ind["pos"]
        info["independent_voices"] = sorted({s.split(":d")[0] for s in ind["pos_info"]})
        info["human_recordings"] = ind["human_info"]
        info["human_seconds"] = round(sum(len(c) for c in ind["human"]) / RATE, 1)
        info["ind_speech_seconds"] = round(sum(len(c) for c in ind["speech"]) / RATE, 1)
    sets = {}
    for group, cl in groups.items():
        if max_positives is not None and len(cl) > max_positives:
            sub = np.random.default_rng([seed, 5, len(group)]).permutation(len(cl))[:max_positives]
            cl = [cl[i] for i in sorted(sub)]
        info["clips"][group] = len(cl)
        # The independent group draws from its own generator: the validation tracks stay
        # the same with or without it.
        grng = np.random.default_rng([seed, 88]) if group == "ind" else rng
        for snr in snrs:
            plans = tracks.plan_tracks([(c, "pos") for c in cl], grng, per_track=8)
            sets[f"{group}_snr{snr}"] = [
                tracks.build_track(
                    p, RATE, np.random.default_rng([seed, snr, i]), g["music"], babble, (snr, snr)
                )
                for i, p in enumerate(plans)
            ]

    def speech_tracks(speech, plan_rng, salt):
        # negative tracks: the clips ten to a track over the backgrounds at 5-25 dB
        plans = tracks.plan_tracks([(c, "speech") for c in speech], plan_rng, per_track=10)
        if negative_tracks is not None:
            plans = plans[:negative_tracks]
        return [
            tracks.build_track(
                p, RATE, np.random.default_rng([seed, salt, i]), g["music"], babble, (5, 25)
            )
            for i, p in enumerate(plans)
        ]

    sets["negatives"] = speech_tracks(g["val_speech"], rng, 1000)
    if piper_minutes > 0:
        log("synthesizing piper reading held-out text (cached) ...")
        speech = piper_speech(recipe.spoken(rec), seed, piper_minutes)
        sets["piper_negatives"] = speech_tracks(speech, np.random.default_rng([seed, 3000]), 3000)
    if independent:
        sets["ind_negatives"] = speech_tracks(
            ind["speech"] + ind["human"], np.random.default_rng([seed, 77]), 2000
        )
    return sets, info


def piper_speech(phrase: str, seed: int, minutes: float) -> list[np.ndarray]:
    """`minutes` of piper (joe, with the validation draws of its sampling knobs and warp)
    reading the held-out text, without sentences holding ``phrase`` (cached).

    The recipe's validation negatives are held-out espeak-ng voices only, while its
    validation positives are espeak-ng and piper: these make the negatives hold both.
    """
    import hashlib

    from voicenode_tools.train import recipe, synth, text

    key = json.dumps([PIPER_SPEECH_VERSION, phrase, seed, minutes])
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = recipe.cache_dir().parent / "eval" / f"piper_speech_{h}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return list(np.split(z["audio"], np.cumsum(z["lens"])[:-1])) if len(z["lens"]) else []
    if not synth.piper_available():
        raise RuntimeError("piper-tts is not installed: pip install 'voicenode-tools[train]'")
    sents = text.corpus("val", exclude=phrase)
    rng = np.random.default_rng([seed, 4343])
    synth.reseed_piper(seed * 1000 + 43)  # the same audio on every machine (see reseed_piper)
    out, total = [], 0.0
    while total < minutes * 60:
        jobs = [(sents[rng.integers(len(sents))], synth.random_piper_voice(rng)) for _ in range(16)]
        for pcm in synth.say_many(jobs, 1):
            out.append(pcm)
            total += len(pcm) / RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, audio=np.concatenate(out), lens=np.array([len(c) for c in out], np.int64))
    tmp.replace(path)
    return out


# ---- engines: each maps int16 audio to (sample index, score) per step or to detections -----


class Ours:
    name = "ours"

    def __init__(self, phrase, model=None):
        """``model``: a .vnm file (default: the shipped ``models/<name>.vnm``)."""
        from voicenode_tools.reference import frontend, nn
        from voicenode_tools.train.recipe import REPO_ROOT, slug

        self.fe = frontend
        path = model or REPO_ROOT / "models" / f"{slug(phrase)}.vnm"
        self.model = nn.QuantModel.load(path)
        self.window = int(self.model.sidecar["window"])
        sc = self.model.sidecar
        self.info = {
            "model": str(path),
            "version": sc.get("version"),
            "crc32": sc.get("model_crc32"),
        }

    def scores(self, audio):
        feats = self.fe.features(audio)
        p = self.model.stream(feats).astype(np.float64) / 255.0
        s = self.model.stride
        frames = np.arange(len(p)) * s + s - 1
        return frames * 160 + 480, _window_mean(p, self.window)


class MicroWakeWordEngine:
    name = "microwakeword"

    def __init__(self, phrase):
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        self.info = {"model": phrase.replace(" ", "_")}  # its builtin model
        self.model = MicroWakeWord.from_builtin(Model(self.info["model"]))
        self.features = MicroWakeWordFeatures

    def scores(self, audio):
        self.model.reset()
        feats = self.features()
        pos, out = [], []
        n = 0
        for f in feats.process_streaming(audio.tobytes()):
            n += 1
            p = self.model.process_streaming_prob(f)
            if not self.model._features:  # an inference ran (every `stride` feature frames)
                pos.append(n * 160 + 320)
                out.append(p or 0.0)
        return np.array(pos), np.array(out)  # already the mean of its sliding window


class OpenWakeWordEngine:
    name = "openwakeword"

    def __init__(self, phrase):
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self.info = {"model": phrase.replace(" ", "_")}  # its builtin model
        self.model = OpenWakeWord.from_builtin(Model(self.info["model"]))
        self.features = OpenWakeWordFeatures

    def scores(self, audio):
        self.model.reset()
        feats = self.features.from_builtin()
        pos, out = [], []
        chunk = 1280  # 80 ms
        for i in range(0, len(audio) - chunk + 1, chunk):
            for emb in feats.process_streaming(audio[i : i + chunk].tobytes()):
                for p in self.model.process_streaming(emb):
                    pos.append(i + chunk)
                    out.append(p)
        return np.array(pos), np.array(out)


class PorcupineEngine:
    name = "porcupine"
    settings = (0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 0.99)  # strict to lenient

    def __init__(self, phrase):
        import pvporcupine

        kw = {"hey jarvis": "jarvis", "alexa": "alexa"}.get(phrase)
        if kw is None:
            raise RuntimeError(f"Porcupine 1.9 has no free keyword for {phrase!r}")
        self.pv, self.kw = pvporcupine, kw
        self.info = {"keyword": kw}

    def detections(self, audio, sensitivity):
        h = self.pv.create(keywords=[self.kw], sensitivities=[sensitivity])
        try:
            n = h.frame_length
            return [
                i + n for i in range(0, len(audio) - n + 1, n) if h.process(audio[i : i + n]) >= 0
            ]
        finally:
            h.delete()


#: Pronunciations (CMU phones) of shipped phrases' words that PocketSphinx's dictionary lacks.
POCKETSPHINX_WORDS = {"nabu": "N AA B UW"}


def pocketsphinx_keyphrase(phrase: str, known) -> tuple[str, dict[str, str]]:
    """What PocketSphinx listens for, and the pronunciations its dictionary must be given.

    The recipe's spoken form ("hey my croft" for "hey mycroft"); words outside ``known`` (its
    dictionary's words) come from `POCKETSPHINX_WORDS`, and one in neither is refused by name.
    """
    from voicenode_tools.train import recipe

    said = recipe.spoken(recipe.make(phrase))
    missing = [w for w in said.split() if w not in known]
    unknown = [w for w in missing if w not in POCKETSPHINX_WORDS]
    if unknown:
        raise RuntimeError("PocketSphinx's dictionary has no " + ", ".join(unknown))
    return said, {w: POCKETSPHINX_WORDS[w] for w in missing}


class PocketSphinxEngine:
    name = "pocketsphinx"
    # Strict to lenient; above 1 it gets stricter still (alexa: 1e-2 already accepts speech).
    settings = (1e10, 1e5, 1.0, 1e-2, 1e-5, 1e-10, 1e-20, 1e-30)

    def __init__(self, phrase):
        import pocketsphinx

        path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
        with open(path) as f:
            words = f.read()
        known = {line.split(" ", 1)[0] for line in words.splitlines()}
        said, extra = pocketsphinx_keyphrase(phrase, known)
        self.dict = None  # its own dictionary, or one with the missing words added
        if extra:
            import tempfile
            import weakref

            with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as out:
                out.write(words + "".join(f"{w} {ph}\n" for w, ph in extra.items()))
            self.dict = out.name
            weakref.finalize(self, os.remove, out.name)  # gone with the engine
        self.ps, self.phrase, self.decoders = pocketsphinx, said, {}
        self.info = {"keyphrase": said}

    def detections(self, audio, threshold):
        if threshold not in self.decoders:
            extra = {"dict": self.dict} if self.dict else {}
            self.decoders[threshold] = self.ps.Decoder(
                keyphrase=self.phrase, kws_threshold=threshold, **extra
            )
        d = self.decoders[threshold]
        d.start_utt()
        out, seen = [], 0
        n = 1600
        for i in range(0, len(audio) - n + 1, n):
            d.process_raw(audio[i : i + n].tobytes(), False, False)
            h = d.hyp()
            count = h.hypstr.count(self.phrase) if h is not None else 0
            if count > seen:  # the hypothesis lists every keyphrase found so far
                out.append(i + n)
                seen = count
        d.end_utt()
        return out


ENGINES = {
    e.name: e
    for e in (Ours, MicroWakeWordEngine, OpenWakeWordEngine, PorcupineEngine, PocketSphinxEngine)
}


def engine(name: str, phrase: str, model=None):
    """The engine called ``name`` listening for ``phrase``; ``model`` is our .vnm file
    (None: the shipped one) and is ignored by the peers."""
    return Ours(phrase, model) if name == Ours.name else ENGINES[name](phrase)


# ---- scoring ----------------------------------------------------------------------------------


def _window_mean(p, w):
    if w <= 1:
        return p
    c = np.concatenate([[0.0], np.cumsum(p)])
    idx = np.arange(len(p))
    return (c[idx + 1] - c[np.maximum(idx + 1 - w, 0)]) / w


def _detect(pos, score, cutoff, cooloff_s=COOLOFF_S):
    out, last = [], -(10**12)
    for i in np.flatnonzero(score >= cutoff):
        if pos[i] - last > cooloff_s * RATE:
            out.append(int(pos[i]))
            last = pos[i]
    return out


def _outcomes(dets_per_track, tracks_) -> tuple[list[bool], list[int]]:
    """Whether each positive of the tracks was detected (in order), and the false accepts
    of each track."""
    found_all, fa = [], []
    for dets, (_, events) in zip(dets_per_track, tracks_, strict=True):
        pos = [(s, e + DETECT_AFTER_S * RATE) for s, e, k in events if k == "pos"]
        found = [False] * len(pos)
        n_fa = 0
        for d in dets:
            inside = [i for i, (a, b) in enumerate(pos) if a <= d <= b]
            if inside:
                found[inside[0]] = True
            else:
                n_fa += 1
        found_all += found
        fa.append(n_fa)
    return found_all, fa


def _count(dets_per_track, tracks_):
    found, fa = _outcomes(dets_per_track, tracks_)
    return sum(found), len(found), sum(fa)


def hours_of(tracks_) -> float:
    """Hours of audio in a list of (audio, events) tracks."""
    return sum(len(a) for a, _ in tracks_) / RATE / 3600


def max_false_accepts(target: float, hours: float) -> int:
    """How many false accepts a budget of ``target`` per hour allows in ``hours`` of negatives."""
    return int(math.floor(target * hours + 1e-9))


def operating_point(curve: list[dict], hours: float, target: float) -> dict | None:
    """The loosest setting within a false-accept budget, read off an operating curve.

    Args:
        curve: rows {"setting", "fa", "frr": {set: rate}, ...} ordered strict to lenient;
            "fa" counts false accepts on ``hours`` of negatives.
        hours: hours of negative audio behind "fa".
        target: false accepts per hour allowed.

    Returns:
        The row of the loosest setting whose false accepts are at most
        ``floor(target * hours)``, or None when even the strictest exceeds it.
    """
    allowed = max_false_accepts(target, hours)
    ok = [row for row in curve if row["fa"] <= allowed]
    return ok[-1] if ok else None


def group_means(per_set: dict) -> dict:
    """The mean over each group's positive sets ({"val_pos": ..., "val_piper": ..., "ind":
    ...}, the groups present) and "validation" over all validation sets; the values may be
    numbers or arrays alike (one per resample, `intervals.frr_at`)."""
    out = {}
    for grp in GROUP_LABELS:
        v = [r for k, r in per_set.items() if set_group(k) == grp]
        if v:
            out[grp] = np.mean(v, axis=0)
    v = [r for k, r in per_set.items() if set_group(k) != "ind"]
    if v:
        out["validation"] = np.mean(v, axis=0)
    return out


#: The budgets of the project's choice among its own models (docs/WAKEWORD_BENCH.md,
#: "Commands"; the choices made by it: docs/WAKEWORD_HISTORY.md): `choice_figure` at these
#: on the validation negatives (`bench wakeword`); on all the negatives (`bench longneg`) at
#: every budget of `TARGETS`.
CHOICE_TARGETS = (0.5, 2.0, 5.0)


def choice_figure(per_budget: list) -> float | None:
    """The figure the project chooses its own models by: the mean FRR of the validation
    groups (held-out espeak, piper) over the budgets, each group weighing the same. The
    independent voices never count.

    Args:
        per_budget: for each budget, the FRR per group (`frr_means`), or None when no
            setting met it.

    Returns:
        The mean (4 decimals), or None when a budget has no setting.
    """
    vals = []
    for g in per_budget:
        if g is None:
            return None
        vals += [g[k] for k in ("val_pos", "val_piper") if g.get(k) is not None]
    return round(float(np.mean(vals)), 4) if vals else None


def frr_means(frr: dict) -> dict:
    """Mean FRR per group of positive sets (`group_means`), to 4 decimals."""
    return {g: round(float(m), 4) for g, m in group_means(frr).items()}


#: The package behind each peer engine (its version goes into the results).
PACKAGES = {
    "microwakeword": "pymicro-wakeword",
    "openwakeword": "pyopen-wakeword",
    "porcupine": "pvporcupine",
    "pocketsphinx": "pocketsphinx",
}


def engine_info(engine) -> dict:
    """What was measured: our model's file and version, or the peer's model (or keyword) and
    package version. Two phrases' engines never have the same info (`bench longneg` keys
    its cached scores by it)."""
    from importlib import metadata

    info = dict(getattr(engine, "info", {}))
    pkg = PACKAGES.get(engine.name)
    if pkg:
        try:
            info["package"] = f"{pkg} {metadata.version(pkg)}"
        except metadata.PackageNotFoundError:
            info["package"] = pkg
    return info


class _Meter:
    """Process CPU seconds and audio samples of one engine's scoring."""

    def __init__(self):
        self.cpu = 0.0
        self.samples = 0

    def run(self, fn, audio, *args):
        t = time.process_time()
        r = fn(audio, *args)
        self.cpu += time.process_time() - t
        self.samples += len(audio)
        return r


def validation_negatives(sets) -> list:
    """The negative tracks the settings are chosen on: espeak's, then piper's if any."""
    return sets["negatives"] + sets.get("piper_negatives", [])


def evaluate_engine(engine, sets, log, outcomes: dict | None = None):
    """The operating curve, FRR at each FA/h budget and CPU time of one engine.

    The curve has one row per setting (strict to lenient): false accepts on the validation
    negatives (and, with piper negatives, how many of them were on those: "fa_piper"), FRR per
    positive set, false accepts on the independent negatives. Settings are chosen on the
    validation negatives alone.

    ``outcomes``, when given, receives what `intervals.bootstrap` resamples, one row per
    setting of the curve: "neg_fa" (false accepts of each validation negative track) and
    "pos_hit" ({positive set: whether each of its positives was detected}).
    """
    piper_neg = sets.get("piper_negatives", [])
    neg = validation_negatives(sets)
    n_espeak = len(neg) - len(piper_neg)
    ind_neg = sets.get("ind_negatives", [])
    hours = hours_of(neg)
    ind_hours = hours_of(ind_neg)
    pos_sets = {k: v for k, v in sets.items() if k not in NEGATIVE_SETS}
    meter = _Meter()
    t0 = time.time()
    curve = []

    neg_fa_rows: list = []
    pos_hit_rows: dict = {k: [] for k in pos_sets}

    def row(setting, dets_neg, dets_pos, ind_fa):
        frr = {}
        for k, v in pos_sets.items():
            found, _ = _outcomes(dets_pos[k], v)
            pos_hit_rows[k].append(found)
            frr[k] = round(1 - sum(found) / max(len(found), 1), 4)
        neg_fa = _outcomes(dets_neg, neg)[1]
        neg_fa_rows.append(neg_fa)
        fa = sum(neg_fa)
        out = {
            "setting": setting,
            "fa": fa,
            "fa_per_hour": round(fa / hours, 3),
            "frr": frr,
            "frr_mean": frr_means(frr),
            "ind_fa": ind_fa,
        }
        if piper_neg:
            out["fa_piper"] = sum(neg_fa[n_espeak:])
        return out

    if hasattr(engine, "scores"):
        neg_s = [meter.run(engine.scores, a) for a, _ in neg]
        ind_s = [meter.run(engine.scores, a) for a, _ in ind_neg]
        pos_s = {k: [meter.run(engine.scores, a) for a, _ in v] for k, v in pos_sets.items()}
        settings = CUTOFFS
        for c in settings:
            dets_neg = [_detect(p, s, c) for p, s in neg_s]
            ind_fa = _count([_detect(p, s, c) for p, s in ind_s], ind_neg)[2] if ind_neg else None
            # Each positive on its own: no cool-off between the positives of a track.
            dets = {k: [_detect(p, s, c, 0.0) for p, s in v] for k, v in pos_s.items()}
            curve.append(row(float(c), dets_neg, dets, ind_fa))
    else:
        for st in engine.settings:
            dets_neg = [meter.run(engine.detections, a, st) for a, _ in neg]
            ind_fa = (
                _count([meter.run(engine.detections, a, st) for a, _ in ind_neg], ind_neg)[2]
                if ind_neg
                else None
            )
            dets = {
                k: [meter.run(engine.detections, a, st) for a, _ in v] for k, v in pos_sets.items()
            }
            curve.append(row(st, dets_neg, dets, ind_fa))
            fa = curve[-1]["fa"]
            log(
                f"  {engine.name} setting {st}: {fa} false accepts in {hours:.2f} h, FRR {curve[-1]['frr_mean']}"
            )
            if fa / hours > max(TARGETS):
                break  # settings go from strict to lenient: the rest only accept more

    if outcomes is not None:
        outcomes["neg_fa"] = np.array(neg_fa_rows, np.int32).reshape(len(curve), len(neg))
        outcomes["pos_hit"] = {k: np.array(v, bool).reshape(len(curve), -1)
                               for k, v in pos_hit_rows.items()}  # fmt: skip
    result = {
        "engine": engine.name,
        "info": engine_info(engine),
        "negative_hours": round(hours, 3),
        "ind_negative_hours": round(ind_hours, 3),
        "targets": {},
    }
    means = {}  # the chosen settings' FRR per group, for the choice figure
    for target in TARGETS:
        r = operating_point(curve, hours, target)
        key = str(target)
        if r is None:
            result["targets"][key] = None
            continue
        means[target] = r["frr_mean"]
        result["targets"][key] = {
            "setting": r["setting"],
            "max_fa_allowed": max_false_accepts(target, hours),
            "fa": r["fa"],
            "fa_per_hour": r["fa_per_hour"],
            "frr": r["frr"],
            **{f"frr_{k}": v for k, v in r["frr_mean"].items()},
            "ind_fa": r["ind_fa"],
            **({"fa_piper": r["fa_piper"]} if "fa_piper" in r else {}),
        }
    result["choice"] = choice_figure([means.get(t) for t in CHOICE_TARGETS])
    result["curve"] = curve
    audio_h = meter.samples / RATE / 3600
    result["cpu_s"] = round(meter.cpu, 1)
    result["audio_hours_scored"] = round(audio_h, 3)
    # Three significant figures: a fast engine on a short set must not round to 0.
    result["cpu_s_per_audio_hour"] = float(f"{meter.cpu / max(audio_h, 1e-9):.3g}")
    result["seconds"] = round(time.time() - t0, 1)
    return result


# ---- reporting --------------------------------------------------------------------------------

ZERO_FA_X = 0.03  # where a setting with no false accept at all is drawn on the log axis
X_MAX = 100.0  # right edge of the DET plot (FA/h)


def det_points(curve: list[dict], key: str = "validation") -> tuple[list[float], list[float]]:
    """The DET points of an operating curve: for each false-accept rate, the lowest FRR.

    Args:
        curve: rows {"fa_per_hour", "frr_mean": {key: frr}} (any order).
        key: which mean FRR ("validation", "val_pos", "val_piper", "ind").

    Returns:
        (FA/h, FRR) sorted by FA/h, a zero FA/h drawn at `ZERO_FA_X`; empty if ``key`` is
        missing from the rows.
    """
    best = {}
    for c in curve:
        y = c["frr_mean"].get(key)
        if y is None:
            return [], []
        x = max(c["fa_per_hour"], ZERO_FA_X)
        best[x] = min(y, best.get(x, 1.0))
    xs = sorted(best)
    return xs, [best[x] for x in xs]


def plot_det(out: dict, path) -> list[str]:
    """Draw the DET curves of one benchmark run (its JSON) as a PNG.

    FRR against false accepts per hour on the validation negatives (log axis; settings with
    no false accept at all are drawn at 0.03 FA/h), one colour per engine: a solid line for
    the validation positives, a dashed one for the independent positives (same settings).
    Vertical lines mark 0.1 and 0.5 FA/h and one false accept in the negatives.

    Args:
        out: the benchmark's JSON (phrase, results with their curves).
        path: where to write the PNG.

    Returns:
        The labels of the lines drawn, in order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    labels = []
    hours = None
    for i, r in enumerate(x for x in out["results"] if x.get("curve")):
        hours = r["negative_hours"]
        color = f"C{i}"
        for key, style, what in (("validation", "-", "validation"), ("ind", "--", "independent")):
            xs, ys = det_points(r["curve"], key)
            if not xs:
                continue
            label = f"{r['engine']} ({what})"
            # Held to the right edge: a looser budget can always keep the same setting.
            ax.plot(
                xs + [X_MAX],
                [100 * y for y in ys + ys[-1:]],
                style,
                color=color,
                drawstyle="steps-post",
                marker="o" if len(r["curve"]) < 20 else None,
                ms=3,
                label=label,
            )
            labels.append(label)
    for x, txt in ((0.1, "0.1 FA/h"), (0.5, "0.5 FA/h")):
        ax.axvline(x, color="k", lw=0.8)
        ax.text(x, 101, txt, ha="center", va="bottom", fontsize=8)
    if hours:
        ax.axvline(1 / hours, color="grey", lw=0.8, ls=":")
        ax.text(1 / hours, 2, f" 1 FA in {hours:.2f} h", fontsize=7, color="grey", rotation=90)
    ax.set_xscale("log")
    ax.set_xlim(ZERO_FA_X * 0.7, X_MAX)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"false accepts per hour (validation negatives; 0 drawn at {ZERO_FA_X})")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title(f'DET: "{out["phrase"]}"', pad=14)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return labels


def _n(x):
    return "-" if x is None else str(x)


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f} %"


def table(out: dict) -> str:
    """The results as a Markdown table: one row per (engine, set), FRR per FA/h budget."""
    hours = next((r["negative_hours"] for r in out["results"] if "negative_hours" in r), 0)
    heads = [f"FRR @ {t:g} FA/h (<= {max_false_accepts(t, hours)} FA)" for t in TARGETS]
    lines = [
        "| engine | positives | " + " | ".join(heads) + " | CPU s per audio hour |",
        "|---|---|" + "---|" * len(TARGETS) + "---|",
    ]
    for r in out["results"]:
        if "error" in r:
            lines.append(f"| {r['engine']} | not run: {r['error']} |" + " |" * (len(TARGETS) + 1))
            continue
        for grp, label in GROUP_LABELS.items():
            cells = []
            for t in TARGETS:
                p = r["targets"].get(str(t))
                cells.append("none" if p is None else _pct(p.get(f"frr_{grp}")))
            if all(c == "-" for c in cells):
                continue  # no such positives in this run
            cpu = f"{r['cpu_s_per_audio_hour']:g}" if grp == "val_pos" else ""
            lines.append(f"| {r['engine']} | {label} | " + " | ".join(cells) + f" | {cpu} |")
    lines.append("")
    lines.append(
        "Settings chosen on the validation negatives (setting: false accepts there (of them"
    )
    lines.append("on piper's speech, when it is among them), false accepts on the independent")
    lines.append("negatives):")
    lines.append("")
    for r in out["results"]:
        if "error" in r:
            continue
        cells = []
        for t in TARGETS:
            p = r["targets"].get(str(t))
            cells.append(
                f"{t:g} FA/h: none"
                if p is None
                else f"{t:g} FA/h: {p['setting']:g} ({p['fa']} FA"
                + (f", {p['fa_piper']} on piper" if "fa_piper" in p else "")
                + f"; indep. {_n(p['ind_fa'])} FA)"
            )
        lines.append(f"- {r['engine']}: " + "; ".join(cells))
    choice = [f"{r['engine']} {_pct(r.get('choice'))}" for r in out["results"] if "error" not in r]
    lines += [
        "",
        "The project's choice figure (the mean FRR of the two validation groups at "
        + ", ".join(f"{t:g}" for t in CHOICE_TARGETS)
        + " FA/h; the independent voices never count): "
        + ", ".join(choice),
    ]
    return "\n".join(lines) + "\n"


def outcomes_path(result) -> Path:
    """Where a result JSON's clip-by-clip outcomes are kept: `F.outcomes.npz` beside `F.json`."""
    return Path(result).with_suffix(".outcomes.npz")


def merge(old: dict, new: dict) -> dict:
    """An earlier run's results with the engines of a new run on the same audio replaced.

    Raises:
        ValueError: the two runs did not hear the same audio (phrase, seed, SNRs, hours).
    """
    for k in ("phrase", "seed", "snrs"):
        if old.get(k) != new.get(k):
            raise ValueError(f"cannot merge: {k} differs ({old.get(k)!r} vs {new.get(k)!r})")
    if old["audio"]["hours"] != new["audio"]["hours"]:
        raise ValueError("cannot merge: the audio differs (hours per set)")
    fresh = {r["engine"]: r for r in new["results"]}
    results = [fresh.pop(r["engine"], r) for r in old["results"]] + list(fresh.values())
    merged = dict(new, results=results)
    merged["merged"] = sorted(set(old.get("merged", [])) | {r["engine"] for r in new["results"]})
    return merged


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phrase", default="hey jarvis")
    ap.add_argument(
        "--seed", type=int, default=1, help="seed of the recipe whose validation data is used"
    )
    ap.add_argument("--snrs", type=int, nargs="+", default=[20, 10, 5])
    ap.add_argument("--engines", default="ours,microwakeword,openwakeword,porcupine,pocketsphinx")
    ap.add_argument("--model", help="our model (default models/<name>.vnm)")
    ap.add_argument(
        "--max-positives",
        type=int,
        help="at most this many clips per positive group (validation espeak, piper, independent)",
    )
    ap.add_argument("--no-independent", action="store_true", help="skip flite/festival/human sets")
    ap.add_argument(
        "--ind-minutes",
        type=float,
        default=10.0,
        help="minutes of reserved voices reading text in the independent negatives",
    )
    ap.add_argument(
        "--negative-tracks",
        type=int,
        help="only this many negative tracks: a quick smoke run (its FA/h figures mean little)",
    )
    ap.add_argument(
        "--piper-negatives",
        type=float,
        default=0.0,
        metavar="MIN",
        help="add MIN minutes of piper reading held-out text to the validation negatives "
        "(the published tables: 0)",
    )
    ap.add_argument(
        "--merge",
        help="an earlier result JSON of the same phrase and audio: keep its other engines, "
        "replace the ones run now",
    )
    ap.add_argument(
        "--resamples",
        type=int,
        default=intervals.RESAMPLES,
        help="bootstrap resamples for the FRR intervals and the comparisons with ours "
        "(bench.intervals; 0: none)",
    )
    ap.add_argument("--out", help="write the JSON here, the DET curve to .png, the table to .md")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log("building the common audio ...")
    sets, info = make_audio(
        args.phrase,
        args.seed,
        args.snrs,
        args.max_positives,
        not args.no_independent,
        args.ind_minutes,
        log,
        args.negative_tracks,
        args.piper_negatives,
    )
    info["hours"] = {k: round(hours_of(v), 3) for k, v in sets.items()}
    info["positives"] = {
        k: sum(1 for _, ev in v for *_, kind in ev if kind == "pos")
        for k, v in sets.items()
        if k not in NEGATIVE_SETS
    }
    hours = hours_of(validation_negatives(sets))
    info["budgets"] = {
        str(t): f"<= {max_false_accepts(t, hours)} false accepts in {hours:.2f} h" for t in TARGETS
    }
    log(json.dumps(info))
    results = []
    outcomes: dict = {}
    for name in args.engines.split(","):
        try:
            eng = engine(name, args.phrase, args.model)
        except Exception as e:  # a missing optional package or keyword: report, go on
            log(f"{name}: not run ({type(e).__name__}: {e})")
            results.append({"engine": name, "error": f"{type(e).__name__}: {e}"})
            continue
        log(f"{name} ...")
        outcomes[name] = {}
        r = evaluate_engine(eng, sets, log, outcomes[name])
        log(json.dumps({k: v for k, v in r.items() if k != "curve"}))
        results.append(r)
    out = {
        "phrase": args.phrase,
        "seed": args.seed,
        "snrs": args.snrs,
        "targets_fa_per_hour": list(TARGETS),
        "audio": info,
        "results": results,
    }
    if outcomes and args.resamples > 0:
        track_hours = [len(a) / RATE / 3600 for a, _ in validation_negatives(sets)]
        out["intervals"] = intervals.bootstrap(outcomes, track_hours, TARGETS, args.resamples)
        if args.out:  # for `bench longneg`, which adds its negatives to them
            curves = {r["engine"]: [row["setting"] for row in r["curve"]]
                      for r in results if "curve" in r}  # fmt: skip
            intervals.save_outcomes(outcomes_path(args.out), outcomes, track_hours, curves)
    elif args.out:  # none made this time: no older ones may pass for this run's
        outcomes_path(args.out).unlink(missing_ok=True)
    if args.merge:  # the intervals stay those of the engines run now
        out = merge(json.loads(Path(args.merge).read_text()), out)
    md = table(out)
    if "intervals" in out:
        md += "\n" + intervals.table(out["intervals"])
    log(md)
    print(json.dumps(out, indent=1))
    if args.out:
        p = Path(args.out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(out, indent=1) + "\n")
        plot_det(out, p.with_suffix(".png"))
        p.with_suffix(".md").write_text(md)
        log(f"wrote {p}, {p.with_suffix('.png')}, {p.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
