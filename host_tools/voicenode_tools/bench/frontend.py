"""Benchmark: the firmware front end on the MicroPython Unix port against microWakeWord's C one.

    python -m voicenode_tools.bench.frontend [--seconds 60] [--no-callgrind] [--kernels] [--json OUT]

For one minute of audio (the speech fixture repeated over quiet noise), side by side:

- firmware (`voicenode.dsp.frontend.Frontend` on `micropython`, fed 160 samples per call):
  instructions per second of audio with `valgrind --tool=callgrind` (a run on a tiny input
  is subtracted to remove interpreter start-up), wall time the same way;
- microWakeWord's C front end (TFLite Micro microfrontend, `pymicro_features`, from the
  `bench` extra) on the same audio: the same figures for the whole process (its Python
  driver loop included), and the instructions inside `FrontendProcessSamples` alone;
- the numpy reference's speed (times real time);
- with --kernels, callgrind instructions per call of each viper kernel (copy_in of one
  block, window, fft, power, mel, finish; the call from bytecode included) next to a whole
  step: the difference is the Python glue;
- heap: `gc.mem_alloc()` around `Frontend()`, and the smallest `-X heapsize` that runs a
  script importing the front end and processing the minute (found by bisection), next to
  the same for a script that only imports it.

Targets (issue 3): <= 15 M instructions per second of audio, <= 4x the C front end,
<= 16 KB of heap for buffers and state.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.bench import measure
from voicenode_tools.device.build import mpy_cross_binary

TARGET_INSTR_PER_S = 15e6
TARGET_RATIO_C = 4.0
TARGET_HEAP = 16 * 1024

_FW_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from array import array
from voicenode.dsp.frontend import Frontend
fe = Frontend()
buf = array("h", bytes(320))
f = open(sys.argv[2], "rb")
n = 0
while f.readinto(buf) == 320:
    n += fe.process(buf)
print(n)
"""

_FW_IMPORT_ONLY = """
import sys
sys.path.insert(0, sys.argv[1])
from array import array
from voicenode.dsp.frontend import Frontend
buf = array("h", bytes(320))
f = open(sys.argv[2], "rb")
print(0)
"""

_FW_HEAP = """
import sys, gc
sys.path.insert(0, sys.argv[1])
from voicenode.dsp.frontend import Frontend
import voicenode.dsp.tables
gc.collect(); a = gc.mem_alloc()
fe = Frontend()
gc.collect(); b = gc.mem_alloc()
print(b - a)
"""

_C_SCRIPT = """
import sys
from pymicro_features import MicroFrontend
audio = open(sys.argv[1], "rb").read()
fe = MicroFrontend()
i = 0
n = 0
while i + 320 <= len(audio):
    out = fe.process_samples(audio[i:i + 320])
    i += out.samples_read * 2
    if out.features:
        n += 1
print(n)
"""


def make_audio(seconds, seed=0):
    """The speech fixture repeated over quiet noise: int16, 16 kHz."""
    from voicenode_tools.audio import load_16k

    speech = load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav").astype(np.float64)
    n = int(seconds * 16000)
    reps = int(np.ceil(n / len(speech)))
    x = np.tile(speech, reps)[:n]
    x += np.random.default_rng(seed).standard_normal(n) * 20
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _best_wall(cmd, repeat=3, cpu=False):
    return min(measure.run(cmd, cpu=cpu)[0] for _ in range(repeat))


def _compile_mpy(dst):
    """The front end's modules as x64 .mpy (what a deployment loads: no compiler RAM)."""
    src = FIRMWARE_DIR / "voicenode"
    (dst / "voicenode" / "dsp").mkdir(parents=True)
    for f in [src / "__init__.py", *sorted((src / "dsp").glob("*.py"))]:
        rel = f.relative_to(FIRMWARE_DIR).with_suffix(".mpy")
        subprocess.run(
            [mpy_cross_binary(), "-march=x64", "-o", str(dst / rel), str(f)],
            check=True,
            timeout=120,
        )
    return dst


