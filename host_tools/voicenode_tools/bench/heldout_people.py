"""A diagnostic: do the wake-word engines hear people no training voice was made from?

espeak-ng's MBROLA voices say its phonemes with the diphones of recorded people, so, like
the reserved synthesizers (`evalvoices`), they are for independent evaluation only: no
recipe trains on them and no choice is made on them. Five of them
(`train.synth.MBROLA_HELD_OUT`, 3 women, 2 men) each say the phrase at 3 speeds, 3 pitches
and 2 warps (90 clips), and each clip is played alone in faint noise to each engine
(`evalvoices.missed_alone`): the share missed at the given cutoffs, per voice and over all.
Needs the MBROLA packages (docs/TRAINING.md).

    voicenode bench heldout_people --phrase "hey jarvis" \\
        --cutoff ours=0.97 --cutoff microwakeword=0.75 [--model models/hey_jarvis.vnm]
"""

from __future__ import annotations

import json

import numpy as np

SPEEDS = (130, 170, 210)  # espeak words per minute
PITCHES = (35, 50, 70)  # espeak pitch 0..99
WARPS = (0.95, 1.05)  # resampling factors


def voices():
    """Every (voice, speed, pitch, warp) the diagnostic says the phrase with."""
    from voicenode_tools.train import synth

    return [
        synth.Voice("espeak", name, "", speed=sp, pitch=p, warp=w)
        for name in synth.MBROLA_HELD_OUT
        for sp in SPEEDS
        for p in PITCHES
        for w in WARPS
    ]


def missed(phrase: str, cutoffs: dict[str, float], model: str | None = None) -> dict:
    """{engine: {voice: share missed, "all": share missed}} for engines with ``scores``."""
    from voicenode_tools.train import recipe, synth

    from . import evalvoices, wakeword

    synth.check_mbrola()
    text = recipe.spoken(recipe.make(phrase))
    items = [(synth.say(text, v), v.name) for v in voices()]
    engines = {name: wakeword.engine(name, phrase, model) for name in cutoffs}
    out = evalvoices.missed_alone(items, engines, cutoffs, np.random.default_rng(11))
    for per in out.values():
        per["all"] = round(float(np.mean(list(per.values()))), 3)  # voices have equal counts
    return out


def main(argv=None):
    import argparse

    from . import evalvoices

    ap = argparse.ArgumentParser(description="share missed per held-out MBROLA voice")
    ap.add_argument("--phrase", default="hey jarvis")
    ap.add_argument("--model", help="our model (default models/<name>.vnm)")
    evalvoices.add_cutoff_argument(ap)
    args = ap.parse_args(argv)
    cutoffs = evalvoices.parse_cutoffs(args.cutoff)
    res = missed(args.phrase, cutoffs, args.model)
    print(json.dumps(res))
    print(evalvoices.missed_table(res, cutoffs, digits=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
