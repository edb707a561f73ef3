"""`voicenode train-wakeword "hey jarvis" --seed 1 -o models/`: a wake-word model from text.

Synthesizes the phrase and its confusables with espeak-ng and piper (all local), lays them over
generated noise, babble and music in synthetic rooms, computes the chip's features with the
reference front end, trains a streaming convolutional network on the CPU, quantises it to the
chip's int8 format, picks the cutoff on held-out voices and writes `<name>.vnm` + `<name>.json`.
Generated audio is cached in ~/.cache/voicenode/data/<recipe data hash>/ and never committed.
"""

import json
import os
import time
from pathlib import Path


def add_arguments(parser):
    parser.add_argument(
        "phrase", nargs="?", default="hey jarvis", help='the wake phrase (default "hey jarvis")'
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (data and training)")
    parser.add_argument(
        "-o", "--output", default="models", help="folder for <name>.vnm and <name>.json"
    )
    parser.add_argument(
        "--recipe",
        metavar="FILE.json",
        help="a recipe file (default: models/recipes/<name>.json if present)",
    )
    parser.add_argument("--steps", type=int, help="training steps (overrides the recipe)")
    parser.add_argument(
        "--no-piper",
        action="store_true",
        help="leave piper's clips out of training (same data cache; piper is still validated)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run for trying the pipeline (minutes of data, seconds of training, no teachers)",
    )
    parser.add_argument("--name", help="model name (default: from the phrase)")
    parser.add_argument(
        "--workers", type=int, default=2, help="parallel processes for data (default 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch threads for training (default: for a phrase with a shipped recipe, as many"
        " as its shipped model was made with; else 2 on an idle machine of 2+ cores, 1 when"
        " busy: OpenMP threads stall badly beside other work)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--print-recipe", action="store_true", help="print the full recipe and stop"
    )


def busy_cpus(cpus: int, seconds: float = 1.0) -> float:
    """How many CPUs other work keeps busy now: from /proc/stat over `seconds` (the load
    average lags a minute behind: after a test run it still says busy), else the 1-minute load
    average, else all of them (the safe guess)."""

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
        if t1 > t0:
            return cpus * (1.0 - (i1 - i0) / (t1 - t0))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(cpus)


def shipped_threads(phrase: str) -> int | None:
    """The PyTorch threads the phrase's shipped model was made with (its sidecar's
    ``trained_on.threads``; 1 for a model made before sidecars recorded it), None when the
    phrase has no shipped recipe."""
    from voicenode_tools.train import recipe as recipes

    path = recipes.shipped_file(phrase)  # models/recipes/<name>.json
    if path is None:
        return None
    side = path.parent.parent / f"{recipes.slug(phrase)}.json"  # models/<name>.json
    try:
        made = json.loads(side.read_text()).get("trained_on") or {}
    except (OSError, ValueError):
        made = {}
    n = made.get("threads", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def choose_threads(
    asked, shipped: int | None, cpus: int, busy: float, portable: bool = False
) -> tuple[int, str]:
    """PyTorch threads for the training, and why (for the progress log).

    Args:
        asked: ``--threads`` (None: choose); a portable recipe trains with one whatever is
            asked (``portable``: its recipe's ``train.portable``; the threads' split of the
            reductions changes the bytes).
        shipped: for a phrase with a recipe file in models/recipes/, the threads its shipped
            model was made with (`shipped_threads`): the same seeded command must make the
            same bytes, and they depend on it. None for any other phrase.
        cpus: CPUs this process may use.
        busy: CPUs other work keeps busy before training starts (`busy_cpus`).

    Two threads train about 1.7 times faster on an idle 2-core machine (okay nabu: 453 s
    against 760 s; "hey computer" from nothing 12.3 min, okay nabu with one thread 15.8 min:
    docs/TRAINING.md), but beside other work OpenMP's threads stall (1-2 s per step instead
    of 0.12): two only when all but half a CPU is free.
    """
    if portable:
        return 1, "a portable recipe trains with one (train.portable)"
    if asked is not None:
        return asked, "as asked"
    if shipped is not None:
        return shipped, (
            f"the shipped model was made with {shipped}, so its recipe's command rebuilds it"
        )
    where = f"{busy:.1f} of {cpus} CPUs busy"
    if cpus >= 2 and busy <= cpus - 1.5:
        return 2, f"the machine is idle ({where}; --threads 1 beside other work)"
    return 1, f"the machine is busy ({where})"


QUICK = {
    "data": {"positives": 60, "confusables": 60, "speech_minutes": 1, "music_clips": 1,
             "val_positives": 16, "val_piper_positives": 8, "val_confusables": 16,
             "val_speech_minutes": 1, "augment_copies": 1},
    "train": {"steps": 30, "batch": 16},
}  # fmt: skip


def run(args):
    from voicenode_tools.cli import CommandError
    from voicenode_tools.train import recipe as recipes

    try:
        if args.recipe:
            rec = recipes.load(args.recipe)
            rec["seed"] = args.seed
        else:
            rec = recipes.make(args.phrase, seed=args.seed)
    except (ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    if args.quick:
        rec = recipes._merge(rec, QUICK)
        rec["train"].pop("distill", None)  # a smoke run trains no teachers
    if args.steps:
        rec["train"]["steps"] = args.steps
    if args.no_piper:
        rec["train_without_piper"] = True
        rec["name"] = rec["name"] + "_nopiper"
    if args.name:
        rec["name"] = args.name
    if args.print_recipe:
        print(json.dumps(rec, indent=1))
        return 0
    from voicenode_tools.train import portable

    try:
        exact = portable.wanted(rec)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if exact:  # its settings must be in place before PyTorch starts
        portable.reexec()
    try:
        from voicenode_tools.train import trainer
    except ImportError as e:
        raise CommandError(
            f"training needs the 'train' extra: pip install -e '.[train]' ({e})"
        ) from None
    shipped = None if args.recipe else shipped_threads(args.phrase)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    measure = args.threads is None and shipped is None and not exact
    busy = busy_cpus(cpus) if measure else 0.0  # 1 s to measure
    threads, why = choose_threads(args.threads, shipped, cpus, busy, portable=exact)
    progress = trainer.Progress(enabled=not args.quiet)
    progress.log(f"training with {threads} PyTorch thread{'s' if threads > 1 else ''}: {why}")
    try:
        side = trainer.build(
            rec, Path(args.output), progress, workers=args.workers, threads=threads
        )
    except RuntimeError as e:
        raise CommandError(str(e)) from None
    s = side["scores"]
    print(json.dumps({"model": str(Path(args.output) / (rec["name"] + ".vnm")), "cutoff": side["cutoff"],
                      "fa_per_hour": s["fa_per_hour"], "negative_hours": s["negative_hours"],
                      "frr": s["frr"], "heap_bytes": side["heap_bytes"],
                      "macs_per_step": side["macs_per_step"]}))  # fmt: skip
    return 0
