"""Train the on-chip command model from a command-set file alone.

`build(commandset_path, out_dir, seed)` is what `voicenode train-commands` runs:

1. sentences: every intent of the set (templates and slot values drawn so that every value
   is heard), plus *unknown* speech that matches no command (spans of everyday and licence
   text, and near misses such as "turn on the radio") for rejection;
2. speech: espeak-ng training voices and variants (and some piper), via `train.synth`; the
   validation voices are the held-out espeak voices and variants (`synth.ESPEAK_HELD_OUT_*`);
3. scenes: each sentence in a listening window with generated noise, babble or music, room
   reverb and microphone band limits (`train.augment`), features from the reference front end,
   the window opened a little before the speech as the wake event would;
4. the end-pointer twin (`reference.vad`) cuts each window as the chip will, and the segment
   is pooled into the network input (`reference.commands.net_input`), with small boundary
   jitter for robustness;
5. a float MLP (PyTorch, CPU) with sigmoid intent outputs and one block of slot outputs per
   slot, quantised to int8 (`reference.commands.quantize`); the cutoff is the lowest that
   keeps the unknown speech accepted on validation voices within the target.

Synthesized audio is cached in ~/.cache/voicenode/commands/<hash>/ (never committed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from voicenode_tools import commandset as csmod

from . import augment, synth, text

DATA_VERSION = 1
SCENE_VERSION = 1  # bump when scene() changes
INPUT_SCALE = 1.0 / 64.0

DEFAULTS = {
    "seed": 1,
    "data": {
        "train_commands": 8000,  # command sentences said by training voices
        "piper_fraction": 0.05,  # share of training clips said by piper (slow: ~0.3 s each)
        "train_unknown": 2400,  # unknown speech (training voices, training text)
        "val_commands": 600,  # held-out espeak voices
        "val_unknown": 400,  # held-out voices, held-out text
        "music_clips": 3,
        "copies": 1,  # augmented scenes per training clip
        "snr_db": [0, 30],
        "val_snrs": [20, 10, 5],
        "jitter": 2,  # extra pooled variants per training scene (boundaries moved +-3 frames)
    },
    "model": {"bins": 24, "hidden": [128, 64]},
    "train": {"epochs": 30, "batch": 128, "lr": 0.002, "dropout": 0.3, "weight_decay": 0.01},
    "vad": None,  # reference.vad.DEFAULTS
    "target_unknown_accept": 0.01,
}

QUICK = {
    "data": {"train_commands": 160, "piper_fraction": 0.0, "train_unknown": 60,
             "val_commands": 60, "val_unknown": 30, "music_clips": 1, "val_snrs": [20], "jitter": 1},
    "model": {"bins": 16, "hidden": [32, 32]},
    "train": {"epochs": 8},
}  # fmt: skip

#: Near misses: everyday requests that are not in a home command set (filtered against it).
NEAR_MISS = [
    "turn on the (television|radio|oven|computer|heater|kettle|dishwasher)",
    "turn off the (television|radio|oven|computer|heater|alarm)",
    "open the (door|window|garage|curtains)",
    "close the (door|window|garage|curtains)",
    "lock the (front|back) door",
    "call (mum|dad|the office|my sister)",
    "what's the weather [like] [today|tomorrow]",
    "set an alarm for (six|seven|eight) o'clock",
    "how (hot|cold|far) is it",
    "add (milk|bread|eggs) to the shopping list",
    "read my messages",
    "who (won|is playing) the game",
    "tell me a joke",
    "where is my phone",
    "is the (kitchen|bedroom|garden) door open",
    "the (kitchen|living room|bedroom) is (cold|warm|dark)",
    "I (like|love) that song",
    "(good morning|good night|thank you)",
    "what day is it",
    "start the (car|washing machine)",
]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_recipe(seed: int = 1, quick: bool = False, overrides: dict | None = None) -> dict:
    """The full recipe (defaults, quick settings, overrides) with the end-pointer settings."""
    from voicenode_tools.reference import vad as ref_vad

    rec = _merge(DEFAULTS, QUICK) if quick else copy.deepcopy(DEFAULTS)
    if overrides:
        rec = _merge(rec, overrides)
    rec["seed"] = seed
    if rec.get("vad") is None:
        rec["vad"] = dict(ref_vad.DEFAULTS)
    return rec


def cache_dir() -> Path:
    base = os.environ.get("VOICENODE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voicenode" / "commands"


def _frontend_hash() -> str:
    from voicenode_tools.reference import nn as ref_nn

    key = json.dumps(ref_nn.frontend_params(), sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


# --- sentences ------------------------------------------------------------------------------


def draw_commands(
    cs: csmod.CommandSet, n: int, rng: np.random.Generator
) -> list[tuple[str, int, dict]]:
    """n command sentences: (text, intent index, {slot: value index}).

    Intents are drawn in proportion to the square root of their number of sentences (a timer
    with 60 values is heard more often than "fan on"), a template uniformly, slot values
    uniformly.
    """
    temps = [cs.templates(it) for it in cs.intents]
    w = np.sqrt(np.array([len(list(cs.expand_intent(it))) for it in cs.intents], np.float64))
    w /= w.sum()
    out = []
    for _ in range(n):
        k = int(rng.choice(len(cs.intents), p=w))
        t, names = temps[k][int(rng.integers(len(temps[k])))]
        vals = {s: int(rng.integers(len(cs.slots[s].values))) for s in names}
        out.append((cs.fill(t, vals), k, vals))
    return out


def unknown_sentences(
    cs: csmod.CommandSet, split: str, n: int, rng: np.random.Generator
) -> list[str]:
    """n sentences that are not commands: text spans of 2-9 words and near misses."""
    commands = {t for t, _, _ in cs.expand()}
    near = []
    for ph in NEAR_MISS:
        for seq in csmod._expand(csmod.parse_phrase(ph)):
            near.append(" ".join(csmod._words(seq)))
    near = [s for s in near if s not in commands]
    rng_near = np.random.default_rng(1234)
    order = rng_near.permutation(len(near))
    cut = len(near) * 2 // 3  # near misses: two thirds train, one third validation
    near = [near[i] for i in (order[:cut] if split == "train" else order[cut:])]
    sents = text.corpus(split)
    out = []
    while len(out) < n:
        if rng.random() < 0.3:
            s = near[int(rng.integers(len(near)))]
        else:
            words = sents[int(rng.integers(len(sents)))].split()
            k = int(rng.integers(2, 10))
            i = int(rng.integers(0, max(1, len(words) - k + 1)))
            s = " ".join(words[i : i + k]).lower()
        if s and s not in commands:
            out.append(s)
    return out


# --- synthesis ------------------------------------------------------------------------------


def _say_all(jobs, workers: int, report, stage: str) -> list[np.ndarray]:
    """Run (text, voice) jobs: espeak in a thread pool (subprocesses), piper in this thread."""
    out: list = [None] * len(jobs)
    esp = [i for i, (_, v) in enumerate(jobs) if v.synth == "espeak"]
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futs = {i: ex.submit(synth.say, jobs[i][0], jobs[i][1]) for i in esp}
        for i, (t, v) in enumerate(jobs):
            if v.synth != "espeak":
                out[i] = synth.say(t, v)
                done += 1
                if done % 20 == 0:
                    report(stage, done / len(jobs))
        for i, f in futs.items():
            out[i] = f.result()
            done += 1
            if done % 50 == 0:
                report(stage, done / len(jobs))
    report(stage, 1.0)
    return out


def sentence_plan(cs: csmod.CommandSet, rec: dict) -> dict:
    """Every clip to synthesize: {group: [(text, voice, intent index (-1 unknown), slots)]}."""
    d = rec["data"]
    rng = np.random.default_rng([rec["seed"], 101])

    def voice(held_out: bool, piper_p: float = 0.0):
        if piper_p > 0 and rng.random() < piper_p:
            return synth.random_piper_voice(rng)
        return synth.random_espeak_voice(rng, held_out=held_out)

    plan = {}
    plan["train_cmd"] = [
        (t, voice(False, d["piper_fraction"]), k, v)
        for t, k, v in draw_commands(cs, d["train_commands"], rng)
    ]
    plan["train_unk"] = [
        (t, voice(False, d["piper_fraction"]), -1, {})
        for t in unknown_sentences(cs, "train", d["train_unknown"], rng)
    ]
    plan["val_cmd"] = [
        (t, voice(True), k, v) for t, k, v in draw_commands(cs, d["val_commands"], rng)
    ]
    plan["val_unk"] = [
        (t, voice(True), -1, {}) for t in unknown_sentences(cs, "val", d["val_unknown"], rng)
    ]
    return plan  # fmt: skip


def data_hash(cs: csmod.CommandSet, rec: dict, rate: int) -> str:
    key = {
        "v": DATA_VERSION,
        "sentences": sorted(t + "|" + i for t, i, _ in cs.expand()),
        "slots": {s: list(cs.slots[s].spoken) for s in cs.slots},
        "data": rec["data"],
        "seed": rec["seed"],
        "rate": rate,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def synthesize(cs, rec, progress, workers: int = 2):
    """Clips of every group (cached): {group: [int16 arrays]}, plus the plan and music."""
    from voicenode_tools.reference import params

    rate = int(params.SAMPLE_RATE)
    plan = sentence_plan(cs, rec)
    folder = cache_dir() / data_hash(cs, rec, rate)
    path = folder / "clips.npz"
    if path.exists():
        z = np.load(path)
        clips = {}
        for g in plan:
            cuts = np.cumsum(z[g + "_len"])[:-1]
            clips[g] = list(np.split(z[g], cuts))
        music = (
            list(np.split(z["music"], np.cumsum(z["music_len"])[:-1]))
            if len(z["music_len"])
            else []
        )
        return plan, clips, music
    if (
        any(v.synth == "piper" for g in plan.values() for _, v, _, _ in g)
        and not synth.piper_available()
    ):
        raise RuntimeError("piper-tts is not installed: pip install 'voicenode-tools[train]'")
    clips = {}
    for g, items in plan.items():
        clips[g] = _say_all([(t, v) for t, v, _, _ in items], workers, progress, f"synth {g}")
    rng = np.random.default_rng([rec["seed"], 102])
    music = []
    for k in range(rec["data"]["music_clips"]):
        try:
            music.append(augment.render_music(rng, rate, 20.0))
        except RuntimeError:
            break
        progress("music", (k + 1) / rec["data"]["music_clips"])
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for g, cl in clips.items():
        arrays[g] = np.concatenate(cl) if cl else np.zeros(0, np.int16)
        arrays[g + "_len"] = np.array([len(c) for c in cl], np.int64)
    arrays["music"] = np.concatenate(music) if music else np.zeros(0, np.int16)
    arrays["music_len"] = np.array([len(m) for m in music], np.int64)
    tmp = folder / "clips.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return plan, clips, music


# --- scenes and features --------------------------------------------------------------------

_W: dict = {}


def _init(music, babble):
    _W["music"], _W["babble"] = music, babble


def scene_audio(pcm: np.ndarray, seed: int, snr: tuple[float, float], clean: float = 0.1):
    """A clip in its scene: (audio int16, first sample of the listening window, speech start).

    The clip sits after 0.6-1.1 s of background (the front end's noise floor settles) and
    before 1 s more, in a random room with noise, babble or music at an SNR drawn from
    ``snr``; the window opens 0.05-0.4 s before the speech, as after a wake word.
    """
    from voicenode_tools.reference import params

    rate, step = int(params.SAMPLE_RATE), int(params.STEP)
    rng = np.random.default_rng(seed)
    lead = int(rng.uniform(0.6, 1.1) * rate)
    x = np.concatenate(
        [np.zeros(lead, np.int16), np.asarray(pcm, np.int16), np.zeros(rate, np.int16)]
    )
    y = augment.augment(
        x,
        rate,
        rng,
        backgrounds=_W.get("music"),
        speech=_W.get("babble"),
        snr_db=snr,
        p_clean=clean,
    )
    w0 = max(0, (lead - int(rng.uniform(0.05, 0.4) * rate)) // step)
    return y, w0 * step, lead


def window_frames(feats: np.ndarray, w0: int, max_frames: int) -> np.ndarray:
    """Frames [w0, w0 + max_frames) of a recording, padded with its last frame."""
    win = feats[w0 : w0 + max_frames]
    if len(win) < max_frames:
        if len(win):
            pad = np.repeat(win[-1:], max_frames - len(win), axis=0)
        else:
            pad = np.zeros((max_frames, feats.shape[1]), np.uint8)
        win = np.concatenate([win, pad])
    return win.astype(np.uint8)


def scene(
    pcm: np.ndarray, seed: int, snr: tuple[float, float], max_frames: int, clean: float = 0.1
):
    """One listening window around a clip: (frames uint8 (max_frames, n_mels), speech onset frame)."""
    from voicenode_tools.reference import frontend, params

    step = int(params.STEP)
    y, s0, lead = scene_audio(pcm, seed, snr, clean)
    f = frontend.features(y)
    return window_frames(f, s0 // step, max_frames), (lead - s0) // step


def _scene_job(args):
    pcm, seed, snr, max_frames, clean = args
    return scene(pcm, seed, snr, max_frames, clean)


def make_scenes(jobs, music, babble, workers: int, report, stage: str):
    """Run scene jobs in `workers` processes; returns [(window, onset), ...] in order."""
    out = []
    if workers <= 1:
        _init(music, babble)
        for i, j in enumerate(jobs):
            out.append(_scene_job(j))
            if i % 50 == 0:
                report(stage, (i + 1) / len(jobs))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init, initargs=(music, babble)) as pool:
            for i, r in enumerate(pool.imap(_scene_job, jobs, chunksize=16)):
                out.append(r)
                if i % 50 == 0:
                    report(stage, (i + 1) / len(jobs))
    report(stage, 1.0)
    return out


def examples(windows, labels, rec, rng, jitter: int = 0):
    """Network inputs from listening windows, cut by the end-pointer twin.

    Returns:
        (x uint8 (N, n_in), intent index (N,) with -1 unknown, slots list, kept index (N,),
        number of windows the end-pointer missed).
    """
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.reference import vad as ref_vad

    v = rec["vad"]
    bins = rec["model"]["bins"]
    xs, ys, ss, keep = [], [], [], []
    missed = 0
    for i, ((win, _), (k, slots)) in enumerate(zip(windows, labels, strict=True)):
        seg = ref_vad.endpoint(win, **{key: v[key] for key in ref_vad.DEFAULTS})
        if seg.state != ref_vad.DONE:
            missed += 1
            continue
        cuts = [(seg.start, seg.end)]
        for _ in range(jitter):
            a = int(np.clip(seg.start + rng.integers(-3, 4), 0, seg.end - 2))
            b = int(np.clip(seg.end + rng.integers(-3, 4), a + 2, len(win)))
            cuts.append((a, b))
        for a, b in cuts:
            xs.append(rc.net_input(win, a, b, bins))
            ys.append(k)
            ss.append(slots)
            keep.append(i)
    n_in = bins * windows[0][0].shape[1] + 1 if windows else 1
    x = np.array(xs, np.uint8).reshape(-1, n_in)
    return x, np.array(ys, np.int64), ss, np.array(keep, np.int64), missed


# --- the network ----------------------------------------------------------------------------


def fit(x, y, slots, layout, rec, progress, seed: int):
    """Train the float MLP; returns the float layers [(W, b, act), ...]."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    t = rec["train"]
    hidden = rec["model"]["hidden"]
    n_int = len(layout["intents"])
    n_out = layout["outputs"]
    layers = []
    prev = x.shape[1]
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(t["dropout"])]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    net = nn.Sequential(nn.Dropout(t["dropout"] / 2), *layers)
    # targets: intent one-hot (all zero for unknown); slot value index per slot block (-1: none)
    yt = np.zeros((len(y), n_int), np.float32)
    yt[y >= 0, y[y >= 0]] = 1.0
    blocks = [(s["name"], s["offset"], len(s["values"])) for s in layout["slots"]]
    st = np.full((len(y), len(blocks)), -1, np.int64)
    for i, sv in enumerate(slots):
        for b, (name, _, _) in enumerate(blocks):
            if name in sv:
                st[i, b] = sv[name]
    # Standardised inputs train much better; the scaling is folded into the first layer.
    mu = x.astype(np.float64).mean(axis=0)
    sd = x.astype(np.float64).std(axis=0) + 1.0
    X = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    YT = torch.from_numpy(yt)
    ST = torch.from_numpy(st)
    opt = torch.optim.AdamW(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    epochs, batch = int(t["epochs"]), int(t["batch"])
    steps = epochs * max(1, -(-len(X) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=t["lr"], total_steps=steps, pct_start=0.15
    )
    g = torch.Generator().manual_seed(seed)
    step = 0
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(X), generator=g)
        tot = 0.0
        for j in range(0, len(X), batch):
            idx = perm[j : j + batch]
            out = net(X[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(out[:, :n_int], YT[idx])
            # a sharper choice among intents for commands (softmax over the intent logits)
            cmd = YT[idx].sum(1) > 0
            if cmd.any():
                loss = loss + 0.3 * nn.functional.cross_entropy(
                    out[cmd, :n_int], YT[idx][cmd].argmax(1)
                )
            for b, (_, off, n) in enumerate(blocks):
                tgt = ST[idx, b]
                m = tgt >= 0
                if m.any():
                    loss = loss + nn.functional.cross_entropy(out[m, off : off + n], tgt[m]) / len(
                        blocks
                    )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += loss.item() * len(idx)
        progress("train", (ep + 1) / epochs, f"loss {tot / len(X):.4f}")
    net.eval()
    lin = [m for m in net if isinstance(m, nn.Linear)]
    return [
        (
            m.weight.detach().double().numpy(),
            m.bias.detach().double().numpy(),
            "none" if i == len(lin) - 1 else "relu",
        )
        for i, m in enumerate(lin)
    ]


def score(outs, y, slots, layout, table, cutoff_u8: int, n_missed_cmd: int = 0) -> dict:
    """Intent accuracy, slot accuracy and unknown speech accepted, at one cutoff.

    Commands the end-pointer missed count as errors (``n_missed_cmd``).
    """
    from voicenode_tools.reference import commands as rc

    dec = [rc.decode(o, layout, table, cutoff_u8) for o in outs]
    names = layout["intents"]
    cmd = [i for i in range(len(y)) if y[i] >= 0]
    unk = [i for i in range(len(y)) if y[i] < 0]
    ok = [i for i in cmd if dec[i]["intent"] == names[y[i]]]
    with_slots = [i for i in ok if slots[i]]
    slot_ok = 0
    for i in with_slots:
        want = {s: _slot_value(layout, s, v) for s, v in slots[i].items()}
        slot_ok += dec[i]["slots"] == want
    n_cmd = len(cmd) + n_missed_cmd
    return {
        "intent_accuracy": round(len(ok) / max(n_cmd, 1), 4),
        "slot_accuracy": round(slot_ok / max(len(with_slots), 1), 4),
        "command_rejected": round(
            sum(dec[i]["intent"] == rc.UNKNOWN for i in cmd) / max(n_cmd, 1), 4
        ),
        "unknown_accepted": round(
            sum(dec[i]["intent"] != rc.UNKNOWN for i in unk) / max(len(unk), 1), 4
        ),
        "commands": n_cmd,
        "unknown": len(unk),
    }


def _slot_value(layout, name, idx):
    for s in layout["slots"]:
        if s["name"] == name:
            return s["values"][idx]
    raise KeyError(name)


def choose_cutoff(outs, y, layout, table, target: float) -> int:
    """Lowest uint8 cutoff at which at most ``target`` of the unknown speech is accepted."""
    k = len(layout["intents"])
    unk = outs[y < 0]
    if len(unk) == 0:
        return 128
    conf = table[unk[:, :k].max(axis=1)].astype(np.int64)  # best intent's probability
    for c in range(1, 256):
        if np.mean(conf >= c) <= target:
            return c
    return 255


# --- the whole build ------------------------------------------------------------------------


def build(cs_path, out_dir, seed: int = 1, progress=None, workers: int = 2, quick: bool = False,
          name: str | None = None, overrides: dict | None = None) -> dict:  # fmt: skip
    """Make the command model of a command-set file; returns the sidecar written.

    Writes ``out_dir/<name>.vcm`` and ``<name>.json`` (name: ``commands_<set name>``).
    """
    from voicenode_tools import __version__
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.reference import nn as ref_nn

    from .trainer import Progress

    progress = progress or Progress(enabled=False)
    t0 = time.time()
    cs = csmod.load(cs_path)
    layout = cs.layout()
    rec = make_recipe(seed, quick, overrides)
    d = rec["data"]
    plan, clips, music = synthesize(cs, rec, progress, workers)
    t_synth = time.time() - t0
    max_frames = rec["vad"]["max_frames"]
    babble = clips["train_unk"][:80]
    val_babble = clips["val_unk"][:40]
    rng = np.random.default_rng([seed, 103])

    def jobs(group, snr, copies=1, salt=0):
        return [
            (c, int(rng.integers(1 << 62)), tuple(snr), max_frames, 0.1 if salt == 0 else 0.0)
            for c in clips[group]
            for _ in range(copies)
        ]

    def labels(group, copies=1):
        return [(k, v) for _, _, k, v in plan[group] for _ in range(copies)]

    train_groups = ("train_cmd", "train_unk")
    scene_dir = (
        cache_dir() / data_hash(cs, rec, 16000) / f"scenes_{_frontend_hash()}_v{SCENE_VERSION}"
    )

    def scenes(job_list, bg, stage, key):
        """make_scenes, cached next to the clips (the windows do not depend on the model)."""
        f = scene_dir / f"{key}.npz"
        if f.exists():
            z = np.load(f)
            return list(zip(z["w"], z["onset"].tolist(), strict=True))
        out = make_scenes(job_list, music, bg, workers, progress, stage)
        scene_dir.mkdir(parents=True, exist_ok=True)
        tmp = scene_dir / f"{key}.tmp.npz"
        np.savez(
            tmp, w=np.array([w for w, _ in out], np.uint8), onset=np.array([o for _, o in out])
        )
        tmp.replace(f)
        return out

    wins, labs = [], []
    for g in train_groups:
        wins += scenes(jobs(g, d["snr_db"], d["copies"]), babble, f"scenes {g}", g)
        labs += labels(g, d["copies"])
    x, y, sl, _, missed = examples(wins, labs, rec, rng, jitter=int(d["jitter"]))
    del wins
    val = {}
    for snr in d["val_snrs"]:
        vw, vl = [], []
        for g in ("val_cmd", "val_unk"):
            vw += scenes(jobs(g, (snr, snr), 1, 1), val_babble, f"val {g} {snr}dB", f"{g}_{snr}")
            vl += labels(g)
        vx, vy, vs, vk, vmiss = examples(vw, vl, rec, rng, 0)
        n_cmd_windows = sum(1 for k, _ in vl if k >= 0)
        val[snr] = (vx, vy, vs, n_cmd_windows - int(np.sum(vy >= 0)))
    t_data = time.time() - t0 - t_synth
    progress.log(
        f"data ready in {t_synth + t_data:.0f}s: {len(x)} training inputs "
        f"({int(np.sum(y >= 0))} commands, {int(np.sum(y < 0))} unknown; end-pointer missed {missed} windows)"
    )
    float_layers = fit(x, y, sl, layout, rec, progress, seed)
    t_train = time.time() - t0 - t_synth - t_data
    step = max(1, len(x) // 2000)
    net = rc.quantize(float_layers, x[::step], INPUT_SCALE)
    # cutoff on all validation SNRs together
    outs = {snr: net.forward(v[0]) for snr, v in val.items()}
    all_out = np.concatenate([outs[s] for s in val])
    all_y = np.concatenate([val[s][1] for s in val])
    cutoff_u8 = choose_cutoff(all_out, all_y, layout, net.table, rec["target_unknown_accept"])
    scores = {
        f"snr{snr}": score(outs[snr], v[1], v[2], layout, net.table, cutoff_u8, v[3])
        for snr, v in val.items()
    }
    keys = ("intent_accuracy", "slot_accuracy", "unknown_accepted", "command_rejected")
    scores["mean"] = {
        k: round(float(np.mean([scores[f"snr{s}"][k] for s in val])), 4) for k in keys
    }
    # quantisation check: float vs int8 intent decisions on validation inputs
    vx = val[d["val_snrs"][0]][0]
    h = vx.astype(np.float64) * INPUT_SCALE
    for W, b, act in float_layers:
        h = h @ W.T + b
        if act == "relu":
            h = np.maximum(h, 0)
    k = len(layout["intents"])
    agree = float(np.mean(np.argmax(h[:, :k], 1) == np.argmax(outs[d["val_snrs"][0]][:, :k], 1)))
    scores["float_int8_intent_agreement"] = round(agree, 4)
    out_dir = Path(out_dir)
    name = name or f"commands_{cs.name}"
    src = Path(cs_path).read_bytes()
    sidecar = {
        "name": name,
        "version": f"{__version__}+{hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:8]}",
        "commandset": {"name": cs.name, "file": str(cs_path), "sha256": hashlib.sha256(src).hexdigest(),
                       "sentences": sum(cs.count().values())},
        "layout": layout,
        "input": {"bins": rec["model"]["bins"], "n_mels": int(x.shape[1] - 1) // rec["model"]["bins"],
                  "scale": INPUT_SCALE, "length": "segment frames // 2, at most 255"},
        "vad": rec["vad"],
        "cutoff": round(cutoff_u8 / 255, 4),
        "cutoff_u8": cutoff_u8,
        "frontend": ref_nn.frontend_params(),
        "recipe": rec,
        "seed": seed,
        "scores": scores,
        "train_seconds": {"synth": round(t_synth, 1), "scenes": round(t_data, 1), "train": round(t_train, 1),
                          "total": round(time.time() - t0, 1)},
        "data_hash": data_hash(cs, rec, 16000),
    }  # fmt: skip
    side = net.save(out_dir / f"{name}.vcm", sidecar)
    m = scores["mean"]
    progress.done(
        f"{name}: cutoff {cutoff_u8}/255, intent accuracy {m['intent_accuracy']}, slots "
        f"{m['slot_accuracy']}, unknown accepted {m['unknown_accepted']} (held-out voices, "
        f"SNR {d['val_snrs']} dB), {time.time() - t0:.0f}s -> {out_dir / (name + '.vcm')}"
    )
    return side
