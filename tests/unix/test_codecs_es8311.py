"""The ES8311 driver (ADC path) on the MicroPython Unix port, against a recording bus.

Expected: Espressif's esp-adf bring-up (components/audio_hal/driver/es8311/es8311.c):
es8311_codec_init (slave, MCLK from SCLK) -> es8311_codec_config_i2s (24-bit, I2S normal)
-> es8311_start(ES_MODULE_ADC), at 16 kHz with coeff_div row
{4096000, 16000, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0xff, 0x04, 0x10, 0x10}. One deliberate
difference: esp-adf sets the SCLK multiplier to x8 (BCLK = 32 x LRCK); MicroPython clocks
64 x LRCK, so the driver uses x4 (REG02 = 0x10 instead of 0x18). `esp_adf_model` replays
esp-adf literally with that multiplier and the final register files must agree.
"""

import json

import pytest
from test_hal import run_hal

EXPECTED = [
    # es8311_codec_init
    [0x01, 0x30],
    [0x02, 0x00],
    [0x03, 0x10],
    [0x16, 0x24],
    [0x04, 0x10],
    [0x05, 0x00],
    [0x0B, 0x00],
    [0x0C, 0x00],
    [0x10, 0x1F],
    [0x11, 0x7F],
    [0x00, 0x80],
    [0x00, 0x80],  # reset, then slave (bit 6 clear)
    [0x01, 0x3F],
    [0x01, 0xBF],  # clocks on; MCLK from SCLK
    [0x02, 0x10],  # pre_div 1, multiplier x4
    [0x05, 0x00],
    [0x03, 0x10],
    [0x04, 0x10],
    [0x07, 0x00],
    [0x08, 0xFF],
    [0x06, 0x03],
    [0x01, 0xBF],
    [0x06, 0x03],  # MCLK, SCLK not inverted
    [0x13, 0x10],
    [0x1B, 0x0A],
    [0x1C, 0x6A],
    # es8311_set_bits_per_sample(24) + es8311_config_fmt(I2S normal), ADC port
    [0x0A, 0x00],
    [0x0A, 0x00],
    # es8311_start(ES_MODULE_ADC)
    [0x09, 0x40],
    [0x0A, 0x00],
    [0x32, 0xBF],
    [0x17, 0xBF],
    [0x0E, 0x02],
    [0x12, 0x00],
    [0x14, 0x1A],
    [0x0D, 0x01],
    [0x15, 0x40],
    [0x37, 0x48],
    [0x45, 0x00],
]


def esp_adf_model(datmp=2):
    r = [0] * 256

    def w(reg, v):
        r[reg] = v & 0xFF

    for reg, v in (
        (0x01, 0x30),
        (0x02, 0x00),
        (0x03, 0x10),
        (0x16, 0x24),
        (0x04, 0x10),
        (0x05, 0x00),
        (0x0B, 0x00),
        (0x0C, 0x00),
        (0x10, 0x1F),
        (0x11, 0x7F),
        (0x00, 0x80),
    ):
        w(reg, v)
    w(0x00, r[0x00] & 0xBF)  # slave
    w(0x01, 0x3F)
    w(0x01, r[0x01] | 0x80)  # FROM_SCLK_PIN
    pre_div, adc_div, dac_div, fs_mode, lrck_h, lrck_l, bclk_div, adc_osr, dac_osr = (
        0x01,
        0x01,
        0x01,
        0x00,
        0x00,
        0xFF,
        0x04,
        0x10,
        0x10,
    )
    w(0x02, (r[0x02] & 0x07) | ((pre_div - 1) << 5) | (datmp << 3))
    w(0x05, ((adc_div - 1) << 4) | (dac_div - 1))
    w(0x03, (r[0x03] & 0x80) | (fs_mode << 6) | adc_osr)
    w(0x04, (r[0x04] & 0x80) | dac_osr)
    w(0x07, (r[0x07] & 0xC0) | lrck_h)
    w(0x08, lrck_l)
    w(0x06, (r[0x06] & 0xE0) | (bclk_div - 1))
    w(0x01, r[0x01] & ~0x40)
    w(0x06, r[0x06] & ~0x20)
    for reg, v in ((0x13, 0x10), (0x1B, 0x0A), (0x1C, 0x6A)):
        w(reg, v)
    # config_i2s: 24 bits leaves the word length alone; I2S normal clears the format bits
    w(0x09, r[0x09])
    w(0x0A, r[0x0A])
    w(0x09, r[0x09] & 0xFC)
    w(0x0A, r[0x0A] & 0xFC)
    # start(ADC)
    dac = (r[0x09] & 0xBF) | 0x40
    adc = ((r[0x0A] & 0xBF) | 0x40) & ~0x40
    w(0x09, dac)
    w(0x0A, adc)
    for reg, v in ((0x32, 0xBF), (0x17, 0xBF), (0x0E, 0x02), (0x12, 0x00), (0x14, 0x1A)):
        w(reg, v)
    w(0x14, r[0x14] & ~0x40)  # not a digital mic
    for reg, v in ((0x0D, 0x01), (0x15, 0x40), (0x37, 0x48), (0x45, 0x00)):
        w(reg, v)
    return r


