"""`voicenode listen FILE.wav`: the node's events for a recording, one JSON object per line.

    {"t": 3.42, "event": "wake", "word": "hey_jarvis", "score": 0.97}
    {"t": 5.10, "event": "intent", "intent": "timer.set", "slots": {"minutes": 5}, "score": 0.91}

`t` is seconds into the file when the node fires (the end of the feature window that
completed the detection). By default the host reference (numpy twin of the firmware) runs the
pipeline; with `--sim` the file streams through the virtual board's microphone and the events
are the ones the firmware itself printed. Both paths give the same events. After each wake
the command model (default: the shipped commands_home, if present) listens for one command,
as the node does with config "commands".
"""

import json
import sys

#: Shipped models, relative to the repository root (what `deploy` installs by default).
MODELS = "models"
DEFAULT_COMMANDS = "commands_home"


def add_arguments(parser):
    parser.add_argument(
        "file", help="a WAV file (any rate is resampled to 16 kHz; stereo mixed down)"
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        help="stream the file through the virtual board's microphone (the firmware decides)",
    )
    parser.add_argument(
        "--wakeword",
        action="append",
        metavar="NAME",
        help="model to run (models/NAME.vnm); repeat for several (default: hey_jarvis)",
    )
    parser.add_argument(
        "--cutoff",
        type=float,
        metavar="X",
        help="override the models' cutoff (0..1, on the windowed mean probability)",
    )
    parser.add_argument(
        "--scores",
        action="store_true",
        help="also print every model step's score (reference path), for DET curves",
    )
    parser.add_argument(
        "--models",
        metavar="DIR",
        help="folder of .vnm models (default: models/, the ones deploy installs)",
    )
    parser.add_argument(
        "--commands",
        metavar="NAME",
        default=DEFAULT_COMMANDS,
        help=f"command model after a wake (default: {DEFAULT_COMMANDS} if present)",
    )
    parser.add_argument("--no-commands", action="store_true", help="wake words only")


def _model_paths(args):
    from pathlib import Path

    from voicenode_tools import REPO_ROOT
    from voicenode_tools.cli import CommandError

    folder = Path(args.models) if args.models else REPO_ROOT / MODELS
    words = args.wakeword or ["hey_jarvis"]
    paths = []
    for w in words:
        p = folder / f"{w}.vnm"
        if not p.is_file():
            have = sorted(q.stem for q in folder.glob("*.vnm")) or ["none"]
            raise CommandError(f"no model {p} (models in {folder}: {', '.join(have)})")
        paths.append(p)
    return folder, words, paths


def _print(ev):
    out = {"t": ev["at"], "event": ev["event"]}
    out.update({k: v for k, v in ev.items() if k not in ("at", "event", "t")})
    print(json.dumps(out), flush=True)


def run(args):
    from voicenode_tools.audio import AudioError, load_16k
    from voicenode_tools.cli import CommandError
    from voicenode_tools.reference import nn

    if args.cutoff is not None and not 0 < args.cutoff <= 1:
        raise CommandError("--cutoff must be in (0, 1]")
    try:
        pcm = load_16k(args.file)
    except AudioError as e:
        raise CommandError(str(e)) from None
    folder, words, paths = _model_paths(args)
    cutoffs = {w: args.cutoff for w in words} if args.cutoff is not None else {}
    commands = None
    if not args.no_commands and args.commands:
        if (folder / f"{args.commands}.json").is_file():
            commands = args.commands
        elif args.commands != DEFAULT_COMMANDS:
            raise CommandError(f"no command model {folder / args.commands}.json")
    if args.sim:
        if args.scores:
            raise CommandError(
                "--scores runs on the host reference; the firmware prints only events"
            )
        from voicenode_tools.sim.listen import listen_on_virtual_board

        events = listen_on_virtual_board(pcm, words, cutoffs, models=folder, commands=commands)
    else:
        import numpy as np

        from voicenode_tools.reference import commands as rc
        from voicenode_tools.reference import node
        from voicenode_tools.sim.listen import TAIL_S

        # the silence the virtual board's microphone hears after the recording, here too
        heard = np.concatenate([pcm, np.zeros(int(TAIL_S * 16000), np.int16)])
        try:
            cmd_model = rc.load(folder / commands) if commands else None
            events = node.events(
                heard,
                paths,
                default=paths[0],
                cutoffs=cutoffs,
                scores=args.scores,
                microphone=True,
                commands=cmd_model,
            )
        except (nn.ModelFormatError, rc.CommandModelError) as e:
            raise CommandError(str(e)) from None
    for ev in events:
        _print(ev)
    sys.stdout.flush()
    return 0
