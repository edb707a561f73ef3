"""`voicenode flash`: write a stock MicroPython ESP32-S3 firmware (.bin) with esptool."""


def add_arguments(parser):
    parser.add_argument("--port", "-p", default=None, help="serial port (default: auto-detect)")
    parser.add_argument(
        "--firmware",
        required=True,
        help="the ESP32_GENERIC_S3 .bin from https://micropython.org/download/ESP32_GENERIC_S3/",
    )
    parser.add_argument("--erase", action="store_true", help="erase the whole flash first")
    parser.add_argument("--baud", type=int, default=460800, help="write speed (default 460800)")
    parser.add_argument(
        "--before",
        default="default-reset",
        choices=["default-reset", "usb-reset", "no-reset"],
        help="how esptool resets the chip into its bootloader",
    )
    parser.add_argument("--no-stub", action="store_true", help="use the ROM loader only (slower)")


def run(args) -> int:
    from voicenode_tools.device import flash

    flash.flash(
        args.port,
        args.firmware,
        erase=args.erase,
        baud=args.baud,
        before=args.before,
        no_stub=args.no_stub,
    )
    return 0