_KERNEL_SCRIPT = """
import sys, gc
sys.path.insert(0, sys.argv[1])
from array import array
from voicenode.dsp.frontend import Frontend
from voicenode.dsp import fft as V
fe = Frontend()
buf = array("h", bytes(320))
f = open(sys.argv[2], "rb")
which = sys.argv[3]
N = int(sys.argv[4])
for _ in range(5):
    f.readinto(buf)
    fe.process(buf)
A = fe._arena
fr = fe.frame
sl = fe._slots[0]
k = getattr(V, which, None)
i = 0
gc.collect()  # no collection inside the measured loop (the N = 0 run does the same)
if which == "step":
    while i < N:
        f.readinto(buf)
        fe.process(buf)
        i += 1
elif which == "read":  # the step loop without the front end
    while i < N:
        f.readinto(buf)
        i += 1
elif which == "copy_in":
    while i < N:
        A[V.H_OFF] = 0
        A[V.H_N] = 160
        V.copy_in(A, buf)
        i += 1
elif which == "finish":
    while i < N:
        V.finish(A, fr, sl)
        i += 1
else:
    while i < N:
        k(A)
        i += 1
"""

KERNELS = ("copy_in", "window", "fft", "power", "mel", "finish")


def kernel_costs(n=200, log=print):
    """Instructions per call of each kernel and per whole step (callgrind, the same script
    with n calls minus with none), on speech: {name: instructions}."""
    res = {}
    with tempfile.TemporaryDirectory(prefix="vn-bench-") as d:
        d = Path(d)
        make_audio(max(3.0, (n + 10) / 100)).tofile(d / "a.raw")
        (d / "k.py").write_text(_KERNEL_SCRIPT)

        def run(which, count):
            cmd = measure.micropython_cmd() + [str(d / "k.py"), str(FIRMWARE_DIR), str(d / "a.raw")]
            return measure.callgrind(cmd + [which, str(count)])

        def per_call(which):
            return (run(which, n) - run(which, 0)) / n

        read = per_call("read")
        for which in ("step",) + KERNELS:
            res[which] = per_call(which) - (read if which == "step" else 0)
            log(f"  {which:8s} {res[which]:9.0f} instructions per call")
        total = sum(res[k] for k in KERNELS)
        log(
            f"  kernels together {total:.0f} (each figure includes its call from a bytecode "
            f"loop, about what the step's glue costs)"
        )
    return res


