"""machine.I2C with the busio.I2C API that adafruit_bus_device.I2CDevice calls.

I2CDevice locks the bus (try_lock/unlock) and passes start/end slices instead of sliced
copies; machine.I2C takes buffers, so the slices become memoryviews (no copy). Register
set-up is not a hot path: the small memoryview objects are fine here.
"""

_EIO = 5


class BusAdapter:
    def __init__(self, i2c):
        self._i2c = i2c
        self._locked = False

    def try_lock(self):
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._locked = False

    def scan(self):
        return self._i2c.scan()

    def writeto(self, address, buffer, *, start=0, end=None):
        mv = memoryview(buffer)[start:end]
        n = self._i2c.writeto(address, mv)
        # machine.I2C.writeto returns how many bytes were acknowledged; a NACKed address
        # raises OSError (ENODEV) itself.
        if n is not None and n < len(mv):
            raise OSError(_EIO)

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        self._i2c.readfrom_into(address, memoryview(buffer)[start:end])

    def writeto_then_readfrom(
        self, address, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0, in_end=None
    ):
        out = memoryview(out_buffer)[out_start:out_end]
        n = self._i2c.writeto(address, out, False)  # no STOP: repeated start for the read
        if n is not None and n < len(out):
            raise OSError(_EIO)
        self._i2c.readfrom_into(address, memoryview(in_buffer)[in_start:in_end])
