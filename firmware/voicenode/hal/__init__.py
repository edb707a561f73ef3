"""The hardware seam: the only module that imports `board` (the generated pin constants).

    >>> from voicenode import hal
    >>> hal.board_name()
    >>> i2s = hal.make_i2s()      # machine.I2S receiving 32-bit slots at 16 kHz
    >>> hal.SAMPLE_FORMAT          # how the Microphone class turns a slot into int16
    >>> hal.led.on(); hal.muted()

Importing this module refuses a board that the firmware cannot serve (`board.SUPPORTED` is
False) with `UnsupportedBoardError`, whose message gives the reason. It is an ImportError, so
`voicenode.status()` still answers (board "unknown") while the traceback says why.

Sample format. On the ESP32, MicroPython's machine.I2S always receives Philips-framed 32-bit
slots; `bits=32` hands them to Python whole, as little-endian int32 words. A word becomes an
int16 sample by `to_int16(word)`: shift left by BIT_DELAY (the SPH0645 lands one bit late;
the shift wraps in 32 bits, exactly as a viper int does on the chip), arithmetic shift right
by SHIFT, saturate to int16. MONO receives the left slot; a microphone strapped to the right
slot is received in STEREO and the Microphone takes every second word starting at CHANNEL.
"""

import board
import machine

from voicenode.hal import led as _led
from voicenode.hal import pins as _pins


class UnsupportedBoardError(ImportError):
    pass


if not board.SUPPORTED:
    raise UnsupportedBoardError("board %s is not supported: %s" % (board.NAME, board.UNSUPPORTED_REASON))

#: Bits per I2S slot handed to Python (machine.I2S RX on the ESP32 always reads 32-bit slots).
SLOT_BITS = 32
#: Words per frame in the buffer machine.I2S fills: 1 (MONO, left slot) or 2 (STEREO).
CHANNELS = 1 if board.MIC_CHANNEL == "left" else 2
#: Index of the microphone's word within a frame.
CHANNEL = 0 if board.MIC_CHANNEL == "left" else 1
BIT_DELAY = board.MIC_BIT_DELAY
SHIFT = board.MIC_SHIFT
RATE = board.MIC_RATE
#: Everything the Microphone class needs to read and convert samples.
SAMPLE_FORMAT = {
    "rate": RATE,
    "slot_bits": SLOT_BITS,
    "channels": CHANNELS,
    "channel": CHANNEL,
    "bit_delay": BIT_DELAY,
    "shift": SHIFT,
    "significant_bits": board.MIC_SIGNIFICANT_BITS,
}

#: How MCLK reaches a codec: None (no MCLK), "i2s" (machine.I2S mck=) or "pwm" (fallback).
mclk_source = None
#: The MCLK frequency made (Hz), or None without MCLK.
mclk_hz = None
#: The codec driver object once make_i2s() set it up (None without a codec).
codec = None
_mclk_pwm = None  # kept referenced so the PWM clock is not collected


def board_name():
    return board.NAME


def to_int16(word, bit_delay=BIT_DELAY, shift=SHIFT):
    """Plain-Python reference of the slot -> int16 conversion (the Microphone's kernel twin).

    `word` is the signed 32-bit value of one slot as machine.I2S delivers it.
    """
    w = (word << bit_delay) & 0xFFFFFFFF
    if w & 0x80000000:
        w -= 0x100000000
    s = w >> shift
    if s > 32767:
        return 32767
    if s < -32768:
        return -32768
    return s


def _start_mclk():
    """Make MCLK (rate x multiple) with PWM when machine.I2S cannot output it."""
    global _mclk_pwm, mclk_hz
    freq = board.MIC_RATE * board.CODEC_MCLK_MULTIPLE
    _mclk_pwm = machine.PWM(machine.Pin(board.MIC_MCK), freq=freq, duty_u16=32768)
    # The LEDC divider may not hit 4.096 MHz exactly (it depends on the duty resolution the
    # port picks); report what it made, so status can show a codec clocked off-ratio.
    try:
        mclk_hz = _mclk_pwm.freq()
    except (AttributeError, TypeError):
        mclk_hz = freq
    return _mclk_pwm


