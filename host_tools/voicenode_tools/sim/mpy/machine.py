"""Simulated `machine` module of the virtual board (MicroPython, never deployed).

The virtual board's bootstrap (`_vn_boot.py`) imports this file into `sys.modules` before the
host file system is unmounted, so `import machine` on the board finds it while the built-in stays
reachable as `umachine`. Hardware that lives outside the MicroPython process (pin levels, the
microphone, reset requests) is reached over a loopback TCP connection to the board's
supervisor; everything on the audio and pin hot paths uses preallocated buffers, so
`I2S.readinto` and `Pin.value` allocate nothing (heap_lock safe).

Wire protocol (board -> supervisor): each connection starts with one text line
("hello pins\\n", "hello mic <bits> <channels> <rate> <ibuf>\\n" or "hello irq\\n") answered
by "ok\\n" or "err <message>\\n". Then every request is 8 bytes: command byte, pin, value,
pull, uint32 little-endian argument. Pins: g(et) -> level byte; s(et), m(ode), I(RQ trigger),
R(eset), D(eep sleep ms), W(DT start ms), F(eed) -> one ack byte. Mic: r(ead n bytes) -> n
bytes of slots; i(nfo) -> 4 uint32 (source samples, zero samples, overruns, ended). The irq
connection only receives 2-byte events (pin, new level).
"""

import socket

from micropython import const

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_cfg = {"port": 0, "cause": PWRON_RESET, "uid": b"\x00\x00\x00\x00\x00\x00", "freq": 240000000}
_pins_sock = None
_req = bytearray(8)
_resp = bytearray(16)


def _init(port, cause, uid):
    """Called once by the bootstrap, before the host file system goes away."""
    _cfg["port"] = port
    _cfg["cause"] = cause
    _cfg["uid"] = uid


def _connect(hello):
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", _cfg["port"])[0][-1])
    s.write(hello)
    line = b""
    while not line.endswith(b"\n"):
        c = s.read(1)
        if not c:
            raise OSError("virtual board supervisor closed the connection")
        line += c
    if not line.startswith(b"ok"):
        s.close()
        raise ValueError(line[4:].decode().strip())
    return s, line


def _pins():
    global _pins_sock
    if _pins_sock is None:
        _pins_sock, _ = _connect(b"hello pins\n")
    return _pins_sock


def _pin_call(cmd, pin, value=0, pull=0):
    # One request, one byte back; preallocated buffers only.
    s = _pins()
    _req[0] = cmd
    _req[1] = pin
    _req[2] = value
    _req[3] = pull
    s.write(_req)
    s.readinto(_resp, 1)
    return _resp[0]


def reset():
    """Hard reset: the supervisor kills this process and boots the board again."""
    _pin_call(0x52, 0)  # "R"
    while True:  # a reset never returns; wait for the supervisor to pull the plug
        import time

        time.sleep(1)


def soft_reset():
    raise SystemExit


def reset_cause():
    return _cfg["cause"]


def unique_id():
    return _cfg["uid"]


def freq(hz=None):
    if hz is None:
        return _cfg["freq"]
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _cfg["freq"] = hz


def idle():
    pass


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def lightsleep(ms=None):
    import time

    time.sleep_ms(ms or 0)


def deepsleep(ms=0):
    """The chip sleeps `ms` (0: until reset), then boots with reset_cause() DEEPSLEEP_RESET."""
    t = int(ms or 0)
    _req[4] = t & 0xFF
    _req[5] = (t >> 8) & 0xFF
    _req[6] = (t >> 16) & 0xFF
    _req[7] = (t >> 24) & 0xFF
    _pin_call(0x44, 0)  # "D"
    while True:
        import time

        time.sleep(1)


