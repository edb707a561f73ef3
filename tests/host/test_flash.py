"""`voicenode flash`: the firmware file checks, and esptool against a ROM loader on a pty."""

import hashlib
import os
import pty
import select
import struct
import threading
import time
import tty
import zlib

import pytest
import serial

from voicenode_tools.cli import CommandError, main
from voicenode_tools.device import flash

SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
MEM_END = 0x06
DEFL_BEGIN, DEFL_DATA, ERASE_FLASH = 0x10, 0x11, 0xD0
SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUD, MD5, SEC_INFO = 0x0B, 0x0D, 0x0F, 0x13, 0x14
ESP32_MAGIC = 0x00F01D83
SPI_BASE, SPI_CMD_USR = 0x60002000, 1 << 18  # ESP32-S3 SPI_REG_BASE, "user command" bit
# RDID: GigaDevice 8 MB; RDSFDP: the "SFDP" signature
SPI_REPLIES = {0x9F: 0x1740C8, 0x5A: 0x50444653}


class FakeRom:
    """An ESP ROM serial loader on a pty: SLIP frames in, SLIP frames out.

    It stands in for the chip (not for esptool, which runs unmodified): it answers SYNC,
    reports an ESP32-S3 through GET_SECURITY_INFO (chip id 9) or, as an ESP32 ROM does,
    rejects that command and answers the chip-magic register read with 0x00F01D83; it
    runs SPI flash commands written to the SPI registers (RDID, RDSFDP), "runs" the flasher
    stub esptool uploads (MEM_END, then "OHAI"), and keeps an 8 MB flash that FLASH_DATA,
    compressed FLASH_DEFL_DATA and ERASE_FLASH change and SPI_FLASH_MD5 hashes.
    """

    def __init__(self, chip="esp32s3", flash_size=8 << 20):
        self.chip = chip
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.flash = bytearray(b"\xff" * flash_size)
        self.regs = {}
        self.log = []
        self._write = None
        self.stub = False  # True once esptool's flasher stub "runs"
        self.corrupt = False  # flip a bit in every write (a failing flash)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self._stop = True
        self.thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _send(self, op, val=0, data=b"", status=None):
        if status is None:
            status = b"\0\0" if self.stub else b"\0\0\0\0"
        self._frame(struct.pack("<BBHI", 1, op, len(data) + len(status), val) + data + status)

    def _frame(self, body):
        esc = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(self.master, b"\xc0" + esc + b"\xc0")

    def _serve(self):
        buf = b""
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            buf += chunk
            while True:
                start = buf.find(b"\xc0")
                if start < 0:
                    buf = b""
                    break
                end = buf.find(b"\xc0", start + 1)
                if end < 0:
                    buf = buf[start:]
                    break
                frame = buf[start + 1 : end]
                buf = buf[end:]
                if not frame:
                    continue
                frame = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
                if len(frame) >= 8:
                    self._handle(frame)

    def _store(self, pos, payload):
        self.flash[pos : pos + len(payload)] = payload
        if self.corrupt and payload:
            self.flash[pos] ^= 1

    def _handle(self, frame):
        _d, op, size, chk = struct.unpack_from("<BBHI", frame)
        data = frame[8 : 8 + size]
        self.log.append(op)
        if op == SYNC:
            for _ in range(8):
                self._send(op, val=0x20120707)
        elif op == READ_REG:
            (addr,) = struct.unpack("<I", data[:4])
            if addr == 0x40001000:
                val = ESP32_MAGIC if self.chip == "esp32" else 0
            else:
                val = self.regs.get(addr, 0)
            self._send(op, val=val)
        elif op == WRITE_REG:
            addr, value = struct.unpack_from("<II", data)
            if addr == SPI_BASE and value & SPI_CMD_USR:  # run a SPI flash command at once
                command = self.regs.get(SPI_BASE + 0x20, 0) & 0xFF
                self.regs[SPI_BASE + 0x58] = SPI_REPLIES.get(command, 0)
                value &= ~SPI_CMD_USR
            self.regs[addr] = value
            self._send(op)
        elif op == SEC_INFO:
            if self.chip == "esp32":
                self._send(op, status=b"\x01\x05\0\0")  # invalid command
            else:
                info = struct.pack("<IB7sII", 0, 0, bytes(7), 9, 0)
                self._send(op, data=info)
        elif op == FLASH_BEGIN:
            erase, blocks, blocksize, offset = struct.unpack_from("<IIII", data)
            self._write = [offset, blocksize]
            self._send(op)
        elif op == FLASH_DATA:
            length, seq = struct.unpack_from("<II", data)
            offset, blocksize = self._write
            payload = data[16 : 16 + length]
            pos = offset + seq * blocksize
            self._store(pos, payload)
            self._send(op)
        elif op == MEM_END:
            self._send(op)
            self.stub = True
            self._frame(b"OHAI")
        elif op == ERASE_FLASH:
            self.flash[:] = b"\xff" * len(self.flash)
            self._send(op)
        elif op == DEFL_BEGIN:
            _size, _blocks, _blocksize, offset = struct.unpack_from("<IIII", data)
            self._write = [offset, zlib.decompressobj()]
            self._send(op)
        elif op == DEFL_DATA:
            (length,) = struct.unpack_from("<I", data)
            out = self._write[1].decompress(data[16 : 16 + length])
            self._store(self._write[0], out)
            self._write[0] += len(out)
            self._send(op)
        elif op == MD5:
            addr, size = struct.unpack_from("<II", data)
            md5 = hashlib.md5(self.flash[addr : addr + size])
            digest = md5.digest() if self.stub else md5.hexdigest().encode()
            self._send(op, data=digest)
        else:  # FLASH_END, SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUD, ...
            self._send(op)


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


