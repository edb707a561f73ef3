"""Benchmark: cost of the int8 network plus detector on the MicroPython Unix port.

    python -m voicenode_tools.bench.nn_cost [--model PATH.vnm | --spec bench|train]
                                            [--seconds 20] [--no-callgrind] [--json OUT]

For a model (default: a seeded random model of `reference.nn.BENCH_SPEC`, microWakeWord-sized,
22.4k MACs per 30 ms step) run by `voicenode.wake.Detector` on random feature frames:

- instructions per second of audio: `valgrind --tool=callgrind` on `micropython`, the same
  script on a tiny input (same set-up, 30 frames) subtracted to remove start-up and loading;
  also per model step and per multiply-accumulate, for the network alone, and for the dense
  kernel alone (a 256 -> 256 layer);
- CPU time per second of audio on this machine (best of 3, start-up subtracted, at least
  5 minutes of audio);
- heap: `gc.mem_alloc()` around loading the model into a Detector (buffers, state, objects),
  the sidecar's `heap_bytes` estimate, and the smallest `-X heapsize` (bisection) that imports
  the firmware, loads the model and runs 300 frames, from .py sources and from x64 .mpy files
  (as deployed), next to the same for a script that only imports.

Targets (issue 4): <= 25 M instructions per second of audio, <= 48 KB of heap for models and
state, no allocation per step (that one is a test: tests/unix/test_nn.py, test_wake.py).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.bench import measure
from voicenode_tools.device.build import mpy_cross_binary

TARGET_INSTR_PER_S = 25e6
TARGET_HEAP = 48 * 1024
FRAMES_PER_S = 100

_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from voicenode.wake import Detector
# "any": a kernel benchmark model, not made for this front end (its sidecar records none)
det = Detector([sys.argv[2]], frontend={{}} if sys.argv[6:] == ["any"] else None)
if len(det.models) != 1:  # refused (e.g. not enough heap): this run does not count
    print(det.errors)
    sys.exit(1)
n = 30
frames = [bytearray({n_mels}) for i in range(n)]
f = open(sys.argv[3], 'rb')
for fr in frames:
    f.readinto(fr)
f.close()
total = int(sys.argv[4])
hits = 0
if sys.argv[5] == "det":  # network + detector
    for i in range(total):
        hits += det.step(frames[i % n])
else:  # the network alone
    m = det.models[0]
    for i in range(total):
        hits += m.step(frames[i % n]) >= 0
print(hits, total)
"""

_IMPORT_ONLY = """
import sys
sys.path.insert(0, sys.argv[1])
from voicenode.wake import Detector
print(0)
"""

_HEAP = """
import sys, gc
sys.path.insert(0, sys.argv[1])
from voicenode.wake import Detector
gc.collect(); a = gc.mem_alloc()
det = Detector([sys.argv[2]])
gc.collect(); b = gc.mem_alloc()
print(b - a)
"""


def _compile_firmware(dest: Path):
    """x64 .mpy files of the firmware package (what deploy copies, for this machine)."""
    for src in (FIRMWARE_DIR / "voicenode").rglob("*.py"):
        out = dest / src.relative_to(FIRMWARE_DIR).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [mpy_cross_binary(), "-march=x64", "-o", str(out), str(src)],
            check=True,
            capture_output=True,
        )


def _save(model, path, name, frontend=None):
    side = dict(name=name, wake_phrase=name, cutoff=0.99, window=5, cooloff=20)
    side["frontend"] = _frontend() if frontend is None else frontend
    model.save(path, side)


def _frontend():
    from voicenode_tools.reference import nn

    return nn.frontend_params()


