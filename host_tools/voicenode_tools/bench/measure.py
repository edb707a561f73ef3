"""What every benchmark measures with: the MicroPython command, run times, callgrind
instruction counts and the smallest `-X heapsize` a script needs."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def micropython_cmd(heapsize: str = "256k") -> list[str]:
    """The `micropython` command with a heap size, ready for arguments: the one the virtual
    board runs ($VOICENODE_MICROPYTHON, next to this Python, or on PATH), never a launcher
    found first on PATH (a pyenv shim runs another interpreter and hides it from callgrind)."""
    from voicenode_tools.sim.supervisor import micropython_command

    try:
        exe = micropython_command()
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    # The PyPI `micropython` command is a CPython script: run it under the same interpreter.
    with open(exe, "rb") as f:
        head = f.readline()
    if head.startswith(b"#!") and b"python" in head:
        return [sys.executable, exe, "-X", f"heapsize={heapsize}"]
    return [exe, "-X", f"heapsize={heapsize}"]


def run(cmd, timeout: float = 3600, cpu: bool = False) -> tuple[float, str]:
    """Run a command; returns (seconds, stdout): wall time, or with cpu=True the child's
    user + system CPU time (steadier on a loaded machine)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if cpu:
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        dt = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))}... failed:\n{r.stdout}\n{r.stderr}")
    return dt, r.stdout


def callgrind(cmd, toggle: str | None = None, timeout: float = 7200) -> int:
    """Instructions the command executes (valgrind callgrind); with `toggle`, only inside
    that function."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cg.out"
        vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        if toggle:
            vg.append(f"--toggle-collect={toggle}")
        r = subprocess.run(vg + list(cmd), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"callgrind failed:\n{r.stderr[-2000:]}")
        text = out.read_text(errors="replace")
        m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(
            r"^totals:\s+(\d+)", text, re.M
        )
        return int(m.group(1))


def heap_bisect(args, lo: int = 1024, hi: int = 1 << 20, step: int = 256) -> int | None:
    """Smallest `-X heapsize` (bytes, to `step`) with which `micropython ARGS` succeeds, or
    None if even `hi` is not enough."""

    def ok(size):
        r = subprocess.run(
            micropython_cmd(str(size)) + list(args), capture_output=True, text=True, timeout=600
        )
        return r.returncode == 0

    if not ok(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