def setup_codec():
    """Configure the board's codec/ADC over I2C; returns the driver (None without a codec)."""
    global codec
    if board.CODEC is None:
        return None
    from voicenode.hal.codecs import bus, make

    i2c = _pins.i2c_bus(board.CODEC_I2C_ID, board.CODEC_SCL, board.CODEC_SDA, board.CODEC_I2C_FREQ)
    dev = make(board.CODEC, bus.BusAdapter(i2c), board.CODEC_ADDR)
    # No MCLK multiple: the codec makes its clock from BCLK.
    multiple = board.CODEC_MCLK_MULTIPLE
    dev.setup(
        rate=board.MIC_RATE,
        mclk=board.MIC_RATE * multiple if multiple else None,
        bits=board.MIC_SIGNIFICANT_BITS,
        mics=board.CODEC_MICS,
        gain_db=board.CODEC_GAIN_DB,
    )
    codec = dev
    return dev


def make_i2s(ibuf=None):
    """machine.I2S receiving the board's microphone at 16 kHz, its codec set up.

    Clocks first, then codec registers (the order esp-bsp uses: the ES7210 is an I2S slave
    and runs from MCLK/BCLK). Boards that need MCLK pass `mck=` to machine.I2S; a stock
    ESP32 firmware refuses that keyword (TypeError), and MCLK then comes from machine.PWM.
    """
    global mclk_source, mclk_hz
    I2S = machine.I2S
    Pin = machine.Pin
    kw = {
        "sck": Pin(board.MIC_SCK),
        "ws": Pin(board.MIC_WS),
        "sd": Pin(board.MIC_SD),
        "mode": I2S.RX,
        "bits": SLOT_BITS,
        "format": I2S.MONO if CHANNELS == 1 else I2S.STEREO,
        "rate": board.MIC_RATE,
        "ibuf": ibuf or board.MIC_IBUF,
    }
    if board.MIC_MCK is None:
        i2s = I2S(board.MIC_I2S_ID, **kw)
    else:
        try:
            i2s = I2S(board.MIC_I2S_ID, mck=Pin(board.MIC_MCK), **kw)
            mclk_source = "i2s"
            mclk_hz = board.MIC_RATE * board.CODEC_MCLK_MULTIPLE
        except TypeError:
            _start_mclk()
            i2s = I2S(board.MIC_I2S_ID, **kw)
            mclk_source = "pwm"
    setup_codec()
    return i2s


def microphone(**kwargs):
    """The Microphone (voicenode.hal.mic) reading make_i2s() in this board's format.

    Keywords go to Microphone (block, ring, hp_shift...); `ibuf` also sizes machine.I2S.
    """
    from voicenode.hal.mic import Microphone

    ibuf = kwargs.pop("ibuf", None) or board.MIC_IBUF
    return Microphone(make_i2s(ibuf), SAMPLE_FORMAT, ibuf=ibuf, **kwargs)


def muted():
    """True when the mute input is active (False on boards without one)."""
    return mute is not None and mute.active()


#: The status LED (voicenode.hal.led.GpioLed / PixelLed) or None.
led = _led.make(board.LED_TYPE, board.LED_PIN, board.LED_ACTIVE_LOW)
#: The raw machine.Pin of the mute input, or None.
mute_pin = None if board.MUTE_PIN is None else _pins.input_pin(board.MUTE_PIN, board.MUTE_PULL)
mute = None if mute_pin is None else _pins.ActiveInput(mute_pin, board.MUTE_ACTIVE_LOW)
#: name -> ActiveInput for each button.
buttons = {}
for _name, _num, _active_low, _pull in board.BUTTONS:
    buttons[_name] = _pins.ActiveInput(_pins.input_pin(_num, _pull), _active_low)
