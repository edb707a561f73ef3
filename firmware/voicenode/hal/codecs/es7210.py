"""ES7210 four-channel audio ADC (ESP32-S3-BOX-3, ESP32-S3-Korvo-2), as an I2S slave.

The register sequence follows Espressif's esp-adf driver
(components/audio_hal/driver/es7210/es7210.c: es7210_adc_init, es7210_config_sample,
es7210_mic_select, es7210_adc_set_gain, es7210_set_bits, es7210_config_fmt, es7210_start)
with its repeated writes dropped: the final register state is the same.

The ESP32 is the I2S master: it drives BCLK/LRCK and MCLK; the ES7210 needs MCLK, and its
clock dividers are set for the MCLK/LRCK pair (`_COEFFS`, from esp-adf's coeff_div table).
"""

from adafruit_bus_device.i2c_device import I2CDevice
from micropython import const

ADDRESS = const(0x40)  # AD1 = AD0 = 0

_RESET = const(0x00)
_CLOCK_OFF = const(0x01)
_MAINCLK = const(0x02)
_LRCK_DIVH = const(0x04)
_LRCK_DIVL = const(0x05)
_POWER_DOWN = const(0x06)
_OSR = const(0x07)
_MODE_CONFIG = const(0x08)
_TIME_CONTROL0 = const(0x09)
_TIME_CONTROL1 = const(0x0A)
_SDP_INTERFACE1 = const(0x11)
_SDP_INTERFACE2 = const(0x12)
_ADC34_HPF2 = const(0x20)
_ADC34_HPF1 = const(0x21)
_ADC12_HPF1 = const(0x22)
_ADC12_HPF2 = const(0x23)
_ANALOG = const(0x40)
_MIC12_BIAS = const(0x41)
_MIC34_BIAS = const(0x42)
_MIC1_GAIN = const(0x43)
_MIC1_POWER = const(0x47)
_MIC12_POWER = const(0x4B)
_MIC34_POWER = const(0x4C)

# (mclk, lrck) -> (adc_div, dll, doubler, osr, lrck_h, lrck_l), esp-adf coeff_div.
_COEFFS = {
    (4096000, 8000): (0x01, 0x01, 0x00, 0x20, 0x02, 0x00),
    (12288000, 8000): (0x03, 0x01, 0x00, 0x20, 0x06, 0x00),
    (4096000, 16000): (0x01, 0x01, 0x01, 0x20, 0x01, 0x00),
    (12288000, 16000): (0x03, 0x01, 0x01, 0x20, 0x03, 0x00),
    (16384000, 16000): (0x02, 0x01, 0x00, 0x20, 0x04, 0x00),
    (19200000, 16000): (0x0A, 0x00, 0x00, 0x1E, 0x04, 0x80),
    (12288000, 48000): (0x01, 0x01, 0x01, 0x20, 0x01, 0x00),
}

# PGA gain register value -> dB (0..33 dB in 3 dB steps, then 34.5, 36, 37.5).
_GAINS_DB = (0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 34.5, 36, 37.5)

_BITS = {16: 0x60, 18: 0x40, 20: 0x20, 24: 0x00, 32: 0x80}  # SDP_INTERFACE1 bits [7:5]
_FORMATS = {"philips": 0x00, "left_justified": 0x01}  # SDP_INTERFACE1 bits [1:0]


def gain_code(gain_db):
    """The PGA register value for a gain in dB (one of _GAINS_DB)."""
    for code, db in enumerate(_GAINS_DB):
        if db == gain_db:
            return code
    raise ValueError("ES7210 gain must be one of %r dB" % (_GAINS_DB,))


