"""`voicenode repl`: mpremote's interactive REPL on the board (Ctrl-] or Ctrl-x to leave)."""


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )


def run(args) -> int:
    import subprocess
    import sys

    from voicenode_tools.device import ports

    with ports.session(args.port, args.flash) as path:
        ports.check_free(path)
        # mpremote owns the terminal for the session; the virtual board (if any) lives on in
        # this process until it returns.
        return subprocess.call([sys.executable, "-m", "mpremote", "connect", path, "repl"])
