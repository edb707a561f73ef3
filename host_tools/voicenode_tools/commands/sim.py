"""`voicenode sim`: run the virtual board until Ctrl-C / SIGTERM.

Prints `virtual board on /dev/pts/N` (one line); connect with
`mpremote connect /dev/pts/N ...` or `voicenode repl --port /dev/pts/N`.
"""


def add_arguments(parser):
    parser.add_argument(
        "--flash",
        default=None,
        help="flash image file (default ~/.cache/voicenode/sim/flash.img; created and "
        "formatted on first use)",
    )
    parser.add_argument(
        "--mic",
        default=None,
        help="what the microphone hears: a WAV file, fifo:PATH or tcp:HOST:PORT "
        "(raw s16le mono or WAV); silence when omitted or ended",
    )
    parser.add_argument(
        "--fast", action="store_true", help="deliver microphone audio as fast as it is read"
    )
    parser.add_argument("--heapsize", default="256k", help="MicroPython heap (default 256k)")
    parser.add_argument("--verbose", "-v", action="store_true", help="log reboots to stderr")


def run(args) -> int:
    import signal
    import sys
    import threading

    from voicenode_tools.cli import CommandError
    from voicenode_tools.sim.board import VirtualBoard
    from voicenode_tools.sim.mic import MicError, open_source
    from voicenode_tools.sim.supervisor import default_flash_image

    if args.mic and not args.mic.startswith(("fifo:", "tcp:")):
        try:
            open_source(args.mic).close()  # a bad WAV fails here, not inside the board
        except MicError as e:
            raise CommandError(str(e)) from None
    board = VirtualBoard(
        args.flash or default_flash_image(),
        mic=args.mic,
        realtime=not args.fast,
        heapsize=args.heapsize,
    )
    if args.verbose:
        board.log = lambda msg: print(f"[sim] {msg}", file=sys.stderr, flush=True)
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            port = board.start()
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            raise CommandError(str(e)) from None
        print(f"virtual board on {port}", flush=True)
        print(
            f"  flash {board.flash_image}; try: mpremote connect {port} repl   (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        while not done.wait(0.5):
            if not board.running:
                print(f"virtual board {board.state}", file=sys.stderr)
                return 1
    finally:
        board.stop()
        for s, h in old.items():
            signal.signal(s, h)
    print("virtual board stopped", file=sys.stderr, flush=True)
    return 0
