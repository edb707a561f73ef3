# Generated from boards/ESP32_S3_DEVKITC_INMP441/board.json by `voicenode boards --generate`: do not edit.
# The only place pin numbers appear in the firmware; only voicenode.hal imports it.

from micropython import const

NAME = 'ESP32_S3_DEVKITC_INMP441'
SUPPORTED = True
UNSUPPORTED_REASON = None

# Microphone: machine.I2S receive, and how to turn a slot into an int16 sample.
MIC_TYPE = 'INMP441'
MIC_INTERFACE = 'i2s'
MIC_I2S_ID = const(0)
MIC_SCK = const(4)
MIC_WS = const(5)
MIC_SD = const(6)
MIC_MCK = None
MIC_RATE = const(16000)
MIC_IBUF = const(16384)
MIC_SLOT_BITS = const(32)
MIC_SIGNIFICANT_BITS = const(24)
MIC_BIT_DELAY = const(0)
MIC_SHIFT = const(14)
MIC_CHANNEL = 'left'

# Codec / ADC set up over I2C before the microphone delivers samples.
CODEC = None

# Status LED: 'gpio' or 'ws2812'.
LED_TYPE = 'ws2812'
LED_PIN = const(38)
LED_ACTIVE_LOW = False

# Mute input (a switch or the board's mute button).
MUTE_PIN = const(7)
MUTE_ACTIVE_LOW = True
MUTE_PULL = 'up'

# Buttons: (name, pin, active_low, pull).
BUTTONS = (('boot', 0, True, 'up'),)
