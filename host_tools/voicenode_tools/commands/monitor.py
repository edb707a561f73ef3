"""`voicenode monitor`: print the node's events (the JSON lines on its console), one per line."""


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--reset",
        action="store_true",
        help="soft-reset the board first (shows the boot; always with --port sim, a board"
        " that has just started)",
    )


def run(args) -> int:
    import sys

    from voicenode_tools.device import monitor, ports

    def note(text):
        sys.stderr.write(f"voicenode monitor: {text}\n")
        sys.stderr.flush()

    # A virtual board is started by this command: reset it so that its boot shows, as a
    # board just plugged in would.
    reset = args.reset or args.port == "sim"
    with ports.session(args.port, args.flash) as path:
        for line in monitor.events(path, seconds=args.seconds, reset=reset, notes=note):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    return 0
