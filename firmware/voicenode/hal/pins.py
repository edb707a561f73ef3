"""Pin helpers for the HAL: the board module gives numbers, this module makes machine objects.

Only `voicenode.hal` calls these, with numbers from `board`; nothing else in the firmware
names a pin.
"""

import machine


def input_pin(num, pull=None):
    """An input Pin with the pull named in the board definition ("up", "down" or None)."""
    if pull == "up":
        return machine.Pin(num, machine.Pin.IN, machine.Pin.PULL_UP)
    if pull == "down":
        return machine.Pin(num, machine.Pin.IN, machine.Pin.PULL_DOWN)
    return machine.Pin(num, machine.Pin.IN)


def output_pin(num, value=0):
    return machine.Pin(num, machine.Pin.OUT, value=value)


def i2c_bus(bus_id, scl, sda, freq):
    """The hardware I2C controller `bus_id` on the given pins."""
    return machine.I2C(bus_id, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq)


class ActiveInput:
    """An input whose logical level (pressed, muted) may be the electrical low level."""

    def __init__(self, pin, active_low):
        self.pin = pin
        self._active_low = active_low

    def active(self):
        return (self.pin.value() == 0) == self._active_low
