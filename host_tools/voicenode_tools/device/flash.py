"""Writing a stock MicroPython firmware to an ESP32-S3 with esptool (used as a library).

`check_image(path)` refuses a file that is missing, truncated or built for another chip,
before anything touches the board; `flash(...)` connects, refuses a chip that is not an
ESP32-S3, optionally erases, and writes the image at 0x0 with verification.

The file is the "combined" image from https://micropython.org/download/ESP32_GENERIC_S3/
(bootloader at 0x0, partition table at 0x8000, the app at 0x10000): the bootloader and the
app each start with an ESP image header (magic 0xE9) whose extended header names the chip
(ESP32-S3 = 9), and the app's segments must all fit in the file.
"""

from __future__ import annotations

import contextlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from voicenode_tools.cli import CommandError

from . import ports

DOWNLOAD_URL = "https://micropython.org/download/ESP32_GENERIC_S3/"
ESP_IMAGE_MAGIC = 0xE9
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_MAGIC = b"\xaa\x50"
#: Chip ids of the ESP image extended header (esptool's IMAGE_CHIP_ID).
CHIP_IDS = {
    0: "ESP32",
    2: "ESP32-S2",
    5: "ESP32-C3",
    9: "ESP32-S3",
    12: "ESP32-C2",
    13: "ESP32-C6",
    16: "ESP32-H2",
}
S3_CHIP_ID = 9
#: A MicroPython ESP32-S3 firmware is ~1.5 MB; anything under this is not one.
MIN_SIZE = 0x10000 + 64 * 1024
MAX_SIZE = 32 * 1024 * 1024


@dataclass
class ImageInfo:
    path: Path
    size: int
    chip: str
    app_offset: int
    app_end: int


def _image_header(data: bytes, offset: int, what: str, path: Path) -> tuple[int, int]:
    """(segment count, chip id) of the ESP image header at `offset`."""
    if len(data) < offset + 24:
        raise CommandError(f"{path} is truncated: no {what} image header at {offset:#x}")
    if data[offset] != ESP_IMAGE_MAGIC:
        raise CommandError(
            f"{path} is not an ESP firmware image: the {what} at {offset:#x} starts with "
            f"{data[offset]:#04x}, not {ESP_IMAGE_MAGIC:#04x}. Use the .bin for "
            f"ESP32_GENERIC_S3 from {DOWNLOAD_URL}"
        )
    segments = data[offset + 1]
    (chip_id,) = struct.unpack_from("<H", data, offset + 12)
    return segments, chip_id


def _first_app_offset(data: bytes) -> int:
    for i in range(PARTITION_TABLE_OFFSET, PARTITION_TABLE_OFFSET + 0xC00, 32):
        entry = data[i : i + 32]
        if len(entry) < 32 or entry[:2] != PARTITION_MAGIC:
            break
        ptype, _sub, offset = entry[2], entry[3], struct.unpack_from("<I", entry, 4)[0]
        if ptype == 0:  # app
            return offset
    return 0x10000


