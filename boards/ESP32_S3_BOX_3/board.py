# Generated from boards/ESP32_S3_BOX_3/board.json by `voicenode boards --generate`: do not edit.
# The only place pin numbers appear in the firmware; only voicenode.hal imports it.

from micropython import const

NAME = 'ESP32_S3_BOX_3'
SUPPORTED = True
UNSUPPORTED_REASON = None

# Microphone: machine.I2S receive, and how to turn a slot into an int16 sample.
MIC_TYPE = 'ES7210 (2 analog MEMS mics)'
MIC_INTERFACE = 'codec'
MIC_I2S_ID = const(0)
MIC_SCK = const(17)
MIC_WS = const(45)
MIC_SD = const(16)
MIC_MCK = const(2)
MIC_RATE = const(16000)
MIC_IBUF = const(16384)
MIC_SLOT_BITS = const(32)
MIC_SIGNIFICANT_BITS = const(24)
MIC_BIT_DELAY = const(0)
MIC_SHIFT = const(16)
MIC_CHANNEL = 'left'

# Codec / ADC set up over I2C before the microphone delivers samples.
CODEC = 'ES7210'
CODEC_ADDR = const(64)
CODEC_I2C_ID = const(0)
CODEC_SCL = const(18)
CODEC_SDA = const(8)
CODEC_I2C_FREQ = const(100000)
CODEC_MCLK_MULTIPLE = const(256)
CODEC_GAIN_DB = const(24)
CODEC_MICS = (1, 2)

# Status LED: 'gpio' or 'ws2812'.
LED_TYPE = None
LED_PIN = None
LED_ACTIVE_LOW = False

# Mute input (a switch or the board's mute button).
MUTE_PIN = const(1)
MUTE_ACTIVE_LOW = True
MUTE_PULL = None

# Buttons: (name, pin, active_low, pull).
BUTTONS = (('config', 0, True, 'up'),)
