"""ES8311 mono codec, used here only for its microphone ADC (M5Stack Atomic Echo Base).

The register sequence follows Espressif's esp-adf driver
(components/audio_hal/driver/es8311/es8311.c: es8311_codec_init, es8311_set_bits_per_sample,
es8311_config_fmt, es8311_start(ES_MODULE_ADC)) for a slave codec, with its writes that
leave a register unchanged dropped.

Without an MCLK line the ES8311 makes its internal clock from BCLK (REG01 bit 7). esp-adf
assumes BCLK = 32 x LRCK and multiplies by 8; MicroPython's ESP32 I2S always clocks 32-bit
stereo slots (BCLK = 64 x LRCK), so the multiplier here is 4: both give DIG_MCLK = 256 x LRCK.
"""

from adafruit_bus_device.i2c_device import I2CDevice
from micropython import const

ADDRESS = const(0x18)  # CE low

_RESET = const(0x00)
_CLK01 = const(0x01)
_CLK02 = const(0x02)
_CLK03 = const(0x03)
_CLK04 = const(0x04)
_CLK05 = const(0x05)
_CLK06 = const(0x06)
_CLK07 = const(0x07)
_CLK08 = const(0x08)
_SDPIN = const(0x09)
_SDPOUT = const(0x0A)
_SYS0B = const(0x0B)
_SYS0C = const(0x0C)
_SYS0D = const(0x0D)
_SYS0E = const(0x0E)
_SYS10 = const(0x10)
_SYS11 = const(0x11)
_SYS12 = const(0x12)
_SYS13 = const(0x13)
_SYS14 = const(0x14)
_ADC15 = const(0x15)
_ADC16 = const(0x16)
_ADC17 = const(0x17)
_ADC1B = const(0x1B)
_ADC1C = const(0x1C)
_DAC32 = const(0x32)
_DAC37 = const(0x37)
_GP45 = const(0x45)

# rate -> (pre_div, adc_div, dac_div, fs_mode, lrck_h, lrck_l, bclk_div, adc_osr, dac_osr):
# esp-adf coeff_div rows for MCLK = 256 x rate (pre_multi is chosen from the clock source).
_COEFFS = {
    8000: (0x02, 0x01, 0x01, 0x00, 0x00, 0xFF, 0x04, 0x10, 0x10),
    16000: (0x01, 0x01, 0x01, 0x00, 0x00, 0xFF, 0x04, 0x10, 0x10),
}
_PRE_MULTI = {1: 0, 2: 1, 4: 2, 8: 3}
_BITS = {16: 0x0C, 24: 0x00, 32: 0x10}  # SDPOUT word length bits [4:2]
_FORMATS = {"philips": 0x00, "left_justified": 0x01}


def gain_code(gain_db):
    """REG16 PGA code for 0..42 dB in 6 dB steps."""
    if gain_db % 6 or not 0 <= gain_db <= 42:
        raise ValueError("ES8311 gain must be 0..42 dB in 6 dB steps")
    return gain_db // 6


class ES8311:
    def __init__(self, i2c, address=ADDRESS, probe=True):
        self._dev = I2CDevice(i2c, address, probe=probe)
        self._wbuf = bytearray(2)
        self._rbuf = bytearray(1)
        self.mics = ()  # type: tuple

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

    def update(self, reg, keep, value):
        """Keep the bits in `keep`, OR in `value` (esp-adf's read & mask | field)."""
        self.write(reg, (self.read(reg) & keep) | value)

    def setup(self, rate=16000, mclk=None, bits=24, fmt="philips", mics=(1,), gain_db=24, bclk_per_frame=64):
        """Reset and configure the ADC path as an I2S slave.

        mclk: MCLK in Hz on the MCLK pin, or None to clock from BCLK (`bclk_per_frame` x rate).
        """
        if rate not in _COEFFS:
            raise ValueError("ES8311: no clock coefficients for %d Hz" % rate)
        if mclk is None:
            multi = 256 // bclk_per_frame
        else:
            multi = 1 if mclk == 256 * rate else 0
        if multi not in _PRE_MULTI or bits not in _BITS or fmt not in _FORMATS or tuple(mics) != (1,):
            raise ValueError("ES8311: unsupported clock, word length, format or input")
        gain = gain_code(gain_db)
        pre_div, adc_div, dac_div, fs_mode, lrck_h, lrck_l, bclk_div, adc_osr, dac_osr = _COEFFS[rate]
        # es8311_codec_init
        self.write(_CLK01, 0x30)
        self.write(_CLK02, 0x00)
        self.write(_CLK03, 0x10)
        self.write(_ADC16, 0x20 | gain)  # MIC PGA (esp-adf: 0x24 = 24 dB)
        self.write(_CLK04, 0x10)
        self.write(_CLK05, 0x00)
        self.write(_SYS0B, 0x00)
        self.write(_SYS0C, 0x00)
        self.write(_SYS10, 0x1F)
        self.write(_SYS11, 0x7F)
        self.write(_RESET, 0x80)
        self.update(_RESET, 0xBF, 0x00)  # slave
        self.write(_CLK01, 0x3F)
        self.update(_CLK01, 0x7F, 0x80 if mclk is None else 0x00)  # MCLK from BCLK or the pin
        self.update(_CLK02, 0x07, ((pre_div - 1) << 5) | (_PRE_MULTI[multi] << 3))
        self.write(_CLK05, ((adc_div - 1) << 4) | (dac_div - 1))
        self.update(_CLK03, 0x80, (fs_mode << 6) | adc_osr)
        self.update(_CLK04, 0x80, dac_osr)
        self.update(_CLK07, 0xC0, lrck_h)
        self.write(_CLK08, lrck_l)
        self.update(_CLK06, 0xE0, bclk_div - 1)
        self.update(_CLK01, 0xBF, 0x00)  # MCLK not inverted
        self.update(_CLK06, 0xDF, 0x00)  # BCLK not inverted
        self.write(_SYS13, 0x10)
        self.write(_ADC1B, 0x0A)
        self.write(_ADC1C, 0x6A)
        # es8311_set_bits_per_sample + es8311_config_fmt (SDPOUT is the ADC's serial port)
        self.update(_SDPOUT, 0xE3, _BITS[bits])
        self.update(_SDPOUT, 0xFC, _FORMATS[fmt])
        # es8311_start(ES_MODULE_ADC): ADC serial port on, DAC serial port muted
        self.update(_SDPIN, 0xBF, 0x40)
        self.update(_SDPOUT, 0xBF, 0x00)
        self.write(_DAC32, 0xBF)
        self.write(_ADC17, 0xBF)  # ADC volume 0 dB
        self.write(_SYS0E, 0x02)
        self.write(_SYS12, 0x00)
        self.write(_SYS14, 0x1A)  # analog MIC, PGA on (no digital mic: bit 6 clear)
        self.write(_SYS0D, 0x01)
        self.write(_ADC15, 0x40)
        self.write(_DAC37, 0x48)
        self.write(_GP45, 0x00)
        self.mics = (1,)

    def stop(self):
        """es8311_suspend."""
        for reg, value in (
            (_DAC32, 0x00), (_ADC17, 0x00), (_SYS0E, 0xFF), (_SYS12, 0x02), (_SYS14, 0x00),
            (_SYS0D, 0xFA), (_ADC15, 0x00), (_DAC37, 0x08), (_GP45, 0x01),
        ):
            self.write(reg, value)