class ES7210:
    def __init__(self, i2c, address=ADDRESS, probe=True):
        self._dev = I2CDevice(i2c, address, probe=probe)
        self._wbuf = bytearray(2)
        self._rbuf = bytearray(1)
        self.gain = 0
        self.mics = ()

    # -- registers ------------------------------------------------------------------------
    def write(self, reg, value):
        buf = self._wbuf
        buf[0] = reg
        buf[1] = value
        with self._dev as dev:
            dev.write(buf)

    def read(self, reg):
        self._wbuf[0] = reg
        with self._dev as dev:
            dev.write_then_readinto(self._wbuf, self._rbuf, out_end=1)
        return self._rbuf[0]

    def update(self, reg, mask, value):
        """Read-modify-write: es7210_update_reg_bit."""
        self.write(reg, (self.read(reg) & ~mask & 0xFF) | (value & mask))

    # -- set-up ---------------------------------------------------------------------------
    def setup(self, rate=16000, mclk=4096000, bits=24, fmt="philips", mics=(1, 2), gain_db=24):
        """Reset and configure as an I2S slave ADC: the whole esp-adf bring-up, in order."""
        if (mclk, rate) not in _COEFFS:
            raise ValueError("ES7210: no clock coefficients for MCLK %d Hz at %d Hz" % (mclk, rate))
        if bits not in _BITS or fmt not in _FORMATS:
            raise ValueError("ES7210: unsupported word length or format")
        for m in mics:
            if m not in (1, 2, 3, 4):
                raise ValueError("ES7210 inputs are 1..4")
        self.gain = gain_code(gain_db)
        # es7210_adc_init
        self.write(_RESET, 0xFF)
        self.write(_RESET, 0x41)
        self.write(_CLOCK_OFF, 0x3F)
        self.write(_TIME_CONTROL0, 0x30)  # chip state cycle
        self.write(_TIME_CONTROL1, 0x30)  # power-on state cycle
        self.write(_ADC12_HPF2, 0x2A)  # high-pass filters: quick set-up
        self.write(_ADC12_HPF1, 0x0A)
        self.write(_ADC34_HPF2, 0x0A)
        self.write(_ADC34_HPF1, 0x2A)
        self.update(_MODE_CONFIG, 0x01, 0x00)  # slave: the ESP32 drives the clocks
        self.write(_ANALOG, 0x43)  # VDDA 3.3 V, VMID 5 kOhm start
        self.write(_MIC12_BIAS, 0x70)  # 2.87 V bias
        self.write(_MIC34_BIAS, 0x70)
        self.write(_OSR, 0x20)
        self.write(_MAINCLK, 0xC1)  # also clears the clock state
        self.set_clock(mclk, rate)
        # es7210_adc_config_i2s
        self.set_format(bits, fmt)
        self.select_mics(mics)
        # es7210_start
        self.start()

    def set_clock(self, mclk, rate):
        """es7210_config_sample: dividers for this MCLK/LRCK pair."""
        adc_div, dll, doubler, osr, lrck_h, lrck_l = _COEFFS[(mclk, rate)]
        self.write(_MAINCLK, adc_div | (doubler << 6) | (dll << 7))
        self.write(_OSR, osr)
        self.write(_LRCK_DIVH, lrck_h)
        self.write(_LRCK_DIVL, lrck_l)

    def set_format(self, bits, fmt):
        """es7210_set_bits + es7210_config_fmt: word length and framing of SDOUT."""
        self.update(_SDP_INTERFACE1, 0xE0, _BITS[bits])
        self.update(_SDP_INTERFACE1, 0x03, _FORMATS[fmt])

    def select_mics(self, mics):
        """es7210_mic_select: power the chosen inputs' PGAs at self.gain, the rest off."""
        for m in mics:
            if m not in (1, 2, 3, 4):
                raise ValueError("ES7210 inputs are 1..4")
        for i in range(4):
            self.update(_MIC1_GAIN + i, 0x10, 0x00)
        self.write(_MIC12_POWER, 0xFF)
        self.write(_MIC34_POWER, 0xFF)
        for m in mics:
            if m in (1, 2):
                self.update(_CLOCK_OFF, 0x0B, 0x00)
                self.write(_MIC12_POWER, 0x00)
            else:
                self.update(_CLOCK_OFF, 0x15, 0x00)
                self.write(_MIC34_POWER, 0x00)
            reg = _MIC1_GAIN + m - 1
            self.update(reg, 0x10, 0x10)
            self.update(reg, 0x0F, self.gain)
        # Three or more inputs need TDM, which machine.I2S cannot receive.
        self.write(_SDP_INTERFACE2, 0x02 if len(mics) >= 3 else 0x00)
        self.mics = tuple(mics)

    def start(self):
        """es7210_start: clocks on for the selected inputs, power up, microphones on."""
        self.write(_CLOCK_OFF, self.read(_CLOCK_OFF))
        self.write(_POWER_DOWN, 0x00)
        self.write(_ANALOG, 0x43)
        for i in range(4):
            self.write(_MIC1_POWER + i, 0x08)

    def stop(self):
        """es7210_stop: everything powered down."""
        for i in range(6):
            self.write(_MIC1_POWER + i, 0xFF)
        self.write(_ANALOG, 0xC0)
        self.write(_CLOCK_OFF, 0x7F)
        self.write(_POWER_DOWN, 0x07)