def bench(model_path=None, seconds=20.0, callgrind=True, seed=1, spec="bench", log=print):
    """Measure and log the figures; return them as a dict (see the module docstring)."""
    from voicenode_tools.reference import nn

    res = {"seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="vn-nn-bench-") as d:
        d = Path(d)
        if model_path is None:
            layers = nn.BENCH_SPEC
            if spec == "train":  # the training's default network (torch is imported for it)
                from voicenode_tools.train.model import DEFAULT_SPEC

                layers = [tuple(x) + ("relu",) for x in DEFAULT_SPEC[:-1]]
                layers.append(tuple(DEFAULT_SPEC[-1]) + ("sigmoid",))
            model_path = d / f"{spec}.vnm"
            _save(nn.random_model(np.random.default_rng(seed), spec=layers), model_path, spec)
        model = nn.QuantModel.load(model_path)
        n_mels = model.n_in
        res.update(
            model=str(model_path),
            layers=model.sidecar.get("layers"),
            stride=model.stride,
            macs_per_step=model.macs_per_step,
            macs_per_s=model.macs_per_step * FRAMES_PER_S / model.stride,
            heap_estimate=model.heap_bytes(),
        )
        log(
            f"model: {model_path.name if hasattr(model_path, 'name') else model_path} "
            f"({len(model.layers)} layers, stride {model.stride}, "
            f"{model.macs_per_step} MACs per step, {res['macs_per_s'] / 1e3:.0f}k MACs/s)"
        )
        frames = np.random.default_rng(seed + 1).integers(0, 256, (30, n_mels), dtype=np.uint8)
        (d / "frames.bin").write_bytes(frames.tobytes())
        (d / "run.py").write_text(_RUN.format(n_mels=n_mels))
        (d / "import.py").write_text(_IMPORT_ONLY)
        (d / "heap.py").write_text(_HEAP)
        total = int(seconds * FRAMES_PER_S)
        tiny = 30

        def script(n, fw=FIRMWARE_DIR, mode="det", path=model_path, frames="frames.bin"):
            check = "any" if frames != "frames.bin" else "params"
            return [str(d / "run.py"), str(fw), str(path), str(d / frames), str(n), mode, check]

        def run(n, **kw):
            return measure.micropython_cmd("512k") + script(n, **kw)

        def per_s(cmd_big, cmd_small, n_big, n_small):
            return (measure.callgrind(cmd_big) - measure.callgrind(cmd_small)) / (
                (n_big - n_small) / FRAMES_PER_S
            )

        # CPU time of the child (steadier than wall time on a shared machine), over at least
        # 5 minutes of audio so that start-up and scheduling noise do not dominate
        long = max(total, 300 * FRAMES_PER_S)
        wall = min(measure.run(run(long), timeout=1800, cpu=True)[0] for _ in range(3)) - min(
            measure.run(run(tiny), timeout=1800, cpu=True)[0] for _ in range(3)
        )
        res["wall_s_per_s_audio"] = wall / ((long - tiny) / FRAMES_PER_S)
        log(
            f"cpu: {res['wall_s_per_s_audio'] * 1e3:.2f} ms per second of audio "
            f"({1 / res['wall_s_per_s_audio']:.0f}x real time on this machine)"
        )
        if callgrind:
            if shutil.which("valgrind") is None:
                raise SystemExit("valgrind is not installed (apt-get install valgrind)")
            total_s = per_s(run(total), run(tiny), total, tiny)
            steps_per_s = FRAMES_PER_S / model.stride
            res.update(
                instr_per_s=total_s,
                instr_per_step=total_s / steps_per_s,
                instr_per_mac=total_s / res["macs_per_s"],
                target_instr_per_s=TARGET_INSTR_PER_S,
            )
            log(
                f"callgrind: {total_s / 1e6:.2f} M instructions per second of audio "
                f"(target <= {TARGET_INSTR_PER_S / 1e6:.0f} M): "
                f"{res['instr_per_step'] / 1e3:.0f}k per model step, "
                f"{res['instr_per_mac']:.1f} per MAC (network + detector)"
            )
            net = per_s(run(total, mode="net"), run(tiny, mode="net"), total, tiny)
            res["instr_per_s_network"] = net
            log(
                f"  the network alone: {net / 1e6:.2f} M/s; detector (post-processing, frame "
                f"loop): {(total_s - net) / 1e6:.2f} M/s"
            )
            # The dense kernel alone: one 256 -> 256 layer (65,536 MACs per frame).
            dense = nn.random_model(
                np.random.default_rng(seed),
                n_mels=256,
                spec=[("dense", 256, 1, 1, 1, "relu"), ("dense", 1, 1, 1, 1, "sigmoid")],
            )
            _save(dense, d / "dense.vnm", "dense", frontend={})
            rows = np.random.default_rng(seed).integers(0, 256, (30, 256), dtype=np.uint8)
            (d / "dense.bin").write_bytes(rows.tobytes())
            kw = dict(mode="net", path=d / "dense.vnm", frames="dense.bin")
            kernel = per_s(run(200, **kw), run(20, **kw), 200, 20) / FRAMES_PER_S
            res["dense_instr_per_mac"] = kernel / dense.macs_per_step
            log(
                f"  dense kernel (256 -> 256 per frame, requantisation and calls included): "
                f"{res['dense_instr_per_mac']:.2f} instructions per MAC"
            )
        heap_cmd = measure.micropython_cmd("512k") + [
            str(d / "heap.py"),
            str(FIRMWARE_DIR),
            str(model_path),
        ]
        res["heap_alloc"] = int(measure.run(heap_cmd, timeout=1800)[1].split()[-1])
        log(
            f"heap: {res['heap_alloc']} bytes allocated by Detector([model]) on the 64-bit port "
            f"(sidecar estimate {res['heap_estimate']}, target <= {TARGET_HEAP})"
        )
        _compile_firmware(d / "mpy")
        for label, fw in (("py", FIRMWARE_DIR), ("mpy", d / "mpy")):
            full = measure.heap_bisect(script(300, fw), lo=4096, step=512)
            bare = measure.heap_bisect([str(d / "import.py"), str(fw)], lo=4096, step=512)
            res[f"min_heapsize_{label}"] = full
            res[f"min_heapsize_import_only_{label}"] = bare
            log(
                f"smallest -X heapsize from .{label}: {full} bytes to load and run, "
                f"{bare} to import only (difference {full - bare})"
            )
    res["meets_instr_target"] = res.get("instr_per_s", 0) <= TARGET_INSTR_PER_S
    res["meets_heap_target"] = res["heap_alloc"] <= TARGET_HEAP
    return res


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m voicenode_tools.bench.nn_cost", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", help="a .vnm model (default: a seeded random model of --spec)")
    p.add_argument(
        "--spec",
        choices=("bench", "train"),
        default="bench",
        help="random model shape: reference.nn.BENCH_SPEC or the training's DEFAULT_SPEC",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of audio (frames) to run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-callgrind", action="store_true", help="skip the instruction count")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    res = bench(args.model, args.seconds, not args.no_callgrind, args.seed, args.spec)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