@pytest.fixture
def rom_s3():
    rom = FakeRom("esp32s3")
    yield rom
    rom.close()


def test_flash_writes_and_verifies_through_the_stub(tmp_path, rom_s3, capsys):
    data = firmware_bytes()
    path = write(tmp_path, data)
    rom_s3.flash[0x300000] = 0x42  # the filesystem region: kept without --erase
    assert main(["flash", "--port", rom_s3.port, "--firmware", str(path)]) == 0
    assert bytes(rom_s3.flash[: len(data)]) == data
    assert rom_s3.flash[0x300000] == 0x42
    assert rom_s3.stub  # esptool uploaded and "ran" its stub, then wrote compressed
    out = capsys.readouterr().out
    assert "found ESP32-S3" in out and "done" in out


def test_flash_with_erase_and_rom_only(tmp_path, rom_s3):
    data = firmware_bytes()
    rom_s3.flash[0x300000] = 0x42
    flash.flash(rom_s3.port, write(tmp_path, data), erase=True, log=lambda s: None)
    assert rom_s3.flash[0x300000] == 0xFF  # erased
    assert bytes(rom_s3.flash[: len(data)]) == data

    other = FakeRom("esp32s3")
    try:
        flash.flash(
            other.port, write(tmp_path, data), no_stub=True, before="no-reset", log=lambda s: None
        )
        assert not other.stub
        assert bytes(other.flash[: len(data)]) == data
    finally:
        other.close()


def test_flash_refuses_a_chip_that_is_not_an_s3(tmp_path, capsys):
    rom = FakeRom("esp32")
    try:
        path = write(tmp_path, firmware_bytes())
        assert main(["flash", "--port", rom.port, "--firmware", str(path)]) == 1
        assert f"the chip on {rom.port} is an ESP32, not an ESP32-S3" in capsys.readouterr().err
        assert rom.flash[:16] == b"\xff" * 16  # nothing written
    finally:
        rom.close()


def test_flash_busy_port(tmp_path, rom_s3):
    holder = serial.Serial(rom_s3.port, exclusive=True)
    try:
        with pytest.raises(CommandError, match="is busy"):
            flash.flash(rom_s3.port, write(tmp_path, firmware_bytes()))
    finally:
        holder.close()
    assert rom_s3.log == []  # esptool never talked to the chip


def test_flash_missing_port(tmp_path):
    with pytest.raises(CommandError, match="no such port /dev/ttyACM96"):
        flash.flash("/dev/ttyACM96", write(tmp_path, firmware_bytes()))


def test_flash_failing_verification_is_reported(tmp_path, rom_s3):
    rom_s3.corrupt = True  # the flash keeps a flipped bit in every block
    with pytest.raises(CommandError, match="verification failed"):
        flash.flash(rom_s3.port, write(tmp_path, firmware_bytes()), log=lambda s: None)


def test_flash_no_bootloader_answering(tmp_path):
    master, slave = pty.openpty()  # a port where nothing answers (app running, not in ROM)
    try:
        t = time.monotonic()
        with pytest.raises(CommandError, match="no ESP ROM bootloader answers"):
            flash.flash(os.ttyname(slave), write(tmp_path, firmware_bytes()), attempts=1)
        assert time.monotonic() - t < 30
    finally:
        os.close(master)
        os.close(slave)


def test_flash_without_any_board_plugged_in(tmp_path, monkeypatch, capsys):
    import serial.tools.list_ports

    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [])
    path = write(tmp_path, firmware_bytes())
    assert main(["flash", "--firmware", str(path)]) == 1
    assert "no board found" in capsys.readouterr().err
