"""What the chip's grammar decoder costs: time, instructions and heap of one decision.

    python -m voicenode_tools.bench.grammar_cost [--file commands/home.toml] [--rows 100]
        [--units phones|words] [--model models/commands_home] [--no-callgrind] [--json OUT]

The command set is compiled (`voicenode_tools.grammar`), written as a `.vcg`, loaded by the
firmware's `voicenode.grammar` on the MicroPython Unix port and asked to decode a random
costgram of `rows` rows (100 rows = the whole 3 s listening window at stride 3, the worst
case) several times:

- time per decode of all rows and per row on the Unix port (x64, `time.ticks_us`; the
  recogniser decodes each row as it arrives), and of the decision itself (`finish`);
- x64 instructions per decision: `valgrind --tool=callgrind` on `micropython`, the run with
  5 decisions minus the run with 1, divided by 4 (load and start-up cancel out); and per
  node and row, the unit of the Viterbi loop (the Xtensa count differs, the shape does not);
- heap: `gc.mem_alloc()` before and after `grammar.load` (the file kept as one bytearray, the
  S/K arrays of every node, the pattern tuples).

With `--model BASE` (a command model: `BASE.json`, `.vcg`, its phone network) also the whole
`voicenode.commands.Recognizer` on the Unix port over a listening window of real speech
(tests/data/speech_16k.wav through the reference front end): its heap (modules imported
before, as in the node), the time per `step`
(mean, and the slowest: a step that runs the network and decodes a row) and of the decision.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.bench import measure

SCRIPT = """
import sys, gc, time, random
sys.path.insert(0, {fw!r})
from voicenode import grammar
gc.collect()
a0 = gc.mem_alloc()
g = grammar.load({path!r})
gc.collect()
a1 = gc.mem_alloc()
random.seed(1)
cost = bytearray(random.getrandbits(8) for _ in range({rows} * g.n_classes))
best = None
t = time.ticks_us()
for _ in range({n}):
    best = g.decode(cost, 0, {rows})
dt = time.ticks_diff(time.ticks_us(), t)
t = time.ticks_us()
for _ in range({n}):
    best = g.finish({rows})
df = time.ticks_diff(time.ticks_us(), t)
print(a1 - a0, dt, best[0], g.n_nodes, df)
"""


def bench(file=None, rows: int = 100, callgrind: bool = True, log=print, units="phones") -> dict:
    from voicenode_tools import commandset
    from voicenode_tools import grammar as G

    path = Path(file) if file else commandset.default_path()
    g, _ = G.compile_commandset(commandset.load(path), units=units)
    with tempfile.TemporaryDirectory() as d:
        vcg = Path(d) / "g.vcg"
        vcg.write_bytes(g.to_bytes())

        def prog(n):
            p = Path(d) / f"run{n}.py"
            p.write_text(SCRIPT.format(fw=str(FIRMWARE_DIR), path=str(vcg), rows=rows, n=n))
            return measure.micropython_cmd("512k") + [str(p)]

        _, out = measure.run(prog(20))
        heap, us, _, nodes, fin = (int(x) for x in out.split())
        res = {
            "command_set": str(path),
            "units": units,
            "nodes": nodes,
            "preds": int(len(g.preds)),
            "patterns": len(g.patterns),
            "file_bytes": len(g.to_bytes()),
            "rows": rows,
            "heap_bytes": heap,
            "unix_ms_per_decision": round(us / 20 / 1000, 2),
            "unix_ms_per_row": round(us / 20 / 1000 / rows, 3),
            "unix_ms_finish": round(fin / 20 / 1000, 3),
        }
        log(f"{path.name} ({units}): {nodes} nodes, {len(g.preds)} predecessors, {len(g.patterns)} "
            f"patterns, {res['file_bytes']} B file, {heap} B heap after load")  # fmt: skip
        log(f"Unix port: {res['unix_ms_per_decision']} ms per decode of {rows} rows "
            f"({res['unix_ms_per_row']} ms per row, as the recogniser streams them), "
            f"{res['unix_ms_finish']} ms for the decision (finish)")  # fmt: skip
        if callgrind:
            c1, c5 = measure.callgrind(prog(1)), measure.callgrind(prog(5))
            per = (c5 - c1) / 4
            res["x64_instructions_per_decision"] = int(per)
            res["x64_instructions_per_node_row"] = round(per / (nodes * rows), 1)
            log(f"callgrind: {per / 1e6:.2f} M x64 instructions per decision, "
                f"{res['x64_instructions_per_node_row']} per node and row")  # fmt: skip
    return res


RECOGNIZER = """
import sys, gc, time
sys.path.insert(0, {fw!r})
from voicenode.commands import Recognizer
from voicenode.nn import model  # imported already in the node (the wake word's loader)
from voicenode.dsp import params
gc.collect()
a0 = gc.mem_alloc()
rec = Recognizer({base!r})
gc.collect()
a1 = gc.mem_alloc()
x = open({frames!r}, 'rb').read()
frames = [bytearray(x[40 * i:40 * i + 40]) for i in range(len(x) // 40)]
total = 0
slowest = 0
steps = 0
decision = 0
for w in range(0, len(frames) - 300, 150):
    rec.reset()
    for i in range(w, w + 300):
        t = time.ticks_us()
        r = rec.step(frames[i])
        dt = time.ticks_diff(time.ticks_us(), t)
        if r is not None:
            decision = max(decision, dt)
            break
        total += dt
        steps += 1
        slowest = max(slowest, dt)
print(a1 - a0, total, steps, slowest, decision)
"""


def recognizer_cost(base, log=print) -> dict:
    """Heap and step times of the firmware's Recognizer for the model at `base`."""
    from voicenode_tools import REPO_ROOT
    from voicenode_tools.audio import load_16k
    from voicenode_tools.reference import frontend

    feats = frontend.features(load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav"))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "frames.bin"
        f.write_bytes(feats.astype("uint8").tobytes())
        p = Path(d) / "rec.py"
        p.write_text(RECOGNIZER.format(fw=str(FIRMWARE_DIR), base=str(base), frames=str(f)))
        _, out = measure.run(measure.micropython_cmd("1m") + [str(p)])
    heap, total, steps, slowest, decision = (int(x) for x in out.split())
    res = {
        "recognizer_heap_bytes": heap,
        "unix_us_per_step": round(total / max(steps, 1), 1),
        "unix_us_slowest_step": slowest,
        "unix_us_decision_step": decision,
    }
    log(f"Recognizer({Path(base).name}): {heap} B heap; Unix port {res['unix_us_per_step']} us "
        f"per step (slowest {slowest} us), the deciding step {decision} us")  # fmt: skip
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="command set (default commands/home.toml)")
    ap.add_argument("--rows", type=int, default=100, help="costgram rows per decision")
    ap.add_argument(
        "--units",
        choices=("phones", "words"),
        default="phones",
        help="grammar units (the shipped model uses words)",
    )
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction count")
    ap.add_argument("--model", help="also measure the Recognizer of this command model (base)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    res = bench(a.file, a.rows, not a.no_callgrind, log=log, units=a.units)
    if a.model:
        res.update(recognizer_cost(a.model, log=log))
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
