"""`voicenode demo`: the virtual board running the firmware on the shipped demo recording."""


def add_arguments(parser):
    parser.add_argument("--wav", help="another recording for the virtual board's microphone")
    parser.add_argument("--board", help="board definition to deploy (default: the reference board)")
    parser.add_argument(
        "--fast", action="store_true", help="play the recording as fast as the node takes it"
    )


def run(args):
    from pathlib import Path

    from voicenode_tools.audio import AudioError
    from voicenode_tools.cli import CommandError
    from voicenode_tools.demo import DEMO_WAV, run_demo

    wav = Path(args.wav) if args.wav else DEMO_WAV
    if not wav.is_file():
        raise CommandError(f"no such recording: {wav}")
    try:
        events = run_demo(wav, board=args.board, realtime=not args.fast)
    except AudioError as e:
        raise CommandError(str(e)) from None
    return 0 if events else 1
