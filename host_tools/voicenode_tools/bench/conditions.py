"""A diagnostic: which acoustic condition costs each wake-word engine its misses?

`bench wakeword` lays every validation clip into a track with a random room (half the
clips), microphone band (half the tracks), level and background (noise, music or babble) at
the track's SNR: its FRR says how much each engine misses, not why. Here the recipe's
validation clips (held-out espeak-ng voices; piper) are played alone
(`evalvoices.missed_alone`) under one condition at a time, drawn as the tracks draw it, and
every engine hears the same audio:

=============  ===================================================================
clean          the clip in faint noise, nothing else
room           a synthetic room (`augment.reverb`: RT60 0.15-0.9 s)
room RT60 T s  the same with its RT60 fixed at T (0.3 s, a furnished room; 0.9 s, a live one)
mic band       a microphone band limit (high-pass 60-300 Hz, low-pass 3.5-7.8 kHz)
quiet          the clip's peak at -30 dBFS (the tracks' lowest level)
noise N dB     generated noise (white, pink or brown) N dB below the speech
music N dB     rendered music N dB below the speech
babble N dB    3-6 held-out talkers N dB below the speech
=============  ===================================================================

    voicenode bench conditions --phrase "hey jarvis" \\
        --settings docs/wakeword_bench/hey_jarvis.json [--budget 0.5] [--engines ours,microwakeword]
    voicenode bench conditions --phrase "hey jarvis" --cutoff ours=0.71 [--model M] [--json F]

Each engine plays at its own cutoff: its setting at ``--budget`` false accepts per hour in a
`bench wakeword` result (``--settings``), or one given with ``--cutoff``.
Only the validation voices are played: the reserved independent voices stay for
evaluation, and this diagnostic is for choosing what to train on.
"""

from __future__ import annotations

import json

import numpy as np

GROUPS = {"val_pos": "validation espeak", "val_piper": "validation piper"}
SNRS = (20, 5)
RT60S = (0.3, 0.9)  # seconds: the fixed rooms beside the random one
#: the speech level of the played clips (`evalvoices.missed_alone`, `tracks.mix_track`)
SPEECH_RMS = 3000.0


def conditions(music: list[np.ndarray], babble_speech: list[np.ndarray]) -> dict:
    """{name: f(float audio, rng) -> float audio} for every condition, in table order."""
    from voicenode_tools.train import augment, tracks

    from .wakeword import RATE

    def background(kind, snr):
        def lay(a, rng):
            b = tracks.background_bed(len(a), RATE, rng, music, babble_speech, kind)
            return a + b * SPEECH_RMS * 10 ** (-snr / 20)

        return lay

    def band(a, rng):
        lo, hi = float(rng.uniform(60, 300)), float(rng.uniform(3500, 7800))
        return augment.band_limit(a, RATE, lo, hi)

    out = {
        "clean": lambda a, rng: a,
        "room": lambda a, rng: augment.reverb(a, RATE, rng),
        **{
            f"room RT60 {t:g} s": lambda a, rng, t=t: augment.reverb(a, RATE, rng, rt60=t)
            for t in RT60S
        },
        "mic band": band,
        "quiet": lambda a, rng: a * (32767 * 10 ** (-30 / 20) / (np.max(np.abs(a)) + 1e-9)),
    }
    for kind in ("noise", "music", "babble"):
        for snr in SNRS:
            out[f"{kind} {snr} dB"] = background(kind, snr)
    return out


