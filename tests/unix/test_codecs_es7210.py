"""The ES7210 driver on the MicroPython Unix port, against a bus that records register writes.

The expected sequence is Espressif's esp-adf bring-up of the ES7210 as an I2S slave
(components/audio_hal/driver/es7210/es7210.c): es7210_adc_init -> es7210_adc_config_i2s ->
es7210_adc_ctrl_state(START), for 16 kHz, MCLK 4.096 MHz (coeff_div row
{4096000, 16000, 0x00, 0x01, 0x01, 0x01, 0x20, 0x00, 0x01, 0x00}), 24-bit Philips, MIC1+MIC2,
24 dB (GAIN_24DB = 8). The driver drops esp-adf's repeated writes; `esp_adf_model` below
replays esp-adf literally (with its repeats) and the final register files must agree.
"""

import json

import pytest
from test_hal import run_hal

W = list  # [reg, value]

EXPECTED = [
    # es7210_adc_init
    W([0x00, 0xFF]),
    [0x00, 0x41],  # reset
    [0x01, 0x3F],  # all clocks off
    [0x09, 0x30],
    [0x0A, 0x30],  # chip state / power-on state cycles
    [0x23, 0x2A],
    [0x22, 0x0A],
    [0x20, 0x0A],
    [0x21, 0x2A],  # HPF quick set-up
    [0x08, 0x00],  # MODE_CONFIG bit0 = 0: slave
    [0x40, 0x43],
    [0x41, 0x70],
    [0x42, 0x70],  # analog power, MIC bias 2.87 V
    [0x07, 0x20],
    [0x02, 0xC1],  # OSR, MAINCLK (clear state)
    # es7210_config_sample(16 kHz, 4.096 MHz)
    [0x02, 0xC1],
    [0x07, 0x20],
    [0x04, 0x01],
    [0x05, 0x00],
    # es7210_set_bits(24) then es7210_config_fmt(I2S normal)
    [0x11, 0x00],
    [0x11, 0x00],
    # es7210_mic_select(MIC1 | MIC2) at 24 dB
    [0x43, 0x00],
    [0x44, 0x00],
    [0x45, 0x00],
    [0x46, 0x00],
    [0x4B, 0xFF],
    [0x4C, 0xFF],
    [0x01, 0x34],
    [0x4B, 0x00],
    [0x43, 0x10],
    [0x43, 0x18],
    [0x01, 0x34],
    [0x4B, 0x00],
    [0x44, 0x10],
    [0x44, 0x18],
    [0x12, 0x00],  # two mics: TDM off
    # es7210_start(0x34)
    [0x01, 0x34],
    [0x06, 0x00],
    [0x40, 0x43],
    [0x47, 0x08],
    [0x48, 0x08],
    [0x49, 0x08],
    [0x4A, 0x08],
]


def esp_adf_model():
    """esp-adf's calls, transcribed literally, on a register file that starts at zero."""
    r = [0] * 256

    def w(reg, v):
        r[reg] = v & 0xFF

    def upd(reg, mask, v):
        w(reg, (r[reg] & ~mask) | (mask & v))

    gain = {"g": 0}  # es7210_handle.gain, zero until es7210_adc_set_gain

    def mic_select():
        for i in range(4):
            upd(0x43 + i, 0x10, 0x00)
        w(0x4B, 0xFF)
        w(0x4C, 0xFF)
        for reg in (0x43, 0x44):  # MIC1, MIC2
            upd(0x01, 0x0B, 0x00)
            w(0x4B, 0x00)
            upd(reg, 0x10, 0x10)
            upd(reg, 0x0F, gain["g"])
        w(0x12, 0x00)

    def config_sample():
        w(0x02, 0x01 | (0x01 << 6) | (0x01 << 7))
        w(0x07, 0x20)
        w(0x04, 0x01)
        w(0x05, 0x00)

    # es7210_adc_init
    for reg, v in (
        (0x00, 0xFF),
        (0x00, 0x41),
        (0x01, 0x3F),
        (0x09, 0x30),
        (0x0A, 0x30),
        (0x23, 0x2A),
        (0x22, 0x0A),
        (0x20, 0x0A),
        (0x21, 0x2A),
    ):
        w(reg, v)
    upd(0x08, 0x01, 0x00)
    for reg, v in ((0x40, 0x43), (0x41, 0x70), (0x42, 0x70), (0x07, 0x20), (0x02, 0xC1)):
        w(reg, v)
    config_sample()
    mic_select()
    for reg in (0x43, 0x44):  # es7210_adc_set_gain(GAIN_24DB)
        upd(reg, 0x0F, 8)
    gain["g"] = 8
    # es7210_adc_config_i2s
    w(0x11, (r[0x11] & 0x1F) | 0x00)
    w(0x11, (r[0x11] & 0xFC) | 0x00)
    config_sample()
    # es7210_adc_ctrl_state(START) -> es7210_start(regv)
    regv = r[0x01]
    for reg, v in ((0x01, regv), (0x06, 0x00), (0x40, 0x43)):
        w(reg, v)
    for reg in (0x47, 0x48, 0x49, 0x4A):
        w(reg, 0x08)
    mic_select()
    return r


