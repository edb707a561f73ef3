"""The `voicenode` command: one table of subcommands, like mpremote's.

Each entry names the module that implements the command. A command module provides
`add_arguments(parser)` and `run(args) -> int`. Command modules keep heavy imports (numpy,
torch, mpremote) inside `run`, so `voicenode --help` stays fast and a missing optional extra
only affects its own command.
"""

import argparse
import importlib
import sys

from . import __version__

# name: (module, one-line help)
# fmt: off
_COMMANDS = {
    "demo": ("voicenode_tools.commands.demo", "the virtual board running the firmware on the demo recording"),
    "flash": ("voicenode_tools.commands.flash", "write a stock MicroPython firmware to an ESP32-S3 (esptool)"),
    "deploy": ("voicenode_tools.commands.deploy", "compile the firmware to .mpy and install it atomically"),
    "repl": ("voicenode_tools.commands.repl", "interactive REPL on the board (mpremote)"),
    "monitor": ("voicenode_tools.commands.monitor", "print the node's events, one JSON line each"),
    "status": ("voicenode_tools.commands.status", "print voicenode.status() from the node"),
    "sim": ("voicenode_tools.commands.sim", "run the virtual board (MicroPython Unix port on a pty)"),
    "features": ("voicenode_tools.commands.features", "front-end feature bytes of a WAV (reference, or --sim: the firmware)"),
    "boards": ("voicenode_tools.commands.boards", "list, check and generate board definitions; draw wiring"),
    "train-wakeword": ("voicenode_tools.commands.train_wakeword", "train a wake-word model from text (synthesized speech, CPU)"),
    "train-commands": ("voicenode_tools.commands.train_commands", "train the on-chip command model from a command-set file (synthesized speech, CPU)"),
    "listen": ("voicenode_tools.commands.listen", "the node's events for a WAV file (reference, or --sim: the firmware)"),
    "bench": ("voicenode_tools.commands.bench", "run a benchmark (frontend, nn, wakeword, commands, deploy, sim)"),
    "hil": ("voicenode_tools.commands.hil", "hardware-in-the-loop suite and soak (a real board or --port sim)"),
    "secrets": ("voicenode_tools.commands.secrets", "write the Wi-Fi and MQTT broker secrets to /secrets.json on the node"),
}
# fmt: on


class CommandError(Exception):
    """An error meant for the user: printed as one clear line, exit status 1."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="voicenode", description="The private voice node's host tools."
    )
    parser.add_argument("--version", action="version", version=f"voicenode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return module.run(args) or 0
    except CommandError as e:
        print(f"voicenode {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m voicenode_tools.cli`: run the imported module's main, so that the
    # CommandError the commands raise is the class main() catches (not __main__'s copy).
    from voicenode_tools.cli import main as _main

    sys.exit(_main())