class Pin:
    """A GPIO whose level lives in the supervisor, so host tests can set and read it."""

    IN = const(1)
    OUT = const(3)
    OPEN_DRAIN = const(7)
    PULL_UP = const(2)
    PULL_DOWN = const(1)
    IRQ_RISING = const(1)
    IRQ_FALLING = const(2)
    WAKE_LOW = const(4)
    WAKE_HIGH = const(5)
    DRIVE_0 = const(0)
    DRIVE_1 = const(1)
    DRIVE_2 = const(2)
    DRIVE_3 = const(3)

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if not 0 <= id <= 48:
            raise ValueError("invalid pin")
        self._id = id
        self._mode = self.IN
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode != -1:
            self._mode = mode
        p = 0 if pull in (-1, None) else pull
        _pin_call(0x6D, self._id, self._mode, p)  # "m"
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return _pin_call(0x67, self._id)  # "g"
        _pin_call(0x73, self._id, 1 if v else 0)  # "s"
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, *, wake=None, hard=False):
        """Call handler(pin) when the host changes the level (set_pin). Always a soft IRQ:
        scheduled with micropython.schedule() from a listener thread."""
        if handler is None:
            _irq.pop(self._id, None)
            trigger = 0
        else:
            _irq[self._id] = (handler, trigger, self)
            if not _irq_listening:
                _start_irq_listener()
        _pin_call(0x49, self._id, trigger)  # "I"
        return None

    def __repr__(self):
        return "Pin(%d)" % self._id


_irq = {}  # pin id -> (handler, trigger, Pin)
_irq_listening = False


def _irq_call(pin_id):
    e = _irq.get(pin_id)
    if e is not None:
        e[0](e[2])


def _irq_loop(s):
    import micropython

    ev = bytearray(2)
    while s.readinto(ev, 2) == 2:
        e = _irq.get(ev[0])
        if e is None:
            continue
        if (ev[1] and e[1] & Pin.IRQ_RISING) or (not ev[1] and e[1] & Pin.IRQ_FALLING):
            try:
                micropython.schedule(_irq_call, ev[0])
            except RuntimeError:
                pass  # schedule queue full: the edge is lost, as on a busy chip


def _start_irq_listener():
    global _irq_listening
    import _thread

    s, _ = _connect(b"hello irq\n")  # connected before returning: no edge is missed
    _thread.start_new_thread(_irq_loop, (s,))
    _irq_listening = True


class Signal:
    def __init__(self, pin, invert=False):
        self._pin = pin
        self._invert = invert

    def value(self, v=None):
        if v is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if v else 0) ^ self._invert)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class RTC:
    """Wall clock: host time plus an offset set by datetime() (kept until the next boot)."""

    _offset = 0

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        import time

        if dt is None:
            t = time.localtime(time.time() + RTC._offset)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        want = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        RTC._offset = want - time.time()

    def init(self, dt):
        self.datetime(dt)


