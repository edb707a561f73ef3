"""`voicenode flash`: the firmware file checks, and esptool against a ROM loader on a pty."""

import struct

import pytest

from voicenode_tools.cli import CommandError, main
from voicenode_tools.device import flash


def esp_image(chip_id, segments):
    """An ESP image: 8-byte header, 16-byte extended header (chip id at 12), segments."""
    head = struct.pack("<BBBBI", 0xE9, len(segments), 2, 0x20, 0x40378000)
    ext = struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", chip_id, 0, 0, 0xFFFF, b"\0" * 4, 1)
    body = b"".join(struct.pack("<II", 0x3FC90000 + i, len(s)) + s for i, s in enumerate(segments))
    return head + ext + body


def firmware_bytes(chip_id=9, app_size=200_000):
    """The layout of micropython.org's combined ESP32_GENERIC_S3 .bin, with random-ish data."""
    data = bytearray(b"\xff" * 0x10000)
    boot = esp_image(chip_id, [bytes(range(256)) * 40])
    data[: len(boot)] = boot
    entry = struct.pack("<2sBBII16sI", b"\xaa\x50", 0, 0, 0x10000, 0x1F0000, b"factory", 0)
    data[0x8000 : 0x8000 + 32] = entry
    half = app_size // 2
    app = esp_image(chip_id, [bytes([i % 251 for i in range(half)]), bytes(app_size - half)])
    return bytes(data) + app


def write(tmp_path, data, name="fw.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_good_image_passes(tmp_path):
    info = flash.check_image(write(tmp_path, firmware_bytes()))
    assert info.chip == "ESP32-S3"
    assert info.app_offset == 0x10000
    assert info.app_end == info.size


def test_missing_file_says_where_to_get_the_firmware(tmp_path, capsys):
    with pytest.raises(CommandError, match="micropython.org/download/ESP32_GENERIC_S3"):
        flash.check_image(tmp_path / "nope.bin")
    assert main(["flash", "--port", "/dev/null", "--firmware", str(tmp_path / "nope.bin")]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "ESP32_GENERIC_S3" in err


def test_truncated_file_is_refused(tmp_path):
    good = firmware_bytes()
    for cut in (10, 0x9000, len(good) - 1000):
        with pytest.raises(CommandError, match="truncated"):
            flash.check_image(write(tmp_path, good[:cut]))


def test_not_an_esp_image_is_refused(tmp_path):
    with pytest.raises(CommandError, match="not an ESP firmware image"):
        flash.check_image(write(tmp_path, b"PK\x03\x04" + bytes(300_000)))  # a zip


def test_image_for_another_chip_is_refused(tmp_path, capsys):
    path = write(tmp_path, firmware_bytes(chip_id=0))  # an ESP32 (not S3) build
    with pytest.raises(CommandError, match="for the ESP32, not the ESP32-S3"):
        flash.check_image(path)
    assert main(["flash", "--port", "/dev/null", "--firmware", str(path)]) == 1
    assert "not the ESP32-S3" in capsys.readouterr().err


def test_flash_refuses_the_virtual_board(tmp_path):
    with pytest.raises(CommandError, match="no ROM bootloader"):
        flash.flash("sim", write(tmp_path, firmware_bytes()))
