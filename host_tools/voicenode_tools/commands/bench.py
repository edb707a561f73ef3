"""`voicenode bench NAME [ARGS...]`: run one of the benchmark scripts (figures, not tests).

Each benchmark is a module of `voicenode_tools.bench` (or the virtual board's) with its own
options: `voicenode bench wakeword --help`. The peers they compare with come from the `bench`
extra: `pip install -e '.[bench]'` (`make bench` does it).
"""

import argparse

# fmt: off
BENCHES = {
    "frontend": ("voicenode_tools.bench.frontend", "on-chip front end vs microWakeWord's C front end"),
    "nn": ("voicenode_tools.bench.nn_cost", "int8 network + detector: instructions and heap"),
    "wakeword": ("voicenode_tools.bench.wakeword", "false-reject rate at fixed false accepts/hour vs the peers"),
    "longneg": ("voicenode_tools.bench.longneg", "FRR at 0.1 FA/h from 10 h of negatives: ours vs microWakeWord"),
    "conditions": ("voicenode_tools.bench.conditions", "wake words: validation clips missed per condition (room, band, level, noise, music, babble)"),
    "heldout_people": ("voicenode_tools.bench.heldout_people", "wake words: share of five held-out MBROLA people's clips missed (needs MBROLA)"),
    "commands": ("voicenode_tools.bench.commands", "intent/slot accuracy vs PocketSphinx with a JSGF grammar"),
    "grammar": ("voicenode_tools.bench.grammar_cost", "command grammar decoder: time, instructions, heap"),
    "deploy": ("voicenode_tools.bench.deploy", "deploy times on the virtual board"),
    "sim": ("voicenode_tools.sim.bench", "virtual board: mpremote copy, exec and reset times"),
}
# fmt: on


def add_arguments(parser):
    parser.add_argument(
        "name", choices=sorted(BENCHES), help="; ".join(f"{k}: {v[1]}" for k, v in BENCHES.items())
    )
    parser.add_argument("args", nargs=argparse.REMAINDER, help="options of that benchmark")


def run(args):
    import importlib

    module = importlib.import_module(BENCHES[args.name][0])
    return module.main(args.args) or 0
