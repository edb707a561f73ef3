"""Codec and ADC drivers set up over I2C with Adafruit's I2CDevice.

Each driver takes a bus with the busio.I2C API (`bus.BusAdapter` gives machine.I2C one)
and an address, and has `setup(rate, mclk, bits, mics, gain_db)`. Only the driver a board
needs is deployed (voicenode_tools.boards.Board.device_files()).
"""


def make(chip, bus, address):
    """The driver object for `chip` (the name in board.json) on `bus` at `address`."""
    if chip == "ES7210":
        from voicenode.hal.codecs.es7210 import ES7210

        return ES7210(bus, address)
    if chip == "ES8311":
        from voicenode.hal.codecs.es8311 import ES8311

        return ES8311(bus, address)
    raise ValueError("no driver for codec %r" % (chip,))
