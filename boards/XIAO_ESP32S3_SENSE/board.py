# Generated from boards/XIAO_ESP32S3_SENSE/board.json by `voicenode boards --generate`: do not edit.
# The only place pin numbers appear in the firmware; only voicenode.hal imports it.

from micropython import const

NAME = 'XIAO_ESP32S3_SENSE'
SUPPORTED = False
UNSUPPORTED_REASON = "its microphone is PDM (clock GPIO42, data GPIO41) and MicroPython's machine.I2S has no PDM receive mode, so stock MicroPython cannot read it"

# Microphone: machine.I2S receive, and how to turn a slot into an int16 sample.
MIC_TYPE = 'MSM261D3526H1CPM (PDM)'
MIC_INTERFACE = 'pdm'
MIC_I2S_ID = const(0)
MIC_SCK = const(42)
MIC_WS = None
MIC_SD = const(41)
MIC_MCK = None
MIC_RATE = const(16000)
MIC_IBUF = const(16384)
MIC_SLOT_BITS = const(16)
MIC_SIGNIFICANT_BITS = const(16)
MIC_BIT_DELAY = const(0)
MIC_SHIFT = const(0)
MIC_CHANNEL = 'left'

# Codec / ADC set up over I2C before the microphone delivers samples.
CODEC = None

# Status LED: 'gpio' or 'ws2812'.
LED_TYPE = 'gpio'
LED_PIN = const(21)
LED_ACTIVE_LOW = True

# Mute input (a switch or the board's mute button).
MUTE_PIN = None
MUTE_ACTIVE_LOW = False
MUTE_PULL = None

# Buttons: (name, pin, active_low, pull).
BUTTONS = (('boot', 0, True, 'up'),)
