"""`python -m voicenode_tools.sim [--flash IMG] [--mic SRC] [--fast] [--heapsize N]`."""

import argparse
import sys

from voicenode_tools.cli import CommandError
from voicenode_tools.commands import sim


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicenode_tools.sim", description=sim.__doc__)
    sim.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return sim.run(args)
    except CommandError as e:
        print(f"voicenode sim: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
