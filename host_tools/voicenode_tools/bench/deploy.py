"""Benchmark: `voicenode deploy` on the virtual board.

    python -m voicenode_tools.bench.deploy [--repeat 5] [--json OUT]

On a fresh virtual board (its own flash image), with the real firmware tree and the default
board's files:

- compile: mpy-cross for the whole tree, cold (empty cache) and warm (cached);
- full deploy: first install on an empty flash (every file sent);
- unchanged: deploy of the same tree again (nothing sent), median of --repeat runs;
- one module changed: a copy of the tree with one line added to one module (that file sent,
  the rest copied on the device).

Every deploy time is end to end as the user sees it from `deploy()`: connect with a soft
reset, survey, compile (cached), transfer, verify, switch, soft reset and the wait for the
new version's boot event. The virtual board is a pty on this machine: a real ESP32-S3 over
USB is slower to transfer; these figures do not stand for one.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args(argv)

    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools.device import build, deploy
    from voicenode_tools.sim.board import VirtualBoard

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build.CACHE_DIR = tmp / "mpy-cache"
        t = time.monotonic()
        b = build.build("x64", FIRMWARE_DIR, deploy.DEFAULT_BOARD)
        out["compile_cold_s"] = round(time.monotonic() - t, 3)
        t = time.monotonic()
        build.build("x64", FIRMWARE_DIR, deploy.DEFAULT_BOARD)
        out["compile_warm_s"] = round(time.monotonic() - t, 3)
        out["files"] = len(b.files)
        out["bytes"] = sum(len(v) for v in b.files.values())
        build.CACHE_DIR = tmp / "mpy-cache-2"  # the full deploy compiles cold again

        with VirtualBoard(tmp / "flash.img", realtime=False) as vb:
            r = deploy.deploy(vb.port, source=FIRMWARE_DIR)
            out["full_deploy_s"] = round(r.seconds, 3)
            out["full_uploaded_files"] = len(r.uploaded)
            out["full_uploaded_bytes"] = r.bytes_uploaded
            out["full_booted"] = r.booted
            times = []
            for _ in range(args.repeat):
                r = deploy.deploy(vb.port, source=FIRMWARE_DIR)
                assert not r.uploaded, r.uploaded
                times.append(r.seconds)
            out["unchanged_deploy_s_median"] = round(statistics.median(times), 3)
            out["unchanged_deploy_s_all"] = [round(x, 3) for x in times]

            tree = tmp / "tree"
            shutil.copytree(FIRMWARE_DIR, tree, ignore=shutil.ignore_patterns("__pycache__"))
            init = tree / "voicenode" / "__init__.py"
            init.write_text(init.read_text() + "\n_BENCH_CHANGE = 1\n")
            r = deploy.deploy(vb.port, source=tree)
            out["one_change_deploy_s"] = round(r.seconds, 3)
            out["one_change_uploaded"] = r.uploaded
            out["one_change_copied_files"] = len(r.copied)

    for k, v in out.items():
        print(f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