def bench(seconds=60.0, callgrind=True, log=print, kernels=False):
    res = {"seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="vn-bench-") as d:
        d = Path(d)
        pcm = make_audio(seconds)
        full, tiny = d / "full.raw", d / "tiny.raw"
        pcm.tofile(full)
        pcm[:480].tofile(tiny)
        (d / "fw.py").write_text(_FW_SCRIPT)
        (d / "fw_import.py").write_text(_FW_IMPORT_ONLY)
        (d / "fw_heap.py").write_text(_FW_HEAP)
        (d / "c.py").write_text(_C_SCRIPT)
        fw = lambda f: measure.micropython_cmd() + [str(d / "fw.py"), str(FIRMWARE_DIR), str(f)]  # noqa: E731
        cc = lambda f: [sys.executable, str(d / "c.py"), str(f)]  # noqa: E731

        steps = int(measure.run(fw(full))[1].split()[-1])
        res["steps"] = steps
        log(f"audio: {seconds:.0f} s, {steps} feature steps")

        # Wall time and CPU time (best of 3), start-up removed.
        res["fw_wall_s"] = _best_wall(fw(full)) - _best_wall(fw(tiny))
        res["fw_cpu_s"] = _best_wall(fw(full), cpu=True) - _best_wall(fw(tiny), cpu=True)
        log(f"firmware (Unix port) CPU time: {res['fw_cpu_s']:.3f} s")
        log(
            f"firmware (Unix port) wall: {res['fw_wall_s']:.3f} s "
            f"({seconds / res['fw_wall_s']:.0f}x real time)"
        )
        have_c = True
        try:
            import pymicro_features  # noqa: F401
        except ImportError:
            have_c = False
            log("pymicro_features missing: pip install -e '.[bench]' for the C comparison")
        if have_c:
            res["c_steps"] = int(measure.run(cc(full))[1].split()[-1])
            res["c_wall_s"] = _best_wall(cc(full)) - _best_wall(cc(tiny))
            res["c_cpu_s"] = _best_wall(cc(full), cpu=True) - _best_wall(cc(tiny), cpu=True)
            log(
                f"C microfrontend (+ Python loop) wall: {res['c_wall_s']:.3f} s, "
                f"{res['c_steps']} steps; CPU time {res['c_cpu_s']:.3f} s"
            )

        # numpy reference speed.
        from voicenode_tools.reference.frontend import features

        features(pcm[:16000])
        best = best_cpu = float("inf")
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            features(pcm)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        res["ref_x_realtime"] = seconds / best
        res["ref_x_realtime_cpu"] = seconds / best_cpu
        log(
            f"numpy reference: {res['ref_x_realtime']:.0f}x real time (wall), "
            f"{res['ref_x_realtime_cpu']:.0f}x per CPU second"
        )

        if callgrind and shutil.which("valgrind"):
            ir_full = measure.callgrind(fw(full))
            ir_tiny = measure.callgrind(fw(tiny))
            res["fw_instr_per_s"] = (ir_full - ir_tiny) / seconds
            res["fw_instr_per_step"] = (ir_full - ir_tiny) / steps
            log(
                f"firmware: {res['fw_instr_per_s'] / 1e6:.2f} M instructions per second of audio "
                f"({res['fw_instr_per_step']:.0f} per 10 ms step)"
            )
            if have_c:
                c_full = measure.callgrind(cc(full))
                c_tiny = measure.callgrind(cc(tiny))
                res["c_instr_per_s"] = (c_full - c_tiny) / seconds
                res["c_core_instr_per_s"] = (
                    measure.callgrind(cc(full), "FrontendProcessSamples") / seconds
                )
                res["ratio_vs_c"] = res["fw_instr_per_s"] / res["c_core_instr_per_s"]
                res["ratio_vs_c_with_loop"] = res["fw_instr_per_s"] / res["c_instr_per_s"]
                log(
                    f"C microfrontend: {res['c_core_instr_per_s'] / 1e6:.2f} M instr/s inside "
                    f"FrontendProcessSamples, {res['c_instr_per_s'] / 1e6:.2f} M with its "
                    f"Python driver loop"
                )
                log(
                    f"firmware / C: {res['ratio_vs_c']:.2f}x (C core), "
                    f"{res['ratio_vs_c_with_loop']:.2f}x (C with loop)"
                )

        # Heap.
        res["heap_construct"] = int(
            measure.run(measure.micropython_cmd() + [str(d / "fw_heap.py"), str(FIRMWARE_DIR)])[
                1
            ].split()[-1]
        )
        mpy = str(_compile_mpy(d / "mpy"))
        res["heapsize_min_run"] = measure.heap_bisect([str(d / "fw.py"), mpy, str(full)])
        res["heapsize_min_import"] = measure.heap_bisect([str(d / "fw_import.py"), mpy, str(full)])
        log(
            f"heap: Frontend() allocates {res['heap_construct']} bytes (gc.mem_alloc); smallest "
            f"-X heapsize (front end as .mpy): {res['heapsize_min_run']} to process the minute, "
            f"{res['heapsize_min_import']} to only import (difference "
            f"{res['heapsize_min_run'] - res['heapsize_min_import']})"
        )

    checks = {"heap <= 16 KB": res["heap_construct"] <= TARGET_HEAP}
    if "fw_instr_per_s" in res:
        checks["<= 15 M instr/s"] = res["fw_instr_per_s"] <= TARGET_INSTR_PER_S
    if "ratio_vs_c" in res:
        checks["<= 4x C"] = res["ratio_vs_c"] <= TARGET_RATIO_C
    res["targets"] = checks
    if kernels and callgrind and shutil.which("valgrind"):
        log("per 10 ms step (callgrind, x64):")
        res["kernels"] = kernel_costs(log=log)
    for k, v in checks.items():
        log(f"target {k}: {'met' if v else 'MISSED'}")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m voicenode_tools.bench.frontend", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--kernels", action="store_true", help="also the cost of each kernel")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    res = bench(args.seconds, callgrind=not args.no_callgrind, kernels=args.kernels)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
