"""Benchmark: FRR at 0.1 false accepts per hour, from ten hours and more of negatives.

`bench.wakeword` has 1.22 h of validation negatives, where 0.1 and 0.5 FA/h both mean "no
false accept at all". This adds long negatives for the engines that are cheap enough to run
on many hours (ours and microWakeWord, the peer the target names): held-out espeak-ng voices
(`synth.ESPEAK_HELD_OUT_*`) reading the held-out text (`text.corpus("val")`), laid into tracks
over the same noise, babble and music as the validation negatives, 5-25 dB SNR.

The audio is made and scored a piece at a time (ten hours of it would be 1.2 GB) and never
kept: only each engine's scores are cached, keyed by the audio's recipe and the engine's
model. The false accepts of every cutoff on the long negatives are added to those on the
validation negatives of an earlier `bench.wakeword` result (its JSON, same phrase, same
cutoff grid), and each budget's cutoff is chosen again on all of them together; the false
rejects of that cutoff come from the same JSON (the same positives as the main table).

    python -m voicenode_tools.bench.longneg --hours 10 \\
        --result "hey jarvis=docs/wakeword_bench/hey_jarvis.json" \\
        --result "alexa=docs/wakeword_bench/alexa.json" --out docs/wakeword_bench/longneg.json

The text is the same held-out text as the validation negatives, read again by other voice
settings: sentences repeat (about once per hour), so false accepts of one sentence can come
back in other voices. The figures say how often the engine fires on held-out voices reading
this text, not on any speech.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ORT_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from . import intervals  # noqa: E402
from . import wakeword as wb  # noqa: E402

#: Bumped whenever the audio made here changes (part of the cache key).
VERSION = 1
#: Minutes of speech made and scored at a time.
PIECE_MINUTES = 20.0


def sentences(phrases: list[str]) -> list[str]:
    """The held-out text, without any sentence that contains one of the phrases."""
    from voicenode_tools.train import text

    out = text.corpus("val")
    return [s for s in out if not any(p.lower() in s.lower() for p in phrases)]


def audio_key(phrases: list[str], seed: int, hours: float) -> str:
    """Cache key of the long negative audio (what is said, by whom, over what)."""
    from voicenode_tools.train import recipe

    rec = recipe.benchmark(phrases[0], seed=seed)
    key = {"v": VERSION, "phrases": sorted(phrases), "seed": seed, "hours": hours,
           "backgrounds": recipe.data_hash(rec, wb.RATE)}  # fmt: skip
    return hashlib.sha256(recipe.canonical(key).encode()).hexdigest()[:16]


def pieces(phrases: list[str], seed: int, hours: float, log=lambda *_: None):
    """Yield lists of negative tracks [(int16 audio, events)], about PIECE_MINUTES of speech each.

    Backgrounds (music, babble) are the first phrase's recipe's, as `bench.wakeword` uses.
    """
    from voicenode_tools.train import data, recipe, synth, tracks

    rec = recipe.benchmark(phrases[0], seed=seed)
    clips = data.load_or_generate(rec, wb.RATE)
    g = clips.groups
    babble = tracks.babble_pool(g["val_speech"], np.random.default_rng([seed, 99]))  # make_audio's
    sents = sentences(phrases)
    rng = np.random.default_rng([seed, 4242])
    said = 0.0
    k = 0
    while said < hours * 3600:
        jobs = []
        piece = 0.0
        while piece < PIECE_MINUTES * 60 and said + piece < hours * 3600:
            batch = [(sents[rng.integers(len(sents))], synth.random_espeak_voice(rng, True))
                     for _ in range(32)]  # fmt: skip
            pcm = synth.say_many(batch, workers=2)
            jobs += [(c, "speech") for c in pcm]
            piece += sum(len(c) for c in pcm) / wb.RATE
        plans = tracks.plan_tracks(jobs, rng, per_track=10)
        out = [
            tracks.build_track(
                p, wb.RATE, np.random.default_rng([seed, 5000, k, i]), g["music"], babble,
                (5, 25),
            )
            for i, p in enumerate(plans)
        ]  # fmt: skip
        said += piece
        k += 1
        log(f"  long negatives: {said / 3600:.2f} of {hours} h of speech made")
        yield out


def engine_key(engine) -> str:
    """What identifies an engine's scores: its name and model (file CRC or package)."""
    return json.dumps(wb.engine_info(engine), sort_keys=True)


