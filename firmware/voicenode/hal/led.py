"""Status LED: a plain GPIO LED or one WS2812 ("NeoPixel") pixel, behind one small API.

    led.on()            # default colour (dim blue) or plain on
    led.on((0, 32, 0))  # a colour, for a pixel (a GPIO LED just lights)
    led.off()
    led.state           # False, True or the colour last shown
"""

import machine

# WS2812 bit timings in ns (high/low for a 0 bit, high/low for a 1 bit), as micropython-lib's
# neopixel module passes them to machine.bitstream.
_WS2812_TIMING = (400, 850, 800, 450)


class GpioLed:
    def __init__(self, pin, active_low=False):
        self._pin = pin
        self._active_low = active_low
        self.state = False  # type: object
        self.off()

    def on(self, color=None):
        self._pin.value(0 if self._active_low else 1)
        self.state = True

    def off(self):
        self._pin.value(1 if self._active_low else 0)
        self.state = False


class PixelLed:
    """One WS2812 pixel written with machine.bitstream (no neopixel module needed)."""

    DEFAULT = (0, 0, 24)

    def __init__(self, pin):
        self._pin = pin
        self._buf = bytearray(3)  # GRB, made once
        # A simulated board may not clock out bitstreams; the LED then only keeps its state.
        self._bitstream = getattr(machine, "bitstream", None)
        self.state = False  # type: object
        self.off()

    def _show(self, r, g, b):
        buf = self._buf
        buf[0] = g
        buf[1] = r
        buf[2] = b
        if self._bitstream is not None:
            self._bitstream(self._pin, 0, _WS2812_TIMING, buf)

    def on(self, color=None):
        c = color or self.DEFAULT
        self._show(c[0], c[1], c[2])
        self.state = c

    def off(self):
        self._show(0, 0, 0)
        self.state = False


def make(led_type, pin_num, active_low=False):
    """The LED the board describes, or None when it has none."""
    if led_type is None or pin_num is None:
        return None
    if led_type == "ws2812":
        return PixelLed(machine.Pin(pin_num, machine.Pin.OUT))
    if led_type == "gpio":
        return GpioLed(machine.Pin(pin_num, machine.Pin.OUT), active_low)
    raise ValueError("unknown LED type %r" % (led_type,))