def missed(
    phrase: str,
    cutoffs: dict[str, float],
    seed: int = 1,
    model: str | None = None,
    max_clips: int | None = None,
    log=lambda *_: None,
    per_clip: bool = False,
) -> dict:
    """{"clips": {group: n}, "missed": {condition: {engine: {group: share missed}}}}, and
    with ``per_clip`` also "per_clip": [{"group", "voice", "missed": {condition: {engine:
    bool}}}] (the voice as the data cache labels it, e.g. "piper:joe:s76:p36:x57:w0.917").

    The clips are the recipe's validation clips at ``seed`` (cached by `train-wakeword` and
    `bench wakeword`), at most ``max_clips`` of each group; the babble talkers are its
    held-out voices reading held-out text, the music its rendered music.
    """
    from voicenode_tools.train import data, recipe, tracks

    from . import evalvoices, wakeword

    clips = data.load_or_generate(recipe.benchmark(phrase, seed=seed), wakeword.RATE)
    g = clips.groups
    items, counts, clips_info = [], {}, []
    for group in GROUPS:
        cl = g[group] if max_clips is None else g[group][:max_clips]
        counts[GROUPS[group]] = len(cl)
        for c, info in zip(cl, clips.info[group][: len(cl)], strict=True):
            # each clip its own label (a number, in play order), so each can be told apart
            items.append((c, f"{len(items):06d}"))
            clips_info.append({"group": GROUPS[group], "voice": info.split("|")[0]})
    group_of = np.array([c["group"] for c in clips_info])
    babble = tracks.babble_pool(g["val_speech"], np.random.default_rng([seed, 99]))
    engines = {name: wakeword.engine(name, phrase, model) for name in cutoffs}
    out, each = {}, {}
    for k, (name, cond) in enumerate(conditions(g["music"], babble).items()):
        log(f"{name} ...")
        rng = np.random.default_rng([seed, 500, k])
        res = evalvoices.missed_alone(items, engines, cutoffs, rng, condition=cond)
        each[name] = {e: [per[label] > 0 for _, label in items] for e, per in res.items()}
        out[name] = {
            e: {grp: round(float(np.mean(np.array(m)[group_of == grp])), 3) for grp in counts}
            for e, m in each[name].items()
        }
    result = {"clips": counts, "missed": out}
    if per_clip:
        result["per_clip"] = [
            {**c, "missed": {n: {e: m[i] for e, m in per.items()} for n, per in each.items()}}
            for i, c in enumerate(clips_info)
        ]
    return result


def settings_from(path, budget: float, engines) -> dict[str, float]:
    """{engine: its setting at ``budget`` FA/h} from a `bench wakeword` JSON file.

    Raises:
        ValueError: an engine the file has no result for, a budget it did not set, or an
            engine that met no setting there.
    """
    with open(path) as f:
        results = {r["engine"]: r for r in json.load(f).get("results", [])}
    out = {}
    for e in engines:
        if e not in results:
            raise ValueError(f"{path}: no result for {e!r} (it has {', '.join(results)})")
        targets = results[e]["targets"]
        t = targets.get(str(float(budget)))
        if t is None:
            raise ValueError(f"{path}: no {budget:g} FA/h setting (budgets: {', '.join(targets)})")
        if t.get("setting") is None:
            raise ValueError(f"{path}: {e} met no setting at {budget:g} FA/h")
        out[e] = float(t["setting"])
    return out


def table(res: dict, cutoffs: dict[str, float]) -> str:
    """Markdown: one row per condition, one column per engine and voice group."""
    cols = [(e, g) for e in cutoffs for g in res["clips"]]
    rows = ["| condition | " + " | ".join(f"{e} @ {cutoffs[e]:g}: {g}" for e, g in cols) + " |"]
    rows.append("|---|" + "---|" * len(cols))
    for cond, per in res["missed"].items():
        rows.append(f"| {cond} | " + " | ".join(f"{100 * per[e][g]:.1f} %" for e, g in cols) + " |")
    return "\n".join(rows)


def main(argv=None):
    import argparse
    import sys

    from . import evalvoices

    ap = argparse.ArgumentParser(description="share of validation clips missed per condition")
    ap.add_argument("--phrase", default="hey jarvis")
    ap.add_argument("--seed", type=int, default=1, help="the recipe's seed (its clips)")
    ap.add_argument("--model", help="our model (default models/<name>.vnm)")
    ap.add_argument("--max-clips", type=int, help="at most this many clips per voice group")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument(
        "--per-clip", action="store_true", help="with --json: each clip's voice and misses too"
    )
    ap.add_argument("--settings", help="a `bench wakeword` JSON: each engine's setting there")
    ap.add_argument("--budget", type=float, default=0.5, help="FA/h of --settings (0.5)")
    ap.add_argument("--engines", default="ours,microwakeword", help="engines taken from --settings")
    evalvoices.add_cutoff_argument(ap, required=False, also="; over --settings")
    args = ap.parse_args(argv)
    if not args.settings and not args.cutoff:
        ap.error("give --settings FILE.json or --cutoff ENGINE=CUTOFF")
    try:
        cutoffs = {}
        if args.settings:
            engines = [e for e in args.engines.split(",") if e]
            cutoffs = settings_from(args.settings, args.budget, engines)
        cutoffs.update(evalvoices.parse_cutoffs(args.cutoff))
    except (OSError, ValueError) as e:
        ap.error(str(e))
    res = missed(
        args.phrase, cutoffs, args.seed, args.model, args.max_clips,
        log=lambda m: print(m, file=sys.stderr), per_clip=args.per_clip,
    )  # fmt: skip
    res = {"phrase": args.phrase, "seed": args.seed, "cutoffs": cutoffs, **res}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(table(res, cutoffs))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
