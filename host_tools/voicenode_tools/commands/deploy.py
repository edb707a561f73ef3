"""`voicenode deploy`: compile the firmware to .mpy and install it atomically on the board."""

from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port, 'auto' (default) or 'sim'")
    parser.add_argument(
        "--board",
        default=None,
        help="board whose files are deployed (default ESP32_S3_DEVKITC_INMP441; 'none': none)",
    )
    parser.add_argument("--arch", default=None, help="mpy-cross -march (default: ask the board)")
    parser.add_argument(
        "--source", type=Path, default=None, help="firmware tree (default firmware/)"
    )
    parser.add_argument(
        "--models",
        default=None,
        help="folder of models installed in the app's models/ (default models/; 'none': none)",
    )
    parser.add_argument(
        "--flash", default=None, help="with --port sim: the virtual board's flash image"
    )
    parser.add_argument(
        "--no-reset", action="store_true", help="do not soft-reset the board afterwards"
    )


def run(args) -> int:
    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools.device import build, deploy, ports

    models = None if args.models == "none" else Path(args.models or build.MODELS_DIR)

    with ports.session(args.port, args.flash) as path:
        report = deploy.deploy(
            path,
            board=None if args.board == "none" else (args.board or deploy.DEFAULT_BOARD),
            arch=args.arch,
            source=args.source or FIRMWARE_DIR,
            reset=not args.no_reset,
            models=models,
        )
    print(report.summary())
    return 0
