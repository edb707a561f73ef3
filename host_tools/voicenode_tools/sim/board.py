"""`VirtualBoard`: a MicroPython board you can `mpremote connect` to, without hardware.

    with VirtualBoard(tmp_path / "flash.img", mic="speech.wav") as board:
        subprocess.run(["mpremote", "connect", board.port, "exec", "print(1)"])

The board is the MicroPython Unix port with its own littlefs flash image mounted at `/`, a
simulated `machine` module (I2S microphone fed from `mic`, pins the host can drive and read)
and ESP32-like soft reboot / hard reset behaviour. See `supervisor.py` for how it works.
"""

from __future__ import annotations

from pathlib import Path

from .supervisor import Supervisor, default_flash_image, find_running

__all__ = ["VirtualBoard", "default_flash_image", "find_running"]


class VirtualBoard:
    """A virtual ESP32-S3 running MicroPython, reached on a real `/dev/pts/N` port.

    Args:
        flash_image: host file holding the board's flash (created erased and formatted on
            first use; default ~/.cache/voicenode/sim/flash.img).
        mic: what the microphone hears: a WAV path, `fifo:PATH` or `tcp:HOST:PORT`
            (None: silence).
        realtime: pace the microphone at its sample rate (False: as fast as it is read).
        heapsize: MicroPython heap, as for `micropython -X heapsize=` (e.g. "256k").
        mic_shift: where a 16-bit source sample sits in the I2S slot (s << mic_shift; 16 is
            full scale). Calibrate it to the board's conversion (its `shift - bit_delay`) so
            the node hears the recording's own samples.
    """

    def __init__(self, flash_image=None, mic=None, realtime=True, heapsize="256k", mic_shift=16):
        self.flash_image = Path(flash_image) if flash_image else default_flash_image()
        self.mic = mic
        self.realtime = realtime
        self.heapsize = heapsize
        self.mic_shift = mic_shift
        self.log = None  # callable(str) for supervisor debug messages
        self._sup = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> str:
        """Boot the board; returns the real pty path (`/dev/pts/N`), also `.port`."""
        if self._sup is not None and self._sup.state == "running":
            return self._sup.port
        self._sup = Supervisor(
            self.flash_image,
            self.mic,
            self.realtime,
            self.heapsize,
            log=self.log,
            mic_shift=self.mic_shift,
        )
        return self._sup.start()

    @property
    def port(self):
        """The pty path clients connect to, or None before start()."""
        return self._sup.port if self._sup else None

    @property
    def running(self) -> bool:
        return self._sup is not None and self._sup.state == "running"

    @property
    def state(self) -> str:
        """The board state: "new", "running", "stopped" or "unplugged" (after kill())."""
        return self._sup.state if self._sup else "new"

    @property
    def pid(self):
        """Process id of the MicroPython child (changes at every reboot)."""
        return self._sup.child_pid if self._sup else None

    @property
    def reset_cause(self) -> int:
        """What `machine.reset_cause()` answers now: 1 power-on, 2 hard reset (kept across
        soft reboots, as on the ESP32 port)."""
        return self._sup.reset_cause if self._sup else 0

    @property
    def boots(self) -> int:
        """How many times MicroPython has started (power-on, soft reboots, hard resets)."""
        return self._sup.boots if self._sup else 0

    def stop(self) -> None:
        """Shut down cleanly: child and supervisor gone, pty closed."""
        if self._sup is not None:
            self._sup.stop()

    def kill(self) -> None:
        """Pull the plug: SIGKILL the MicroPython child. The port is closed (clients get an
        I/O error, new connections fail) and the board stays dead until start()."""
        if self._sup is not None:
            self._sup.kill()

    def hard_reset(self) -> None:
        """Press the reset button (reset_cause() becomes HARD_RESET, main.py runs)."""
        self._require()
        self._sup.hard_reset()

    def set_pin(self, num: int, level: int) -> None:
        """Drive GPIO `num` from outside (a button, a wire)."""
        self._require()
        self._sup.set_pin(num, level)

    def get_pin(self, num: int) -> int:
        """Read GPIO `num`: the level the board drives (or its pull if nobody drives it)."""
        self._require()
        return self._sup.get_pin(num)

    def mic_stats(self) -> dict:
        """Microphone counters: source_samples, zero_samples, overruns, ended."""
        self._require()
        return self._sup.mic.stats()

    @property
    def dropped_bytes(self) -> int:
        """Console output dropped because no client was reading."""
        return self._sup.dropped_bytes if self._sup else 0

    def _require(self):
        if self._sup is None:
            raise RuntimeError("the virtual board was never started")
