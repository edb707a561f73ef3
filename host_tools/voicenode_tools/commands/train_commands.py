"""`voicenode train-commands commands/home.toml --seed 1 -o models/`: the on-chip command model.

Reads the command-set file (phrases with alternatives and slots, see
`voicenode_tools.commandset`), synthesizes every intent and some unknown speech with many
espeak-ng (and piper) voices, puts them in noisy rooms, computes the chip's features, trains a
small int8 phone network (CTC), compiles the set into a phone grammar, picks the rejection
cutoff on held-out voices and writes `<name>.json` (sidecar), `<name>.vcg` (grammar) and
`<name>_net.vnm` + `.json` (network); default name: commands_<set name>.
"""

import json
from pathlib import Path


def add_arguments(parser):
    parser.add_argument(
        "file",
        nargs="?",
        default=None,
        help="command-set file, TOML or .json (default: commands/home.toml)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (data and training)")
    parser.add_argument(
        "-o",
        "--output",
        default="models",
        help="folder for the model files (<name>.json, .vcg, _net.vnm)",
    )
    parser.add_argument("--name", help="model name (default: commands_<set name>)")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run to try the pipeline (seconds)"
    )
    parser.add_argument(
        "--recipe",
        help="a JSON file of settings over the defaults, e.g. "
        '{"train": {"distill": {"teacher_seeds": [1, 2, 3], "weight": 0.5}}}',
    )
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the recipe)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="PyTorch threads for training (default 2; 1 beside other work: two trainings of 2 "
        "threads each on 2 cores ran about 20 times slower than one alone)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the file (and its grammar) and print its counts",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args):
    from voicenode_tools import commandset
    from voicenode_tools.cli import CommandError

    path = Path(args.file) if args.file else commandset.default_path()
    try:
        cs = commandset.load(path)
    except commandset.CommandSetError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}") from None
    from voicenode_tools import grammar, phones

    try:  # the grammar too: a word espeak-ng cannot say or a number the chip cannot hold
        g, _ = grammar.compile_commandset(cs)
    except (grammar.GrammarError, phones.PhonemeError) as e:
        raise CommandError(f"{path}: {e}") from None
    if args.check:
        counts = cs.count()
        print(json.dumps({"file": str(path), "intents": len(counts), "sentences": sum(counts.values()),
                          "per_intent": counts, "grammar_nodes": g.n_nodes,
                          "grammar_bytes": len(g.to_bytes())}, indent=1))  # fmt: skip
        return 0
    try:
        from voicenode_tools.train import commands as tc
        from voicenode_tools.train.trainer import Progress
    except ImportError as e:
        raise CommandError(
            f"training needs the 'train' extra: pip install -e '.[train]' ({e})"
        ) from None
    over = {}
    # Only when asked: an edited command file trains within its 15 minutes by default, and a
    # recipe with teachers (`train.distill`) trains each of them first.
    if args.recipe:
        try:
            over = json.loads(Path(args.recipe).read_text())
        except (OSError, ValueError) as e:
            raise CommandError(f"{args.recipe}: {e}") from None
        if not isinstance(over, dict):
            raise CommandError(f"{args.recipe}: a recipe is a JSON object of settings")
    if args.epochs:
        over = tc._merge(over, {"train": {"epochs": args.epochs}})
    from voicenode_tools.train import portable

    try:  # the recipe's settings, checked before any work
        rec = tc.make_recipe(args.seed, args.quick, over)
        if portable.wanted(rec):  # its settings must be in place before PyTorch starts
            portable.reexec()
    except ValueError as e:
        raise CommandError(f"{args.recipe}: {e}") from None
    try:
        side = tc.build(path, Path(args.output), seed=args.seed, progress=Progress(enabled=not args.quiet),
                        workers=args.workers, quick=args.quick, name=args.name, overrides=over,
                        threads=args.threads)  # fmt: skip
    except RuntimeError as e:
        raise CommandError(str(e)) from None
    print(json.dumps({"model": str(Path(args.output) / (side["name"] + ".json")),
                      "cutoff_avg": side["cutoff_avg"], "scores": side["scores"]["mean"],
                      "heap_bytes": side["heap_bytes"], "macs_per_step": side["macs_per_step"],
                      "seconds": side["train_seconds"]["total"]}))  # fmt: skip
    return 0