def check_image(path) -> ImageInfo:
    """Check a firmware file before flashing it.

    Raises:
        CommandError: missing file (with where to get one), too small or truncated, not an
            ESP image, or built for a chip other than the ESP32-S3.
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(
            f"firmware file {path} not found. Download the ESP32-S3 MicroPython firmware "
            f"(.bin) from {DOWNLOAD_URL} and pass it with --firmware (nothing is downloaded "
            "automatically)"
        )
    data = path.read_bytes()
    size = len(data)
    if size > MAX_SIZE:
        raise CommandError(f"{path} is {size} bytes: larger than any ESP32-S3 flash")
    _segments, chip_id = _image_header(data, 0, "bootloader", path)
    if chip_id != S3_CHIP_ID:
        chip = CHIP_IDS.get(chip_id, f"chip id {chip_id}")
        raise CommandError(
            f"{path} is a firmware for the {chip}, not the ESP32-S3: download the "
            f"ESP32_GENERIC_S3 build from {DOWNLOAD_URL}"
        )
    if size < MIN_SIZE:
        raise CommandError(
            f"{path} is truncated ({size} bytes; a MicroPython ESP32-S3 firmware is about "
            f"1.5 MB): download it again from {DOWNLOAD_URL}"
        )
    app = _first_app_offset(data)
    segments, app_chip = _image_header(data, app, "application", path)
    if app_chip != S3_CHIP_ID:
        raise CommandError(f"{path}: the application at {app:#x} is not built for the ESP32-S3")
    pos = app + 24
    for n in range(segments):
        if pos + 8 > size:
            raise CommandError(f"{path} is truncated in segment {n} of the application")
        _addr, length = struct.unpack_from("<II", data, pos)
        pos += 8 + length
        if pos > size:
            raise CommandError(
                f"{path} is truncated: the application's segment {n} ends at {pos:#x}, "
                f"past the end of the file ({size:#x}). Download it again from {DOWNLOAD_URL}"
            )
    return ImageInfo(path, size, "ESP32-S3", app, pos)


def flash(
    port,
    firmware,
    erase: bool = False,
    baud: int = 460800,
    before: str = "default-reset",
    no_stub: bool = False,
    log=print,
    attempts: int = 3,
) -> ImageInfo:
    """Write `firmware` at 0x0 on the ESP32-S3 on `port`, with verification.

    Args:
        port: a port path or `None`/`"auto"` (not `"sim"`: the virtual board has no ROM).
        firmware: the .bin file.
        erase: erase the whole flash first (loses the filesystem and the installed app).
        baud: the speed for writing (esptool starts at 115200 and switches).
        before: esptool's reset mode ("default-reset", "usb-reset", "no-reset").
        no_stub: talk to the ROM loader only (slower; for boards where the stub fails).
        log: where progress lines go.
        attempts: esptool connection attempts.

    Raises:
        CommandError: every user-facing failure (see `check_image` and the messages below).
    """
    info = check_image(firmware)
    if port == "sim":
        raise CommandError("the virtual board has no ROM bootloader to flash: use a real port")
    path = ports.resolve(port)
    ports.check_free(path)

    import esptool
    from esptool import cmds

    out = io.StringIO()
    esp = None
    try:
        with contextlib.redirect_stdout(out):
            esp = cmds.detect_chip(path, 115200, before, connect_attempts=attempts)
        chip = esp.CHIP_NAME
        if chip != "ESP32-S3":
            raise CommandError(
                f"the chip on {path} is an {chip}, not an ESP32-S3: this firmware and this "
                "project need an ESP32-S3 (check the board, or the port)"
            )
        log(f"found {chip} on {path}")
        with contextlib.redirect_stdout(out):
            if not no_stub:
                esp = cmds.run_stub(esp)
            if baud and baud != 115200:
                esp.change_baud(baud)
            cmds.attach_flash(esp)
        if erase:
            log("erasing the flash (the filesystem and the installed app go too)")
            with contextlib.redirect_stdout(out):
                cmds.erase_flash(esp)
        log(f"writing {info.path.name} ({info.size} bytes) at 0x0 with verification")
        with contextlib.redirect_stdout(out):
            cmds.write_flash(esp, [(0, str(info.path))], no_progress=True)
            cmds.reset_chip(esp, "hard-reset")
    except esptool.FatalError as e:
        raise CommandError(_explain_esptool(path, e)) from e
    except OSError as e:  # serial errors are OSErrors
        raise CommandError(f"the board on {path} stopped answering while flashing ({e})") from e
    finally:
        if esp is not None:
            with contextlib.suppress(Exception):
                esp._port.close()
    log("done: the board runs the new firmware; next: voicenode deploy")
    return info


def _explain_esptool(path: str, e: Exception) -> str:
    text = str(e).strip()
    low = text.lower()
    if "failed to connect" in low or "no serial data received" in low:
        return (
            f"no ESP ROM bootloader answers on {path}: hold BOOT, tap RESET, release BOOT "
            f"and retry (esptool: {text.splitlines()[0]})"
        )
    if "md5" in low or "verify" in low:
        return f"verification failed after writing to {path}: {text.splitlines()[0]}"
    return f"esptool on {path}: {text.splitlines()[0]}"