SETUP = """
import json, machine
from voicenode.hal.codecs.bus import BusAdapter
from voicenode.hal.codecs.es7210 import ES7210
machine.I2C.devices[0x40] = bytearray(256)
i2c = machine.I2C(0, scl=machine.Pin(18), sda=machine.Pin(8), freq=100000)
dev = ES7210(BusAdapter(i2c), 0x40)
machine.log.clear()
"""


def test_setup_writes_the_esp_adf_sequence(tmp_path):
    code = (
        SETUP
        + """
dev.setup(rate=16000, mclk=4096000, bits=24, mics=(1, 2), gain_db=24)
print(json.dumps({"w": [e[2:] for e in machine.log if e[0] == "w"],
                  "regs": list(machine.I2C.devices[0x40])}))
"""
    )
    out = json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code))
    assert out["w"] == EXPECTED
    assert out["regs"] == esp_adf_model()


def test_stop_powers_everything_down(tmp_path):
    code = (
        SETUP
        + """
dev.setup()
machine.log.clear()
dev.stop()
print(json.dumps([e[2:] for e in machine.log if e[0] == "w"]))
"""
    )
    # es7210_stop
    assert json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code)) == [
        [0x47, 0xFF],
        [0x48, 0xFF],
        [0x49, 0xFF],
        [0x4A, 0xFF],
        [0x4B, 0xFF],
        [0x4C, 0xFF],
        [0x40, 0xC0],
        [0x01, 0x7F],
        [0x06, 0x07],
    ]


@pytest.mark.parametrize(
    "call,message",
    [
        ("dev.setup(mclk=5000000)", "no clock coefficients"),
        ("dev.setup(gain_db=25)", "gain must be one of"),
        ("dev.setup(bits=12)", "unsupported word length"),
        ("dev.select_mics((5,))", "inputs are 1..4"),
        ("dev.setup(mics=(1, 0))", "inputs are 1..4"),
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
    msg, writes = json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code))
    assert message in msg
    assert writes == 0


def test_gain_codes_cover_the_pga_table(tmp_path):
    code = """
import json
from voicenode.hal.codecs.es7210 import gain_code
print(json.dumps([gain_code(g) for g in (0, 3, 24, 33, 34.5, 36, 37.5)]))
"""
    assert json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code)) == [0, 1, 8, 11, 12, 13, 14]


def test_three_mics_switch_on_tdm_and_mic3_clock(tmp_path):
    code = (
        SETUP
        + """
dev.select_mics((1, 2, 3))
r = machine.I2C.devices[0x40]
print(json.dumps([r[0x12], r[0x4C], r[0x45] & 0x10]))
"""
    )
    assert json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code)) == [0x02, 0x00, 0x10]


def test_register_writes_allocate_nothing_after_setup(tmp_path):
    """write() reuses its buffer; I2CDevice and the adapter make only small views. Measure
    what one register write costs on the heap (set-up is not a hot path, this is a budget)."""
    code = (
        SETUP
        + """
import gc
dev.write(0x11, 0)
gc.collect()
a = gc.mem_alloc()
for i in range(100):
    dev.write(0x11, 0)
per = (gc.mem_alloc() - a) // 100
print(json.dumps(per))
"""
    )
    per_write = json.loads(run_hal(tmp_path, "ESP32_S3_BOX_3", code))
    assert 0 <= per_write <= 256
