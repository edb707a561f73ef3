"""Benchmark: spoken-command recognition on voices kept out of training, beside PocketSphinx.

    python -m voicenode_tools.bench.commands [--model models/commands_home]
        [--commands 300] [--unknown 150] [--snrs 20 10 5] [--seed 77] [--json OUT]
        [--sets validation independent]

Test audio: command sentences drawn from the model's command set and sentences that are no
command (held-out text and near misses), each in a noisy room at each SNR, said by
- validation: the held-out espeak-ng voices and variants (`synth.ESPEAK_HELD_OUT_*`), never
  trained on (the cutoff was chosen on other draws of them; a different seed here);
- independent: the reserved synthesizers, flite and festival (`bench.evalvoices`), which no
  training or tuning ever used: nothing was chosen on them.
- people (only when asked, `--sets people`; needs the MBROLA packages, docs/TRAINING.md):
  five of espeak-ng's MBROLA voices (`synth.MBROLA_HELD_OUT`), recorded people's diphones
  at espeak-ng's speeds, pitches and warps; reserved like the independent voices (no recipe
  trains on any MBROLA voice, nothing is chosen on them).

- ours: the chip's recogniser through its bit-exact numpy twin (`reference.commands.recognize`,
  proved equal to the firmware on the Unix port by tests/unix/test_commands.py): features of
  the listening window, end-pointing, the int8 phone network, the grammar decoder, the cutoff;
- PocketSphinx 5 (extra `bench`: `pip install pocketsphinx`, its bundled US English acoustic
  model and dictionary) decoding the same 3 s of audio with a JSGF grammar generated from the
  same command file (`commandset.jsgf`); its hypothesis is mapped back to intent and slots.
  A grammar decoder has no "unknown": anything said comes out as some command, so its
  unknown-speech acceptance is what it is.

Reported per set and SNR: intent accuracy (commands whose intent is right), slot accuracy (of
those with slots, all slot values right), commands rejected as unknown, unknown speech
accepted as a command (these two with their 95 % Wilson intervals, `bench.intervals.wilson`),
decoding time, and how long after the speech the decision came.
Targets (issue 6): >= 95 % intent accuracy, <= 2 % unknown speech accepted, ahead of
PocketSphinx; the intent at most 500 ms after the speaker stops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from voicenode_tools import REPO_ROOT
from voicenode_tools.bench.intervals import wilson

DEFAULT_MODEL = REPO_ROOT / "models" / "commands_home"

# Words of the default set missing from PocketSphinx's cmudict (ARPAbet).
EXTRA_PRONUNCIATIONS = {"unmute": "AH N M Y UW T"}


def _job(args):
    from voicenode_tools.reference import frontend, params
    from voicenode_tools.train import commands as tc

    pcm, seed, snr, max_frames = args
    y, s0, lead = tc.scene_audio(pcm, seed, (snr, snr), clean=0.0)
    feats = frontend.features(y)
    step = int(params.STEP)
    win = tc.window_frames(feats, s0 // step, max_frames)
    audio = y[s0 : s0 + max_frames * step]
    # the frame of the window in which the speaker stops (the clip ends at its last sound)
    return audio, win, (lead - s0 + len(pcm) + step - 1) // step


def latency(results, ends) -> dict:
    """How long after the speaker stops the answer comes, over the utterances the
    end-pointer heard (`results` of `reference.commands.recognize`, `ends`: the frame in
    which each utterance's speech ends): median, 90th percentile and largest in ms, and the
    share within 500 ms (the target). The decision comes with the frame that ends the
    listening (`frames` frames after the window opened)."""
    lat = [10 * (r["frames"] - e) for r, e in zip(results, ends, strict=True)
           if "frames" in r and r.get("reason") != "silence"]  # fmt: skip
    if not lat:
        return {}
    a = np.array(lat, np.float64)
    return {"decision_ms_after_speech": float(np.median(a)),
            "decision_ms_after_speech_p90": float(np.percentile(a, 90)),
            "decision_ms_after_speech_max": float(a.max()),
            "decided_within_500ms": round(float(np.mean(a <= 500)), 4)}  # fmt: skip


class Sphinx:
    """PocketSphinx with a JSGF grammar of the command set."""

    def __init__(self, cs):
        from pocketsphinx import Decoder

        from voicenode_tools import commandset as C

        self.d = Decoder(samprate=16000, lm=None, loglevel="FATAL")
        words = {w for t, _, _ in cs.expand() for w in t.split()}
        for w in sorted(words):
            if self.d.lookup_word(w) is None:
                if w not in EXTRA_PRONUNCIATIONS:
                    raise RuntimeError(f"PocketSphinx has no pronunciation for {w!r}")
                self.d.add_word(w, EXTRA_PRONUNCIATIONS[w], True)
        self.d.add_jsgf_string("commands", C.jsgf(cs).encode())
        self.d.activate_search("commands")
        self.sentences = {t: (i, v) for t, i, v in cs.expand()}
        self.cs = cs

    def recognize(self, audio: np.ndarray) -> dict:
        self.d.start_utt()
        self.d.process_raw(np.ascontiguousarray(audio, np.int16).tobytes(), full_utt=True)
        self.d.end_utt()
        h = self.d.hyp()
        text = " ".join(h.hypstr.split()) if h is not None and h.hypstr else ""
        if text not in self.sentences:
            return {"intent": "unknown", "slots": {}, "text": text}
        intent, vals = self.sentences[text]
        slots = {s: self.cs.slots[s].values[k] for s, k in vals.items()}
        return {"intent": intent, "slots": slots, "text": text}


def metrics(results, truth) -> dict:
    """Scores of a list of decisions against (intent or "unknown", slots) truths."""
    cmd = [i for i, (t, _) in enumerate(truth) if t != "unknown"]
    unk = [i for i, (t, _) in enumerate(truth) if t == "unknown"]
    ok = [i for i in cmd if results[i]["intent"] == truth[i][0]]
    with_slots = [i for i in ok if truth[i][1]]
    slot_ok = sum(results[i]["slots"] == truth[i][1] for i in with_slots)
    unk_ok = sum(results[i]["intent"] != "unknown" for i in unk)
    return {
        "intent_accuracy": round(len(ok) / max(len(cmd), 1), 4),
        "intent_accuracy_95": wilson(len(ok), len(cmd)),
        "slot_accuracy": round(slot_ok / max(len(with_slots), 1), 4),
        "command_rejected": round(
            sum(results[i]["intent"] == "unknown" for i in cmd) / max(len(cmd), 1), 4
        ),
        "unknown_accepted": round(unk_ok / max(len(unk), 1), 4),
        "unknown_accepted_95": wilson(unk_ok, len(unk)),
        "commands": len(cmd),
        "unknown": len(unk),
        "per_intent": per_intent(results, truth),
    }


def before_rejection(results, truth, voices) -> dict:
    """Ours before its reject rule: the share of commands whose best path (the grammar's
    cheapest pattern, `decide`'s "pattern" as the intent it stands for in "best") names the
    right intent, overall and per voice ({voice: {"n", "best_path", "right"}}; the voice's
    name without its speed, pitch and warp): what the rejection costs, and for whom."""
    cmd = [i for i, (t, _) in enumerate(truth) if t != "unknown"]
    per: dict = {}
    for i in cmd:
        d = per.setdefault(voices[i], {"n": 0, "best_path": 0, "right": 0})
        d["n"] += 1
        d["best_path"] += results[i].get("best") == truth[i][0]
        d["right"] += results[i]["intent"] == truth[i][0]
    ok = sum(d["best_path"] for d in per.values())
    for d in per.values():
        d["best_path"] = round(d["best_path"] / d["n"], 3)
        d["right"] = round(d["right"] / d["n"], 3)
    return {"best_path_accuracy": round(ok / max(len(cmd), 1), 4),
            "per_voice": dict(sorted(per.items()))}  # fmt: skip


def per_intent(results, truth) -> dict:
    """For each intent said: {"n": utterances, "right": share decided right, "rejected":
    share answered unknown} (which commands the rejection costs)."""
    out: dict = {}
    for r, (t, _) in zip(results, truth, strict=True):
        if t == "unknown":
            continue
        d = out.setdefault(t, {"n": 0, "right": 0, "rejected": 0})
        d["n"] += 1
        d["right"] += r["intent"] == t
        d["rejected"] += r["intent"] == "unknown"
    for d in out.values():
        d["right"] = round(d["right"] / d["n"], 3)
        d["rejected"] = round(d["rejected"] / d["n"], 3)
    return dict(sorted(out.items()))


def _voices(kind: str, n: int, rng):
    from voicenode_tools.bench import evalvoices
    from voicenode_tools.train import synth

    if kind == "validation":
        return [synth.random_espeak_voice(rng, held_out=True) for _ in range(n)], synth.say
    if kind == "people":
        synth.check_mbrola()
        return [synth.random_person(rng) for _ in range(n)], synth.say
    vs = evalvoices.voices(rng)
    if not vs:
        raise RuntimeError("no reserved voices: apt-get install flite festival festvox-kallpc16k")
    return [vs[int(rng.integers(len(vs)))] for _ in range(n)], evalvoices.say


def run_bench(model=DEFAULT_MODEL, n_cmd=300, n_unk=150, snrs=(20, 10, 5), seed=77,
              sphinx=True, workers=2, log=print, sets=("validation", "independent")) -> dict:  # fmt: skip
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    from voicenode_tools import commandset as C
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.train import commands as tc

    m = rc.load(model)
    side = m.sidecar
    cs_file = Path(side["commandset"]["file"])
    if not cs_file.is_absolute():
        cs_file = REPO_ROOT / cs_file
    cs = C.load(cs_file)
    if cs.intent_names != side["layout"]["intents"]:
        raise RuntimeError(f"{cs_file} no longer matches {model}: retrain it")
    ps = Sphinx(cs) if sphinx else None
    max_frames = side["vad"]["max_frames"]
    out = {"model": str(model), "version": side["version"], "cutoff_avg": side["cutoff_avg"],
           "seed": seed, "sets": {}}  # fmt: skip
    for kind in sets:
        rng = np.random.default_rng([seed, 500, sets.index(kind)])
        cmds = tc.draw_commands(cs, n_cmd, rng)
        unks = tc.unknown_sentences(cs, "val", n_unk, rng)
        texts = [t for t, _, _ in cmds] + unks
        truth = [(cs.intents[k].name, {s: cs.slots[s].values[v] for s, v in vals.items()})
                 for _, k, vals in cmds] + [("unknown", {})] * len(unks)  # fmt: skip
        voices, say = _voices(kind, len(texts), rng)
        names = [v.label().split(":")[1] for v in voices]
        t0 = time.time()
        with ThreadPoolExecutor(workers) as ex:
            clips = list(ex.map(say, texts, voices))
        log(f"{kind}: synthesized {len(clips)} clips in {time.time() - t0:.0f}s")
        res = {"voices": sorted({v.label() for v in voices}), "snr": {}}
        for snr in snrs:
            jobs = [(c, int(rng.integers(1 << 62)), snr, max_frames) for c in clips]
            with mp.get_context("fork").Pool(workers) as pool:
                scenes = pool.map(_job, jobs, chunksize=8)
            t = time.process_time()
            ours = [rc.recognize(m, w) or {"intent": "unknown", "slots": {}} for _, w, _ in scenes]
            for r in ours:  # the intent of the best path, kept or rejected
                r["best"] = m.intent_of(r.get("pattern", -1))
            row = {"ours": metrics(ours, truth)}
            row["ours"].update(before_rejection(ours, truth, names))
            row["ours"]["host_ms_per_utterance"] = round(
                1000 * (time.process_time() - t) / len(scenes), 2
            )
            row["ours"].update(latency(ours, [e for _, _, e in scenes]))
            if ps is not None:
                t = time.process_time()
                theirs = [ps.recognize(a) for a, _, _ in scenes]
                row["pocketsphinx"] = metrics(theirs, truth)
                row["pocketsphinx"]["host_ms_per_utterance"] = round(
                    1000 * (time.process_time() - t) / len(scenes), 1
                )
            res["snr"][str(snr)] = row
            log(f"{kind} SNR {snr} dB: " + json.dumps(row))
        out["sets"][kind] = res
    return out


COST_CODE = """
import sys, gc, time
sys.path.insert(0, {fw!r})
from voicenode.commands import Recognizer
gc.collect()
a0 = gc.mem_alloc()
rec = Recognizer({model!r})
gc.collect()
heap = gc.mem_alloc() - a0
data = open({frames!r}, 'rb').read()
fr = bytearray(40)
n_dec = {n}
t_step = 0
n_step = 0
t_dec = 0
for k in range(n_dec):
    rec.reset()
    r = None
    i = 0
    while r is None:
        fr[:] = data[i * 40:i * 40 + 40]
        t = time.ticks_us()
        r = rec.step(fr)
        dt = time.ticks_diff(time.ticks_us(), t)
        if r is None:
            t_step += dt
            n_step += 1
        else:
            t_dec += dt
        i += 1
print(heap, t_step / max(n_step, 1), t_dec / max(n_dec, 1), r)
"""


# The node's heap for its models and their state (Node minus its front end) with the wake
# words alone and with the command model sharing their memory, and the time of each turn:
# the command network read in after a wake, the wake words read back after the command.
NODE_CODE = """
import sys, gc, time
sys.path.insert(0, {fw!r})
from voicenode import commands, config, node  # code first: the node imports commands late
from voicenode.dsp.frontend import Frontend


def alloc():
    gc.collect()
    return gc.mem_alloc()


a = alloc()
fe = Frontend(callback=print)
fe_bytes = alloc() - a
del fe
heaps = []
for name in ("", {name!r}):
    cfg = dict(config.DEFAULTS)
    cfg.update(wake_words={words!r}, status_every_s=0, commands=name)
    n = None
    a = alloc()
    n = node.Node(cfg, models={folder!r})
    heaps.append(alloc() - a - fe_bytes)
assert n.commands is not None, "the command model did not load"
shared = sum(len(b) for b in n.shared)
t_cmd = t_wake = 0
for _ in range({turns}):
    t = time.ticks_us()
    n.commands.net.fill()
    t_cmd += time.ticks_diff(time.ticks_us(), t)
    t = time.ticks_us()
    n.detector.fill()
    t_wake += time.ticks_diff(time.ticks_us(), t)
print(heaps[0], heaps[1], shared, t_cmd // {turns}, t_wake // {turns})
"""


def node_heap(model=DEFAULT_MODEL, words=("hey_jarvis",), turns=5, callgrind=False) -> dict:
    """The node's models-and-state heap with `words` alone and with the command model (Unix
    port, 64-bit), the memory they share, and the time of a turn each way; with `callgrind`
    also the x64 instructions of one round of turns (command network in, wake words back):
    a run with 5 rounds minus a run with 1, / 4."""
    import subprocess
    import tempfile

    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools.bench import measure

    model = Path(model)
    side = json.loads(model.with_suffix(".json").read_text())
    net = side["network"]
    with tempfile.TemporaryDirectory() as d:
        # the node's models folder: the shipped wake words and the command model's files
        files = [REPO_ROOT / "models" / f"{w}{ext}" for w in words for ext in (".vnm", ".json")]
        files += [model.with_suffix(".json"), model.parent / side["grammar"]["file"],
                  model.parent / f"{net}.vnm", model.parent / f"{net}.json"]  # fmt: skip
        for f in files:
            (Path(d) / f.name).symlink_to(f.resolve())

        def cmd(n):
            code = NODE_CODE.format(fw=str(FIRMWARE_DIR), name=model.name, words=list(words),
                                    folder=d, turns=n)  # fmt: skip
            return measure.micropython_cmd("1m") + ["-c", code]

        r = subprocess.run(cmd(turns), capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr + r.stdout)
        wake, both, shared, us_cmd, us_wake = map(int, r.stdout.splitlines()[-1].split())
        res = {"node_heap_wake_words": wake, "node_heap_with_commands": both,
               "shared_bytes": shared, "unix_us_command_turn": us_cmd,
               "unix_us_wake_turn": us_wake}  # fmt: skip
        if callgrind:
            one, five = (measure.callgrind(cmd(n), timeout=3600) for n in (1, 5))
            res["instructions_per_round_of_turns_x64"] = (five - one) // 4
    return res


def firmware_cost(model=DEFAULT_MODEL, callgrind=True, log=print) -> dict:
    """Heap of a Recognizer, time per listening frame and per decision on the Unix port, and
    (valgrind) instructions per decision: a run with 4 decisions minus a run with 1, / 3."""
    import shutil
    import subprocess
    import tempfile

    from voicenode_tools import FIRMWARE_DIR
    from voicenode_tools.bench import measure
    from voicenode_tools.train import commands as tc
    from voicenode_tools.train import synth

    rng = np.random.default_rng(5)
    pcm = synth.say(
        "set a timer for twenty five minutes", synth.random_espeak_voice(rng, held_out=True)
    )
    win, _ = tc.scene(pcm, 9, (20, 20), 300, clean=0.0)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        fpath = Path(d) / "w.bin"
        fpath.write_bytes(win.tobytes())

        def prog(n):
            p = Path(d) / f"cost{n}.py"
            p.write_text(
                COST_CODE.format(fw=str(FIRMWARE_DIR), model=str(model), frames=str(fpath), n=n)
            )
            return measure.micropython_cmd() + [str(p)]

        r = subprocess.run(prog(20), capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr + r.stdout)
        heap, us_step, us_dec = r.stdout.split()[:3]
        res = {"recognizer_heap_bytes": int(heap), "unix_us_per_listening_frame": round(float(us_step), 1),
               "unix_us_per_decision": round(float(us_dec), 1)}  # fmt: skip
        if callgrind and shutil.which("valgrind"):
            counts = [measure.callgrind(prog(n), timeout=3600) for n in (1, 4)]
            res["instructions_per_utterance_x64"] = (counts[1] - counts[0]) // 3
    res.update(node_heap(model, callgrind=callgrind and shutil.which("valgrind") is not None))
    log("firmware cost: " + json.dumps(res))
    return res


def table(res: dict) -> str:
    keys = [("intent_accuracy", "intent acc"), ("best_path_accuracy", "best path (before rejection)"),
            ("slot_accuracy", "slot acc"),
            ("command_rejected", "cmd rejected"), ("unknown_accepted", "unknown accepted"),
            ("host_ms_per_utterance", "host CPU ms/utt"),
            ("decision_ms_after_speech", "answer after speech ends, ms: median / p90 / max"),
            ("decided_within_500ms", "within 500 ms")]  # fmt: skip
    lines = ["| voices | SNR | system | " + " | ".join(k[1] for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]  # fmt: skip

    def cell(m, k):
        if k not in m:
            return "-"
        if k == "host_ms_per_utterance":
            return f"{m[k]}"
        if k == "decision_ms_after_speech":
            return f"{m[k]:.0f} / {m[k + '_p90']:.0f} / {m[k + '_max']:.0f}"
        if k + "_95" in m:  # and its 95 % interval
            lo, hi = m[k + "_95"]
            return f"{100 * m[k]:.1f} % ({100 * lo:.1f}-{100 * hi:.1f})"
        return f"{100 * m[k]:.1f} %"

    for kind, r in res["sets"].items():
        for snr, row in r["snr"].items():
            for sysname, m in row.items():
                vals = [cell(m, k) for k, _ in keys]
                lines.append(f"| {kind} | {snr} dB | {sysname} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def intent_table(res: dict, system: str = "ours") -> str:
    """One system's right / rejected share per intent, a column per voice set and SNR."""
    cols = [(kind, snr) for kind, r in res["sets"].items() for snr in r["snr"]]
    names = sorted({n for k, s in cols for n in res["sets"][k]["snr"][s][system]["per_intent"]})
    lines = [f"| intent ({system}: right / rejected) | "
             + " | ".join(f"{k} {s} dB" for k, s in cols) + " |",
             "|---|" + "---|" * len(cols)]  # fmt: skip
    for n in names:
        cells = []
        for k, s in cols:
            d = res["sets"][k]["snr"][s][system]["per_intent"].get(n)
            cells.append(f"{100 * d['right']:.0f} / {100 * d['rejected']:.0f} %" if d else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--commands", type=int, default=300, help="command utterances per SNR")
    ap.add_argument("--unknown", type=int, default=150, help="non-command utterances per SNR")
    ap.add_argument("--snrs", type=float, nargs="+", default=[20, 10, 5])
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-pocketsphinx", action="store_true")
    ap.add_argument("--json", help="write the results here, and the tables beside it (.md)")
    ap.add_argument(
        "--cost-only", action="store_true", help="only the firmware's heap, time and instructions"
    )
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction count")
    ap.add_argument("--sets", nargs="+", default=["validation", "independent"],
                    choices=["validation", "independent", "people"],
                    help="voice sets to test (people: the held-out MBROLA voices)")  # fmt: skip
    a = ap.parse_args(argv)
    cost = firmware_cost(a.model, not a.no_callgrind, log=lambda m: print(m, file=sys.stderr))
    if a.cost_only:
        print(json.dumps(cost, indent=1))
        return 0
    sphinx = not a.no_pocketsphinx
    if sphinx:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError:
            print(
                "pocketsphinx is not installed (pip install 'voicenode-tools[bench]'); use --no-pocketsphinx",
                file=sys.stderr,
            )
            return 1
    res = run_bench(a.model, a.commands, a.unknown, [int(s) if s == int(s) else s for s in a.snrs],
                    a.seed, sphinx, a.workers, log=lambda m: print(m, file=sys.stderr),
                    sets=tuple(a.sets))  # fmt: skip
    res["firmware"] = cost
    report = "\n\n".join(
        [table(res), intent_table(res), "firmware (Unix port): " + json.dumps(cost)]
    )
    print(report)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
        Path(a.json).with_suffix(".md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
