"""Benchmark of the virtual board's console: `python -m voicenode_tools.sim.bench`.

Reports (one JSON object on stdout) what a user of the virtual board waits for, measured with
the real `mpremote` command against a fresh flash image:

* `exec_s`: `mpremote exec "print(1)"` (connect, Ctrl-C, raw REPL, soft reboot, exec),
* `soft_reset_s`: `mpremote soft-reset`,
* `cp_100k_to_s` / `cp_100k_from_s`: `fs cp` of a 100 KiB file with every byte value,
* `i2s_fast_kib_s`: I2S throughput from the board's microphone with `realtime=False`.

Each figure is the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from .board import VirtualBoard


def _mpremote(port, *args):
    t = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        timeout=120,
    )
    if out.returncode:
        raise RuntimeError((out.stdout + out.stderr).decode(errors="replace"))
    return time.monotonic() - t, out.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        blob = tmp / "blob.bin"
        blob.write_bytes(bytes(range(256)) * 400)
        wav = tmp / "noise.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(bytes(range(256)) * 1250)  # 10 s
        with VirtualBoard(tmp / "flash.img", mic=str(wav), realtime=False) as board:
            for _ in range(args.repeat):
                results.setdefault("exec_s", []).append(
                    _mpremote(board.port, "exec", "print(1)")[0]
                )
                results.setdefault("soft_reset_s", []).append(
                    _mpremote(board.port, "soft-reset")[0]
                )
                results.setdefault("cp_100k_to_s", []).append(
                    _mpremote(board.port, "fs", "cp", str(blob), ":blob.bin")[0]
                )
                results.setdefault("cp_100k_from_s", []).append(
                    _mpremote(board.port, "fs", "cp", ":blob.bin", str(tmp / "back.bin"))[0]
                )
                assert (tmp / "back.bin").read_bytes() == blob.read_bytes()
            code = (
                "import machine, time\n"
                "i2s = machine.I2S(0, sck=machine.Pin(4), ws=machine.Pin(5), sd=machine.Pin(6),"
                " mode=machine.I2S.RX, bits=32, format=machine.I2S.MONO, rate=16000, ibuf=8192)\n"
                "buf = bytearray(4096)\n"
                "t = time.ticks_us()\n"
                "for _ in range(64):\n"
                "    i2s.readinto(buf)\n"
                "print(time.ticks_diff(time.ticks_us(), t))\n"
            )
            for _ in range(args.repeat):
                _, out = _mpremote(board.port, "exec", code)
                us = int(out.split()[-1])
                results.setdefault("i2s_fast_kib_s", []).append(64 * 4096 / 1024 / (us / 1e6))
    summary = {k: round(statistics.median(v), 3) for k, v in results.items()}
    summary["repeat"] = args.repeat
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