def _engine_path(cache: Path, key: str, ekey: str) -> Path:
    """One engine's cached scores on the audio `key`: a model change rescores only that model."""
    return cache / f"longneg_{key}_{hashlib.sha256(ekey.encode()).hexdigest()[:12]}.npz"


def _split(z, prefix: str) -> list:
    cuts = np.cumsum(z[f"{prefix}_n"])[:-1]
    return list(
        zip(np.split(z[f"{prefix}_pos"], cuts), np.split(z[f"{prefix}_s"], cuts), strict=True)
    )


def _cached(cache: Path, key: str, ekey: str, label: str):
    """(track scores, track lengths, CPU s) of one engine, or None when not cached.

    Looks in the engine's own file, then in the one file of all the engines that this module
    wrote until 28 Nov (`longneg_<key>.npz`, keyed by label), and copies a hit there to the
    engine's own file.
    """
    path = _engine_path(cache, key, ekey)
    if path.exists():
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        if meta["engine"] == ekey:
            return _split(z, "e"), z["lengths"], meta["cpu"]
    legacy = cache / f"longneg_{key}.npz"
    if legacy.exists():
        z = np.load(legacy, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        if meta["engines"].get(label) == ekey:
            hit = _split(z, label), z["lengths"], meta["cpu"][label]
            _save(path, ekey, *hit)
            return hit
    return None


def _save(path: Path, ekey: str, scores, lengths, cpu: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, meta=json.dumps({"engine": ekey, "cpu": cpu}), lengths=np.asarray(lengths, np.int64),
        e_n=np.array([len(p) for p, _ in scores], np.int64),
        e_pos=np.concatenate([p for p, _ in scores]).astype(np.int64),
        e_s=np.concatenate([s for _, s in scores]).astype(np.float64),
    )  # fmt: skip


def score_all(engines: dict, phrases, seed, hours, cache: Path, log=lambda *_: None) -> dict:
    """{engine label: [(positions, scores)] per track} and the tracks' lengths, cached.

    Each engine's scores are cached on their own (keyed by the audio and the engine's model),
    so checking a new model makes the audio again and scores only that model.
    """
    key = audio_key(phrases, seed, hours)
    ekeys = {lab: engine_key(e) for lab, e in engines.items()}
    scores, cpu, lengths = {}, {}, None
    for lab in engines:
        hit = _cached(cache, key, ekeys[lab], lab)
        if hit is not None:
            scores[lab], lengths, cpu[lab] = hit
    todo = [lab for lab in engines if lab not in scores]
    if todo:
        log(f"  long negatives: scoring {', '.join(todo)} (cached: {', '.join(scores) or 'none'})")
        made = []
        for lab in todo:
            scores[lab], cpu[lab] = [], 0.0
        for piece in pieces(phrases, seed, hours, log):
            for audio, _ in piece:
                made.append(len(audio))
                for lab in todo:
                    t = time.process_time()
                    scores[lab].append(engines[lab].scores(audio))
                    cpu[lab] += time.process_time() - t
        if lengths is not None and list(lengths) != made:
            raise RuntimeError(f"the long negatives {key} came out other than the cached ones")
        lengths = np.array(made, np.int64)
        for lab in todo:
            _save(_engine_path(cache, key, ekeys[lab]), ekeys[lab], scores[lab], lengths, cpu[lab])
    return {"scores": {lab: scores[lab] for lab in engines}, "lengths": lengths,
            "cpu": {lab: cpu[lab] for lab in engines}, "key": key}  # fmt: skip


def false_accepts_per_track(track_scores, cutoffs) -> np.ndarray:
    """False accepts of each negative track at each cutoff: (cutoffs, tracks) (every
    detection is false; 1.5 s cool-off)."""
    return np.array(
        [[len(wb._detect(p, s, c)) for p, s in track_scores] for c in cutoffs], np.int32
    ).reshape(len(cutoffs), len(track_scores))


def combine(result: dict, long_fa: dict[float, int], long_hours: float) -> dict:
    """Each budget's cutoff chosen again on the validation plus the long negatives.

    Args:
        result: one engine's entry of a `bench.wakeword` result (its "curve" rows have the
            setting, the false accepts on its negatives and the FRR per positive set).
        long_fa: false accepts on the long negatives per setting.
        long_hours: hours of long negatives.

    Returns:
        {"hours": total, "targets": {target: row or None}} where a row gives the setting,
        the false accepts (validation, long, allowed) and the mean FRR per group.
    """
    hours = float(result["negative_hours"]) + long_hours
    rows = []
    for r in result["curve"]:
        if r["setting"] not in long_fa:
            raise ValueError(f"setting {r['setting']} of the result has no long-negative count")
        rows.append({**r, "val_fa": r["fa"], "fa": r["fa"] + long_fa[r["setting"]]})
    out = {"hours": round(hours, 3), "targets": {}}
    for target in wb.TARGETS:
        r = wb.operating_point(rows, hours, target)
        out["targets"][str(target)] = None if r is None else {
            "setting": r["setting"],
            "allowed": wb.max_false_accepts(target, hours),
            "fa": r["fa"],
            "val_fa": r["val_fa"],
            "long_fa": r["fa"] - r["val_fa"],
            "frr": r["frr_mean"],
        }  # fmt: skip
    out["choice"] = wb.choice_figure([r and r["frr"] for r in out["targets"].values()])
    return out


def resample(saved, long_fa: dict, curves: dict, long_hours, resamples: int) -> dict | None:
    """Bootstrap intervals (`bench.intervals`) on the validation plus the long negatives.

    Args:
        saved: a `bench.wakeword` run's outcomes (`intervals.load_outcomes`).
        long_fa: {engine: (settings, long tracks) false accepts}, at its curve's settings.
        curves: {engine: the settings of its curve in the result}.
        long_hours: hours of each long negative track.
        resamples: how many.

    Returns:
        `intervals.bootstrap`'s result for the engines of both, None without any.
    """
    outcomes, val_hours, settings = saved
    both = {}
    for name, fa in long_fa.items():
        if name not in outcomes:
            continue
        if settings[name] != list(curves[name]) or fa.shape[0] != len(curves[name]):
            raise ValueError(f"{name}: the saved outcomes are of another curve than the result")
        o = outcomes[name]
        both[name] = {"neg_fa": np.concatenate([o["neg_fa"], fa], axis=1), "pos_hit": o["pos_hit"]}
    if not both:
        return None
    hours = np.concatenate([val_hours, np.asarray(long_hours, np.float64)])
    return intervals.bootstrap(both, hours, wb.TARGETS, resamples)


def table(out: dict) -> str:
    """Markdown: per phrase and engine, the FRR at each budget on all the negatives."""
    head = ("| phrase | engine | budget (allowed FA in all negatives) | cutoff | FA: validation + long "
            "| FRR held-out espeak | FRR piper | FRR independent |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for phrase, engines in out["phrases"].items():
        for name, c in engines.items():
            for t, r in c["targets"].items():
                if r is None:
                    lines.append(f"| {phrase} | {name} | {t} FA/h | none | | | | |")
                    continue
                f = r["frr"]
                lines.append(
                    f"| {phrase} | {name} | {t} FA/h (<= {r['allowed']} in {c['hours']:.2f} h) "
                    f"| {r['setting']:g} | {r['val_fa']} + {r['long_fa']} | "
                    + " | ".join(wb._pct(f.get(k)) for k in ("val_pos", "val_piper", "ind"))
                    + " |"
                )
    lines += [
        "",
        "The project's choice figure on all the negatives (the mean FRR of the two validation "
        f"groups at {', '.join(f'{t:g}' for t in wb.TARGETS)} FA/h): "
        + "; ".join(
            f"{phrase} {name} {wb._pct(c.get('choice'))}"
            for phrase, engines in out["phrases"].items()
            for name, c in engines.items()
        ),
    ]
    for phrase, iv in out.get("intervals", {}).items():
        lines += ["", f"{phrase}, all the negatives: " + intervals.table(iv)]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=10.0, help="hours of long negative speech")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--result",
        action="append",
        required=True,
        help="PHRASE=FILE.json: a bench.wakeword result whose curves get the long negatives",
    )
    ap.add_argument("--engines", default="ours,microwakeword")
    ap.add_argument("--model", help="our model (default models/<name>.vnm; one phrase only)")
    ap.add_argument(
        "--resamples",
        type=int,
        default=intervals.RESAMPLES,
        help="bootstrap resamples for the intervals, when a result has its outcomes beside "
        "it (FILE.outcomes.npz, written by bench wakeword --out; 0: none)",
    )
    ap.add_argument("--out", help="write the JSON here and the table to .md beside it")
    args = ap.parse_args(argv)
    from voicenode_tools.train import recipe

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = dict(r.split("=", 1) for r in args.result)
    phrases = list(results)
    if args.model and len(phrases) != 1:
        raise SystemExit("--model goes with one --result")
    engines = {
        f"{name}:{p}": wb.engine(name, p, args.model)
        for p in phrases
        for name in args.engines.split(",")
    }
    cache = recipe.cache_dir().parent / "eval"
    t0 = time.time()
    sc = score_all(engines, phrases, args.seed, args.hours, cache, log)
    long_hours = float(np.sum(sc["lengths"])) / wb.RATE / 3600
    out = {"long_negative_hours": round(long_hours, 3), "audio_key": sc["key"],
           "text_sentences": len(sentences(phrases)), "phrases": {},
           "cpu_s": {k: round(v, 1) for k, v in sc["cpu"].items()}}  # fmt: skip
    for p, path in results.items():
        res = json.loads(Path(path).read_text())
        if res["phrase"] != p:
            raise SystemExit(f"{path} is a result for {res['phrase']!r}, not {p!r}")
        out["phrases"][p] = {}
        per_track = {}
        for name in args.engines.split(","):
            entry = next((r for r in res["results"] if r.get("engine") == name), None)
            if entry is None or "curve" not in entry:
                raise SystemExit(f"{path} has no curve for {name}")
            cutoffs = [r["setting"] for r in entry["curve"]]
            per_track[name] = false_accepts_per_track(sc["scores"][f"{name}:{p}"], cutoffs)
            fa = {c: int(n) for c, n in zip(cutoffs, per_track[name].sum(axis=1), strict=True)}
            out["phrases"][p][name] = combine(entry, fa, long_hours)
        saved = wb.outcomes_path(path)
        if args.resamples > 0 and saved.exists():
            track_hours = sc["lengths"] / wb.RATE / 3600
            curves = {e["engine"]: [r["setting"] for r in e["curve"]]
                      for e in res["results"] if "curve" in e}  # fmt: skip
            iv = resample(intervals.load_outcomes(saved), per_track, curves, track_hours,
                          args.resamples)  # fmt: skip
            if iv is not None:
                out.setdefault("intervals", {})[p] = iv
    out["seconds"] = round(time.time() - t0, 1)
    md = table(out)
    log(md)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