class WDT:
    """Watchdog kept by the supervisor: not fed within `timeout` ms, the board resets with
    reset_cause() == WDT_RESET. Like the ESP32's, it cannot be stopped and survives soft
    reboots."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("timeout must be >= 1 ms")
        t = int(timeout)
        _req[4] = t & 0xFF
        _req[5] = (t >> 8) & 0xFF
        _req[6] = (t >> 16) & 0xFF
        _req[7] = (t >> 24) & 0xFF
        _pin_call(0x57, 0)  # "W": start (or re-arm) with the timeout in bytes 4..7

    def feed(self):
        _pin_call(0x46, 0)  # "F"


class PWM:
    """Minimal PWM: keeps its settings (enough for a codec's MCLK fallback)."""

    def __init__(self, dest, *, freq=5000, duty_u16=None, duty_ns=None, invert=False):
        self._pin = dest
        self._freq = freq
        self._duty = duty_u16 if duty_u16 is not None else 32768

    def init(self, *, freq=None, duty_u16=None, duty_ns=None):
        if freq is not None:
            self._freq = freq
        if duty_u16 is not None:
            self._duty = duty_u16

    def freq(self, value=None):
        if value is None:
            return self._freq
        self._freq = value

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        self._duty = value

    def deinit(self):
        pass


class I2S:
    """I2S receiver fed by the virtual board's microphone (ESP32 port constructor).

    Samples come from the supervisor's microphone source (WAV, FIFO or socket), paced in real
    time or as fast as possible; after the source ends the bus delivers zeros. 32-bit slots
    carry 24 significant bits left-justified, like an INMP441.
    """

    RX = const(5)
    TX = const(6)
    MONO = const(0)
    STEREO = const(1)

    def __init__(
        self,
        id,
        *,
        sck=None,
        ws=None,
        sd=None,
        mck=None,
        mode=5,
        bits=16,
        format=0,
        rate=16000,
        ibuf=8192,
    ):
        if mode != self.RX:
            raise ValueError("the virtual board only simulates I2S.RX")
        if bits not in (16, 32):
            raise ValueError("invalid bits")
        if format not in (self.MONO, self.STEREO):
            raise ValueError("invalid format")
        self._id = id
        self._bits = bits
        self._format = format
        self._rate = rate
        self._ibuf = ibuf
        self._req = bytearray(8)
        self._stats = bytearray(16)
        self._sock = None
        self._open()

    def _open(self):
        hello = "hello mic %d %d %d %d\n" % (
            self._bits,
            2 if self._format == self.STEREO else 1,
            self._rate,
            self._ibuf,
        )
        self._sock, _ = _connect(hello.encode())

    def readinto(self, buf):
        """Blocking read of len(buf) bytes of slots; returns the number of bytes read."""
        n = len(buf)
        frame = (self._bits // 8) * (2 if self._format == self.STEREO else 1)
        n -= n % frame
        if n == 0:
            return 0
        if self._sock is None:
            self._open()
        r = self._req
        r[0] = 0x72  # "r"
        r[4] = n & 0xFF
        r[5] = (n >> 8) & 0xFF
        r[6] = (n >> 16) & 0xFF
        r[7] = (n >> 24) & 0xFF
        try:
            self._sock.write(r)
            got = self._sock.readinto(buf, n)
        except BaseException:
            # Interrupted mid-transfer (Ctrl-C): the stream is out of step, start afresh.
            self._sock.close()
            self._sock = None
            raise
        return got

    def stats(self):
        """Simulation only: dict(source_samples, zero_samples, overruns, ended)."""
        if self._sock is None:
            self._open()
        r = self._req
        r[0] = 0x69  # "i"
        self._sock.write(r)
        self._sock.readinto(self._stats, 16)
        s = self._stats
        v = [s[i] | s[i + 1] << 8 | s[i + 2] << 16 | s[i + 3] << 24 for i in (0, 4, 8, 12)]
        return {"source_samples": v[0], "zero_samples": v[1], "overruns": v[2], "ended": bool(v[3])}

    def irq(self, handler):
        raise NotImplementedError("I2S.irq is not simulated; use blocking readinto")

    def deinit(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @staticmethod
    def shift(*, buf, bits, shift):
        import array

        a = array.array("h" if bits == 16 else "i", buf)
        for i in range(len(a)):
            a[i] = a[i] << shift if shift > 0 else a[i] >> -shift
        buf[:] = bytes(a)


class I2C:
    """Minimal I2C bus: a few fake register devices (address -> bytearray(256))."""

    _devices = {}

    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._freq = freq

    @classmethod
    def _sim_add_device(cls, addr, mem=None):
        cls._devices[addr] = mem if mem is not None else bytearray(256)

    def _dev(self, addr):
        try:
            return self._devices[addr]
        except KeyError:
            raise OSError(116) from None  # ETIMEDOUT, what the ESP32 port raises

    def scan(self):
        return sorted(self._devices)

    def writeto(self, addr, buf, stop=True):
        self._dev(addr)
        return len(buf)

    def readfrom(self, addr, nbytes, stop=True):
        self._dev(addr)
        return bytes(nbytes)

    def readfrom_into(self, addr, buf, stop=True):
        self._dev(addr)
        for i in range(len(buf)):
            buf[i] = 0

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        mem = self._dev(addr)
        for i, b in enumerate(buf):
            mem[(memaddr + i) % len(mem)] = b

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        mem = self._dev(addr)
        return bytes(mem[(memaddr + i) % len(mem)] for i in range(nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        mem = self._dev(addr)
        for i in range(len(buf)):
            buf[i] = mem[(memaddr + i) % len(mem)]


class SoftI2C(I2C):
    pass