SETUP = """
import json, machine
from voicenode.hal.codecs.bus import BusAdapter
from voicenode.hal.codecs.es8311 import ES8311
machine.I2C.devices[0x18] = bytearray(256)
i2c = machine.I2C(0, scl=machine.Pin(39), sda=machine.Pin(38), freq=100000)
dev = ES8311(BusAdapter(i2c), 0x18)
machine.log.clear()
"""

BOARD = "M5STACK_ATOMS3R_ECHO_BASE"


def test_setup_writes_the_esp_adf_sequence(tmp_path):
    code = (
        SETUP
        + """
dev.setup(rate=16000, mclk=None, bits=24, mics=(1,), gain_db=24)
print(json.dumps({"w": [e[2:] for e in machine.log if e[0] == "w"],
                  "regs": list(machine.I2C.devices[0x18])}))
"""
    )
    out = json.loads(run_hal(tmp_path, BOARD, code))
    assert out["w"] == EXPECTED
    assert out["regs"] == esp_adf_model()


def test_mclk_pin_clocking_uses_multiplier_one(tmp_path):
    code = (
        SETUP
        + """
dev.setup(rate=16000, mclk=4096000)
r = machine.I2C.devices[0x18]
print(json.dumps([r[0x01], r[0x02]]))
"""
    )
    # REG01 bit 7 clear (MCLK pin), REG02 multiplier code 0 (x1)
    assert json.loads(run_hal(tmp_path, BOARD, code)) == [0x3F, 0x00]


def test_stop_suspends(tmp_path):
    code = (
        SETUP
        + """
dev.setup()
machine.log.clear()
dev.stop()
print(json.dumps([e[2:] for e in machine.log if e[0] == "w"]))
"""
    )
    assert json.loads(run_hal(tmp_path, BOARD, code)) == [
        [0x32, 0x00],
        [0x17, 0x00],
        [0x0E, 0xFF],
        [0x12, 0x02],
        [0x14, 0x00],
        [0x0D, 0xFA],
        [0x15, 0x00],
        [0x37, 0x08],
        [0x45, 0x01],
    ]


@pytest.mark.parametrize(
    "call,message",
    [
        ("dev.setup(rate=44100)", "no clock coefficients"),
        ("dev.setup(gain_db=20)", "6 dB steps"),
        ("dev.setup(bits=20)", "unsupported"),
        ("dev.setup(mics=(1, 2))", "unsupported"),
        ("dev.setup(mclk=1000000)", "unsupported"),
    ],
)
def test_bad_settings_are_refused_before_any_write(tmp_path, call, message):
    code = (
        SETUP
        + f"""
try:
    {call}
    print(json.dumps(["no error", 0]))
except ValueError as e:
    print(json.dumps([str(e), len([x for x in machine.log if x[0] == "w"])]))
"""
    )
    msg, writes = json.loads(run_hal(tmp_path, BOARD, code))
    assert message in msg
    assert writes == 0


def test_hal_sets_up_the_echo_base_without_mclk(tmp_path):
    code = """
import json, machine
machine.I2C.devices[0x18] = bytearray(256)
from voicenode import hal
hal.make_i2s()
r = machine.I2C.devices[0x18]
print(json.dumps({"log": [e for e in machine.log if e[0] in ("PWM", "I2S", "I2C")],
                  "mclk": hal.mclk_source, "r01": r[0x01], "r0a": r[0x0A]}))
"""
    out = json.loads(run_hal(tmp_path, BOARD, code))
    assert out["log"] == [
        ["I2S", 0, 8, 6, 7, None, 0, 32, 0, 16000, 16384],
        ["I2C", 0, 39, 38, 100000],
    ]
    assert out["mclk"] is None
    assert out["r01"] == 0xBF and out["r0a"] == 0x00
