"""`voicenode monitor`: print the node's events (the JSON lines on its console), one per line."""


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--reset", action="store_true", help="soft-reset the board first (shows the boot)"
    )


def run(args) -> int:
    import sys

    from voicenode_tools.device import monitor, ports

    with ports.session(args.port, args.flash) as path:
        for line in monitor.events(path, seconds=args.seconds, reset=args.reset):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    return 0
