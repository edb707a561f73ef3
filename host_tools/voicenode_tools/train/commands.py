"""Train the on-chip command model from a command-set file alone.

`build(commandset_path, out_dir, seed)` is what `voicenode train-commands` runs:

1. sentences: every intent of the set (templates and slot values drawn so that every value
   is heard), plus *unknown* speech that matches no command (spans of everyday and licence
   text, and near misses such as "turn on the radio"), for phones and for rejection;
2. speech: espeak-ng training voices and variants (and some piper), via `train.synth`; the
   validation voices are the held-out espeak voices and variants (`synth.ESPEAK_HELD_OUT_*`);
   each clip's phone classes are what espeak-ng says that voice pronounces (`phones`);
3. scenes: each sentence in a listening window with generated noise, babble or music, room
   reverb and microphone band limits (`train.augment`), features from the reference front end,
   the window opened a little before the speech as the wake event would;
4. a streaming network (the wake word's int8 layers with a logits head, `train.model`) for
   the set's words (or phone classes), trained with CTC on the rows the chip decodes
   (PyTorch, CPU), quantised by `reference.nn`; with ``train.distill`` in the recipe also
   fitted to the mean probabilities of teacher networks (`teachers`, `teacher_probs`);
5. the command set compiled into a grammar (`grammar`); the chip's decisions on the
   validation windows (end-pointer twin, int8 logits, grammar decoder) fit the `reject` rule
   (`fit_reject`: integer weights of each decision's features and a bias) so that at most
   `target_unknown_accept` of the unknown speech said by held-out voices is kept.

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

from . import augment, portable, specaug, synth, text

DATA_VERSION = 1
#: cutoff_avg of a model whose `reject` rule decides: above any avg of decoded rows (255 << 8)
NO_CUTOFF = 0xFFFF
SCENE_VERSION = 1  # bump when scene() changes
INPUT_SCALE = 1.0 / 64.0

DEFAULTS = {
    "seed": 1,
    "data": {
        "train_commands": 12000,  # command sentences said by training voices
        "intent_power": 0.25,  # intents drawn by (their sentences) ** this: short ones heard too
        "piper_fraction": 0.05,  # share of training clips said by piper (slow: ~0.3 s each)
        "train_unknown": 2400,  # unknown speech (training voices, training text)
        "val_commands": 600,  # held-out espeak voices
        "val_unknown": 400,  # held-out voices, held-out text
        "music_clips": 3,
        # augmented scenes per training clip: 2 (with half the epochs, the same steps) took
        # validation intent accuracy from 48 / 40 / 25 % to 59 / 44 / 30 % (20 / 10 / 5 dB)
        "copies": 2,
        "snr_db": [0, 30],
        "val_snrs": [20, 10, 5],
        "jitter": 2,  # unused since the CTC network; kept because it keys the cached audio
    },
    # the network before its logits layer (kind, out_ch, k, stride, dilation): 0.9 s of context
    "model": {"spec": [["conv", 64, 3, 3, 1], ["dwconv", 0, 5, 1, 1], ["dense", 64, 1, 1, 1],
                       ["dwconv", 0, 5, 1, 2], ["dense", 64, 1, 1, 1], ["dwconv", 0, 5, 1, 4],
                       ["dense", 64, 1, 1, 1]]},
    # rows "decoded": CTC on the rows the chip decodes only (`decoded_rows`), not the whole
    # window: the words must be heard there, not guessed from the window's start. "crop":
    # true cuts each batch after its last decoded row (windows of similar length batched
    # together): 24 % less training time, but a worse model at 80 epochs (best path 61 % vs
    # 71 % at 20 dB), so off
    "train": {"epochs": 40, "batch": 64, "lr": 0.003, "weight_decay": 0.001, "rows": "decoded",
              "augment": {"shift": 2, "freq_masks": 2, "freq_width": 5, "time_masks": 2,
                          "time_width": 8}},
    "vad": None,  # reference.vad.DEFAULTS
    # the rejection is chosen for it (mean over the validation SNRs; the target is 2 %)
    "target_unknown_accept": 0.02,
    # the decoder's bonus per word (`grammar.viterbi`), in logit steps: the candidate with the
    # most validation commands right after rejection is kept (0 for phone units, whose nodes
    # are not words). Without it long commands heard poorly lost to one-word ones
    "word_bonus": [0, 4, 8, 12, 16, 20, 24],
    # "linear": a score of the decision's features (`reference.commands.features`), fitted
    # on the validation windows; "cutoff": cutoff_avg and margin_avg only
    "reject": "linear",
    # network classes: "words" of the set (+ blank and <unk>) or broad "phones"
    "units": "words",
}  # fmt: skip

QUICK = {
    "data": {"train_commands": 160, "piper_fraction": 0.0, "train_unknown": 60,
             "val_commands": 60, "val_unknown": 30, "music_clips": 1, "val_snrs": [20], "jitter": 1,
             "copies": 1},
    "model": {"spec": [["conv", 24, 3, 3, 1], ["dwconv", 0, 5, 1, 1], ["dense", 24, 1, 1, 1]]},
    "train": {"epochs": 2},
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
    if quick:  # a smoke run trains no teachers
        rec["train"].pop("distill", None)
    synth.refuse_mbrola(rec["data"])
    kd = rec["train"].get("distill")
    if kd is not None:
        seeds, w = kd.get("teacher_seeds"), kd.get("weight")
        if (not isinstance(seeds, list) or not seeds
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds)
                or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0):  # fmt: skip
            raise ValueError(
                f'train.distill must be {{"teacher_seeds": [seeds], "weight": 0..1}}, got {kd!r}'
            )
        if "steps" in kd:  # the wake words' option; here it would be silently ignored
            raise ValueError("train.distill.steps: the command network trains for train.epochs")
        from .trainer import distill_clean_db, teacher_recipes

        distill_clean_db(rec)  # the teachers' input: "noisy" or "clean"
        teacher_recipes(rec)  # and their variants
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
    cs: csmod.CommandSet, n: int, rng: np.random.Generator, power: float = 0.5
) -> list[tuple[str, int, dict]]:
    """n command sentences: (text, intent index, {slot: value index}).

    Intents are drawn in proportion to their number of sentences to the `power` (0.5: a
    timer with 60 values is heard more often than "fan on"; 0: every intent alike), a template
    uniformly, slot values uniformly.
    """
    temps = [cs.templates(it) for it in cs.intents]
    w = np.array([len(list(cs.expand_intent(it))) for it in cs.intents], np.float64) ** power
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


def sentence_plan(cs: csmod.CommandSet, rec: dict) -> dict:
    """Every clip to synthesize: {group: [(text, voice, intent index (-1 unknown), slots)]}."""
    d = rec["data"]
    rng = np.random.default_rng([rec["seed"], 101])
    synth.refuse_mbrola(d)  # however the recipe came (a teacher's variant, say)

    def voice(held_out: bool, piper_p: float = 0.0):
        return synth.random_voice(rng, held_out, piper_p)

    plan = {}
    plan["train_cmd"] = [
        (t, voice(False, d["piper_fraction"]), k, v)
        for t, k, v in draw_commands(cs, d["train_commands"], rng, d.get("intent_power", 0.5))
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
    synth.reseed_piper(rec["seed"] * 1000 + 101)  # repeatable piper clips (see reseed_piper)
    if (
        any(v.synth == "piper" for g in plan.values() for _, v, _, _ in g)
        and not synth.piper_available()  # loads the reseeded session once
    ):
        raise RuntimeError("piper-tts is not installed: pip install 'voicenode-tools[train]'")
    clips = {}
    for g, items in plan.items():
        clips[g] = synth.say_many([(t, v) for t, v, _, _ in items], workers,
                                  lambda f, s=f"synth {g}": progress(s, f))  # fmt: skip
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


def scene_audio(
    pcm: np.ndarray,
    seed: int,
    snr: tuple[float, float],
    clean: float = 0.1,
    clean_db: float | None = None,
):
    """A clip in its scene: (audio int16, first sample of the listening window, speech start).

    The clip sits after 0.6-1.1 s of background (the front end's noise floor settles) and
    before 1 s more, in a random room with noise, babble or music at an SNR drawn from
    ``snr``; the window opens 0.05-0.4 s before the speech, as after a wake word. With
    ``clean_db`` the audio is the scene's clean twin instead (`augment.augment_pair`: the
    same room, band limit and gain, the background that far below the speech).
    """
    from voicenode_tools.reference import params

    rate, step = int(params.SAMPLE_RATE), int(params.STEP)
    rng = np.random.default_rng(seed)
    lead = int(rng.uniform(0.6, 1.1) * rate)
    x = np.concatenate(
        [np.zeros(lead, np.int16), np.asarray(pcm, np.int16), np.zeros(rate, np.int16)]
    )
    y, twin = augment.augment_pair(
        x,
        rate,
        rng,
        backgrounds=_W.get("music"),
        speech=_W.get("babble"),
        snr_db=snr,
        p_clean=clean,
        clean_db=clean_db,
    )
    w0 = max(0, (lead - int(rng.uniform(0.05, 0.4) * rate)) // step)
    return (y if twin is None else twin), w0 * step, lead


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
    pcm: np.ndarray,
    seed: int,
    snr: tuple[float, float],
    max_frames: int,
    clean: float = 0.1,
    clean_db: float | None = None,
):
    """One listening window around a clip: (frames uint8 (max_frames, n_mels), speech onset
    frame); with ``clean_db`` the window of the scene's clean twin (`scene_audio`)."""
    from voicenode_tools.reference import frontend, params

    step = int(params.STEP)
    y, s0, lead = scene_audio(pcm, seed, snr, clean, clean_db)
    f = frontend.features(y)
    return window_frames(f, s0 // step, max_frames), (lead - s0) // step


def _scene_job(args):
    return scene(*args)


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


def phone_labels(items, workers: int = 2) -> list[list[int]]:
    """Phone classes of each (text, voice, ...) item as that voice says it (piper: en-us).

    espeak-ng's own phonemes of the text for the voice that spoke it: the labels follow the
    accent (a Dutch voice reading English gets Dutch vowels).
    """
    from voicenode_tools import phones

    keys = [(t, v.name if v.synth == "espeak" else "en-us") for t, v, *_ in items]
    uniq = sorted(set(keys))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        got = dict(zip(uniq, ex.map(lambda k: phones.ids(phones.phonemize(*k)), uniq), strict=True))
    return [got[k] for k in keys]


def speech_fits(onset: int, n_samples: int, max_frames: int, step: int = 160) -> bool:
    """Whether a clip that starts at frame `onset` of its window ends inside it (with 50 ms)."""
    return onset + n_samples // step + 5 <= max_frames


# --- the network ----------------------------------------------------------------------------


def decoded_rows(windows: np.ndarray, rec: dict, stride: int) -> np.ndarray:
    """The network rows the chip decodes in each window: (n, 2) [first, end), as on the chip
    (the end-pointer's segment from its preroll to its decision); the whole window where the
    end-pointer hears nothing.

    The end-pointer's `drop` is left out here: in noise it ends some segments before the
    sentence's last word, and CTC asked for the whole sentence on those rows learnt worse
    (27 Nov, the home set, seed 1: validation intent accuracy 48.8 % against 53.4 %, best
    path 80.7 / 71.3 / 62.3 % against 84.8 / 76.7 / 62.2 %). The chip decodes a prefix of
    these rows (the network streams: its rows do not depend on where the segment ends).
    """
    from voicenode_tools.reference import vad as ref_vad

    v = dict(ref_vad.settings(rec["vad"]), drop=0)
    n_rows = windows.shape[1] // stride
    out = np.zeros((len(windows), 2), np.int64)
    for i, w in enumerate(windows):
        seg = ref_vad.endpoint(w, **v)
        if seg.state == ref_vad.DONE:
            out[i] = seg.start // stride, max(seg.start // stride + 1, seg.frames_used // stride)
        else:
            out[i] = 0, n_rows
    return out


def _batches(n: int, batch: int, g, rows: np.ndarray | None = None, group: int = 32) -> list:
    """One epoch's batches of window numbers, in a random order (`g`). With `rows` ((n, 2)
    decoded rows), windows of similar length go together: each run of `group` batches of the
    random order is sorted by its windows' last decoded row, then all batches are shuffled,
    so that a batch is cut to its longest window."""
    import torch

    perm = torch.randperm(n, generator=g)
    if rows is None:
        return [perm[j : j + batch] for j in range(0, n, batch)]
    out = []
    for j in range(0, n, batch * group):
        chunk = perm[j : j + batch * group]
        chunk = chunk[torch.from_numpy(np.argsort(rows[chunk.numpy(), 1], kind="stable"))]
        out += [chunk[k : k + batch] for k in range(0, len(chunk), batch)]
    return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def fit(x: np.ndarray, y: list[list[int]], n_classes: int, rec: dict, progress, seed: int,
        soft: np.ndarray | None = None, threads: int = 2):  # fmt: skip
    """Train the network with CTC on listening windows; returns the StreamNet.

    With the recipe's ``train.rows`` "decoded" the loss sees only the rows the chip decodes
    (`decoded_rows`): the words must be heard where the decoder looks for them, not guessed
    from the window's start.

    Args:
        soft: optional ``(windows, rows, classes)`` teacher probabilities (`teacher_probs`):
            the loss is then (1 - w) x CTC + w x the KL divergence from them on the same
            rows, summed over the rows and divided by the sentence's words as CTC is
            (w: the recipe's ``train.distill.weight``).
        threads: PyTorch threads (at most what torch would use).
    """
    import torch
    from torch import nn

    from .model import StreamNet

    exact, threads = portable.prepare(rec, threads)  # the same bytes on any x86-64 CPU
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(threads, torch.get_num_threads())))
    t = rec["train"]
    spec = [list(s) for s in rec["model"]["spec"]] + [["dense", n_classes, 1, 1, 1]]
    net = StreamNet(x.shape[2], spec, logits=True)
    X = torch.from_numpy(x)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    adamw = portable.AdamW if exact else torch.optim.AdamW
    opt = adamw(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    clip = portable.clip_grad_norm_ if exact else nn.utils.clip_grad_norm_
    epochs, batch = int(t["epochs"]), int(t["batch"])
    steps = epochs * max(1, -(-len(X) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=t["lr"], total_steps=steps, pct_start=0.15
    )
    g = torch.Generator().manual_seed(seed)
    aug = t.get("augment")
    rows = decoded_rows(x, rec, net.stride) if t.get("rows") == "decoded" else None
    crop = rows is not None and bool(t.get("crop"))
    kd_w = float(t["distill"]["weight"]) if soft is not None else 0.0
    for ep in range(epochs):
        net.train()
        tot = 0.0
        for idx in _batches(len(X), batch, g, rows if crop else None):
            xb = X[idx]
            if crop:  # a causal network: the frames after the last decoded row change nothing
                xb = xb[:, : int(rows[idx.numpy(), 1].max()) * net.stride]
            xb = xb.float() * INPUT_SCALE
            if aug:
                xb = specaug.augment(xb, g, aug)
            out = net(xb).permute(2, 0, 1).log_softmax(2)  # (T, B, C)
            n_out, at = out.shape[0], None
            ys = [y[i] for i in idx.tolist()]
            tgt = torch.tensor([p for q in ys for p in q], dtype=torch.long)
            tl = torch.tensor([len(q) for q in ys], dtype=torch.long)
            if rows is None:
                il = torch.full((len(idx),), out.shape[0], dtype=torch.long)
            else:  # each window's decoded rows moved to the front
                r = torch.from_numpy(rows[idx.numpy()])
                n_t = out.shape[0]
                at = (r[:, 0][None, :] + torch.arange(n_t)[:, None]).clamp(max=n_t - 1)
                out = out.gather(0, at[:, :, None].expand(-1, -1, out.shape[2]))
                il = (r[:, 1].clamp(max=n_t) - r[:, 0]).long()
            loss = ctc(out, tgt, il, tl)
            if soft is not None:
                pt = torch.from_numpy(soft[idx.numpy(), :n_out].astype(np.float32))
                pt = pt.permute(1, 0, 2)  # (T, B, C) as out
                if at is not None:
                    pt = pt.gather(0, at[:, :, None].expand(-1, -1, pt.shape[2]))
                kl = (pt * (torch.log(pt.clamp_min(1e-8)) - out)).sum(2)  # (T, B)
                live = torch.arange(out.shape[0])[:, None] < il[None, :]
                kd = ((kl * live).sum(0) / tl.clamp(min=1)).mean()
                loss = (1.0 - kd_w) * loss + kd_w * kd
            opt.zero_grad()
            loss.backward()
            clip(net.parameters(), 5.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        what = "CTC loss" if soft is None else f"loss ({1 - kd_w:g} CTC + {kd_w:g} KL)"
        progress("train", (ep + 1) / epochs, f"{what} {tot / len(X):.3f}")
    return net.eval()


def teachers(cs_path, rec: dict, progress, workers: int = 2, threads: int = 2) -> list:
    """The teacher networks of ``rec["train"]["distill"]``: `trainer.teacher_recipes` (the
    wake words' rule: the recipe without distillation at each of its ``teacher_seeds``, for
    each of its ``teacher_variants``), each built as ``train-commands FILE --seed S`` builds
    it (its own sentences, voices and scenes) and kept in the cache (``teachers/<hash>/``,
    the hash of the teacher's recipe and of the command-set file) for the next build.

    Returns:
        ``[(QuantModel, logit_scale)]``: the int8 network and the size of its logit step.
    """
    from voicenode_tools.reference import nn as ref

    from .trainer import teacher_recipes

    src = hashlib.sha256(Path(cs_path).read_bytes()).hexdigest()
    name = f"commands_{csmod.load(cs_path).name}"  # the files `train-commands` writes
    out = []
    for t_rec in teacher_recipes(rec):
        s = t_rec["seed"]
        key = json.dumps({"recipe": t_rec, "commandset": src}, sort_keys=True)
        folder = cache_dir() / "teachers" / hashlib.sha256(key.encode()).hexdigest()[:16]
        side = folder / f"{name}.json"
        if not side.exists():
            progress.log(f"teacher: seed {s} ({folder})")
            build(cs_path, folder, seed=int(s), progress=progress, workers=workers,
                  overrides=t_rec, threads=threads)  # fmt: skip
        scale = float(json.loads(side.read_text())["logit_scale"])
        out.append((ref.QuantModel.load(folder / f"{name}_net.vnm", head="logits"), scale))
    return out


def teacher_probs(models: list, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """The teachers' mean class probabilities on every row of every window.

    Each teacher runs as the chip runs it (`model.quant_stream`: its int8 logits, the same
    integers as the chip's), and its logits times its logit step give its probabilities.

    Returns:
        float16 ``(windows, rows, classes)``.
    """
    import torch

    from .model import quant_stream

    out = None
    for q, scale in models:
        zp = int(q.layers[-1].out_zp)
        for j in range(0, len(x), batch):
            lg = (quant_stream(q, x[j : j + batch]).double() - zp) * scale
            p = torch.softmax(lg, 2).numpy() / len(models)
            if out is None:
                out = np.zeros((len(x),) + p.shape[1:], np.float32)
            out[j : j + batch] += p
    return out.astype(np.float16)


def quantize(net, x: np.ndarray, n_calib: int = 60, exact_root: bool = False):
    """Post-training int8 quantisation of the phone network (`reference.nn`, logits head;
    ``exact_root``: batch norm folded as a portable training needs)."""
    from voicenode_tools.reference import nn as ref

    from .model import to_float_layers

    layers = to_float_layers(net, exact_root)
    step = max(1, len(x) // n_calib)
    calib = [w for w in x[::step][:n_calib]]
    return ref.quantize(layers, calib, input_scale=INPUT_SCALE, input_zp=0)  # head from the layers


def _agreement(net, qmodel, windows) -> float:
    """Share of network steps whose best class is the same in float and in int8."""
    import torch

    if not len(windows):
        return 1.0
    x = torch.from_numpy(np.array(windows, np.uint8)).float() * INPUT_SCALE
    with torch.no_grad():
        fl = net(x).argmax(1).numpy()  # (n, steps)
    q = np.array([qmodel.stream(w).argmax(1) for w in windows])
    n = min(fl.shape[1], q.shape[1])
    return round(float(np.mean(fl[:, :n] == q[:, :n])), 4)


# --- decisions ------------------------------------------------------------------------------


def heard(qmodel, windows, rec, stride: int) -> list:
    """What the chip hears of each listening window: None (no decision in the window), ()
    (the end-pointer heard nothing) or the uint8 cost rows of the command, computed from the
    int8 network's logits as the chip computes them."""
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.reference import vad as ref_vad

    v = ref_vad.settings(rec["vad"])
    out = []
    for w in windows:
        seg, _, cost = rc.heard(qmodel, v, stride, w)
        out.append(None if seg.state < ref_vad.DONE else () if cost is None else cost)
    return out


def decisions(rows: list, g, unk: int = -1, word_bonus: int = 0) -> list:
    """What the chip decides for each window `heard` (None: no decision in the window).

    Returns per window a dict from `grammar.decode` with this `word_bonus` (plus "silence"
    True when the end-pointer heard nothing, and the `reject` rule's "features" where rows
    were decoded; `unk`: the <unk> class).
    """
    from voicenode_tools.reference import commands as rc

    dec = rc.Decoder(g, word_bonus)
    out = []
    for cost in rows:
        if cost is None:
            out.append(None)
        elif len(cost) == 0:
            out.append({"silence": True})
        else:
            r = rc.decode(dec, cost, unk)
            r["silence"] = False
            out.append(r)
    return out


def accepted(r, cutoff_avg: int, margin_avg: int, rule: dict | None = None) -> bool:
    """Whether the chip accepts a decision of `decisions` at this operating point."""
    from voicenode_tools.reference import commands as rc

    if r is None or r.get("silence") or r["frames"] == 0:
        return False
    return rc.accepts(r["avg"], r["second"], cutoff_avg, margin_avg, r.get("features"), rule)


def fit_reject(decs, items, target: float) -> dict:
    """The linear `reject` rule: integer weights of the decision's features and a bias.

    A logistic regression (plain gradient descent from zeros: repeatable) tells commands
    from unknown speech on the decided windows; its weights, scaled to integers, score every
    window, and the bias keeps at most `target` of the unknown speech (the chip accepts a
    score >= 0).
    """
    from voicenode_tools.reference import commands as rc

    rows = [(r["features"], it[2] >= 0) for r, it in zip(decs, items, strict=True)
            if r is not None and not r.get("silence") and r["frames"]]  # fmt: skip
    x = np.array([f for f, _ in rows], np.float64)
    y = np.array([c for _, c in rows], np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    for _ in range(4000):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        w -= 0.2 * (z.T @ (p - y) / len(z) + 1e-3 * np.r_[w[:-1], 0.0])
    raw = w[:-1] / sd  # per unit of each feature
    scale = (1 << 16) / max(float(np.max(np.abs(raw * sd))), 1e-9)
    weights = [int(round(v * scale)) for v in raw]
    rule = {"features": list(rc.REJECT_FEATURES), "weights": weights, "bias": 0}
    s = np.array([rc.reject_score(f, rule) for f, _ in rows], np.int64)
    unk = np.sort(s[y == 0])[::-1]
    n_unk = sum(it[2] < 0 for it in items)
    allowed = int(np.floor(target * max(n_unk, 1)))
    # keep scores above the (allowed + 1)-th best unknown window's
    rule["bias"] = int(-unk[allowed] - 1) if allowed < len(unk) else int(-s.min())
    return rule


def score(decs, items, cs, layout, cutoff_avg: int, margin_avg: int, rule=None) -> dict:
    """Intent accuracy, slot accuracy and unknown speech accepted, at one operating point."""
    from voicenode_tools import grammar as G

    names = layout["intents"]
    cmd = [i for i, it in enumerate(items) if it[2] >= 0]
    unk = [i for i, it in enumerate(items) if it[2] < 0]
    ok, slot_n, slot_ok, rejected = 0, 0, 0, 0
    for i in cmd:
        r = decs[i]
        if not accepted(r, cutoff_avg, margin_avg, rule):
            rejected += 1
            continue
        if r["intent"] != items[i][2]:
            continue
        ok += 1
        if items[i][3]:
            slot_n += 1
            got = G.slots_of(r["token"], names[r["intent"]], layout)
            want = {sname: cs.slots[sname].values[v] for sname, v in items[i][3].items()}
            slot_ok += got == want
    return {
        "intent_accuracy": round(ok / max(len(cmd), 1), 4),
        "slot_accuracy": round(slot_ok / max(slot_n, 1), 4),
        "command_rejected": round(rejected / max(len(cmd), 1), 4),
        "unknown_accepted": round(
            sum(accepted(decs[i], cutoff_avg, margin_avg, rule) for i in unk) / max(len(unk), 1),
            4,
        ),
        "commands": len(cmd),
        "unknown": len(unk),
    }


def choose_operating_point(decs, items, target: float) -> tuple[int, int]:
    """The (cutoff_avg, margin_avg) with the most commands right while at most `target` of the
    unknown speech is accepted (validation voices): a command must be cheap (avg <= cutoff)
    and ahead of every other intent (second - avg >= margin)."""
    big = 1 << 20
    rows = []
    for r, it in zip(decs, items, strict=True):
        if r is None or r.get("silence") or r["frames"] == 0:
            rows.append((it[2] >= 0, False, big, -1))
            continue
        second = big if r["second"] is None else r["second"]
        rows.append((it[2] >= 0, it[2] >= 0 and r["intent"] == it[2], r["avg"], second - r["avg"]))
    a = np.array(rows, np.int64).reshape(-1, 4)
    cmd, ok, avg, marg = a[:, 0] == 1, a[:, 1] == 1, a[:, 2], a[:, 3]
    n_unk = max(1, int(np.sum(~cmd)))
    best = (-1.0, 0, 1 << 16)
    for margin in range(0, 257, 4):
        u = np.sort(avg[~cmd & (marg >= margin)])
        allowed = int(np.floor(target * n_unk))
        cut = int(u[allowed] - 1) if allowed < len(u) else int(avg.max())
        acc = (
            float(np.mean(ok[cmd] & (avg[cmd] <= cut) & (marg[cmd] >= margin)))
            if cmd.any()
            else 0.0
        )
        if acc > best[0]:
            best = (acc, max(cut, 0), margin)
    return best[1], best[2]


# --- the whole build ------------------------------------------------------------------------


def build(cs_path, out_dir, seed: int = 1, progress=None, workers: int = 2, quick: bool = False,
          name: str | None = None, overrides: dict | None = None, threads: int = 2) -> dict:  # fmt: skip
    """Make the command model of a command-set file; returns the sidecar written.

    ``threads``: PyTorch threads for training (two trainings with two threads each on a
    2-core machine ran about 20 times slower than one alone: 1 beside other work).

    Writes ``out_dir/<name>.json`` (the command model's sidecar), ``<name>.vcg`` (the grammar)
    and ``<name>_net.vnm`` + ``.json`` (the network); name ``commands_<set name>``.
    """
    from voicenode_tools import __version__
    from voicenode_tools import grammar as G
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.reference import nn as ref_nn

    from .model import trained_on
    from .trainer import Progress, distill_clean_db

    progress = progress or Progress(enabled=False)
    t0 = time.time()
    cs = csmod.load(cs_path)
    rec = make_recipe(seed, quick, overrides)
    units = rec["units"]
    g, layout = G.compile_commandset(cs, units)  # errors in the file show before any synthesis
    classes = layout["classes"]
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

    # teachers that hear clean audio learn from the scenes' clean twins (the background 40 dB
    # down): the network learns from noisy windows what they make of clean ones
    clean_db = distill_clean_db(rec)
    xs, ys, xcs = [], [], []
    for grp in ("train_cmd", "train_unk"):
        if units == "words":
            labs = [G.word_labels(t, classes) for t, *_ in plan[grp]]
        else:
            labs = phone_labels(plan[grp], workers)
        for c in range(d["copies"]):
            job_list = jobs(grp, d["snr_db"], 1, c)
            key = grp if c == 0 else f"{grp}_{c}"
            sc = scenes(job_list, babble, f"scenes {grp}", key)
            # the teachers' clean twins of the same scenes (the same draws: the same windows)
            twins = sc if clean_db is None else scenes(
                [(*j, clean_db) for j in job_list], babble, f"clean scenes {grp}",
                f"{key}_clean{clean_db:g}",
            )  # fmt: skip
            for (w, onset), (wc, _), clip, lab in zip(sc, twins, clips[grp], labs, strict=True):
                if lab and speech_fits(onset, len(clip), max_frames):
                    xs.append(w)
                    ys.append(lab)
                    xcs.append(wc)
    x = np.array(xs, np.uint8)
    x_teach = x if clean_db is None else np.array(xcs, np.uint8)
    del xs, xcs
    val = {}
    for snr in d["val_snrs"]:
        vw, vi = [], []
        for grp in ("val_cmd", "val_unk"):
            vw += [
                w
                for w, _ in scenes(
                    jobs(grp, (snr, snr), 1, 1), val_babble, f"val {grp} {snr}dB", f"{grp}_{snr}"
                )
            ]
            vi += plan[grp]
        val[snr] = (vw, vi)
    t_data = time.time() - t0 - t_synth
    progress.log(f"data ready in {t_synth + t_data:.0f}s: {len(x)} training windows")
    soft, t_teach = None, 0.0
    if rec["train"].get("distill"):
        models = teachers(cs_path, rec, progress, workers, threads)
        t_soft = time.time()
        soft = teacher_probs(models, x_teach)
        progress.log(f"teachers' probabilities in {time.time() - t_soft:.0f}s")
        t_teach = time.time() - t0 - t_synth - t_data
    net = fit(x, ys, len(classes), rec, progress, seed, soft, threads)
    del soft, x_teach
    t_train = time.time() - t0 - t_synth - t_data - t_teach
    qmodel = quantize(net, x, exact_root=portable.wanted(rec))
    stride = int(qmodel.stride)
    unk = rc.unk_class(layout)
    rows = {snr: heard(qmodel, vw, rec, stride) for snr, (vw, _) in val.items()}
    all_i = [it for snr in val for it in val[snr][1]]
    chosen = None
    bonuses = rec["word_bonus"] if isinstance(rec["word_bonus"], list) else [rec["word_bonus"]]
    sweep = {}
    # the word bonus with the most commands right after rejection (each with its own rule)
    for wb in bonuses if units == "words" else [0]:
        decs = {snr: decisions(rows[snr], g, unk, int(wb)) for snr in val}
        all_d = [r for snr in val for r in decs[snr]]
        rule = None
        if rec.get("reject", "cutoff") == "linear":
            cutoff, margin = NO_CUTOFF, 0  # every decoded command; the rule decides
            rule = fit_reject(all_d, all_i, rec["target_unknown_accept"])
        else:
            cutoff, margin = choose_operating_point(all_d, all_i, rec["target_unknown_accept"])
        scores = {
            f"snr{snr}": score(decs[snr], val[snr][1], cs, layout, cutoff, margin, rule)
            for snr in val
        }
        acc = float(np.mean([scores[f"snr{snr}"]["intent_accuracy"] for snr in val]))
        sweep[str(wb)] = round(acc, 4)
        progress.log(f"word bonus {wb}: intent accuracy {acc:.4f}")
        if chosen is None or acc > chosen[0]:
            chosen = (acc, int(wb), decs, cutoff, margin, rule, scores)
    _, word_bonus, decs, cutoff, margin, rule, scores = chosen
    keys = ("intent_accuracy", "slot_accuracy", "unknown_accepted", "command_rejected")
    scores["mean"] = {
        k: round(float(np.mean([scores[f"snr{s}"][k] for s in val])), 4) for k in keys
    }
    scores["argmax_intent_accuracy"] = {
        f"snr{snr}": round(float(np.mean([
            r is not None and not r.get("silence") and r["intent"] == it[2]
            for r, it in zip(decs[snr], val[snr][1], strict=True) if it[2] >= 0
        ])), 4) for snr in val
    }  # fmt: skip
    scores["word_bonus_intent_accuracy"] = sweep  # mean over the SNRs, per candidate
    scores["float_int8_step_agreement"] = _agreement(net, qmodel, val[d["val_snrs"][0]][0][:50])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"commands_{cs.name}"
    version = (
        f"{__version__}+{hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:8]}"
    )
    src = Path(cs_path).read_bytes()
    phones_side = {
        "name": f"{name}_net", "kind": "phones", "version": version,
        "units": units, "labels": classes,
        "input": {"n_mels": int(x.shape[2]), "scale": INPUT_SCALE, "zero_point": 0},
        "frontend": ref_nn.frontend_params(), "seed": seed, "recipe_of": f"{name}.json",
    }  # fmt: skip
    qmodel.save(out_dir / f"{name}_net.vnm", phones_side)
    gbytes = g.to_bytes()
    (out_dir / f"{name}.vcg").write_bytes(gbytes)
    sidecar = {
        "name": name, "version": version, "kind": "commands", "format": 2,
        "network": f"{name}_net",
        "grammar": {"file": f"{name}.vcg", "crc32": rc.grammar_crc32(gbytes), "nodes": g.n_nodes,
                    "bytes": len(gbytes)},
        "commandset": {"name": cs.name, "file": str(cs_path), "sha256": hashlib.sha256(src).hexdigest(),
                       "sentences": sum(cs.count().values())},
        "layout": layout, "vad": rec["vad"], "stride": stride,
        "cutoff_avg": int(cutoff), "margin_avg": margin, **({"reject": rule} if rule else {}),
        "word_bonus": word_bonus,
        "logit_scale": float(qmodel.layers[-1].out_scale),
        "frontend": ref_nn.frontend_params(), "recipe": rec, "seed": seed, "scores": scores,
        "heap_bytes": {"network": int(qmodel.heap_bytes()), "grammar": int(g.heap_bytes()),
                       "costgram": rc.ring_rows(rec["vad"], stride) * len(classes)},
        "macs_per_step": int(qmodel.macs_per_step),
        "train_seconds": {"synth": round(t_synth, 1), "scenes": round(t_data, 1), "train": round(t_train, 1),
                          **({"teachers": round(t_teach, 1)} if t_teach else {}),
                          "total": round(time.time() - t0, 1)},
        "data_hash": data_hash(cs, rec, 16000),
        "trained_on": trained_on(),
    }  # fmt: skip
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    m = scores["mean"]
    progress.done(
        f"{name}: cutoff {cutoff}, intent accuracy {m['intent_accuracy']}, slots "
        f"{m['slot_accuracy']}, unknown accepted {m['unknown_accepted']} (held-out voices, "
        f"SNR {d['val_snrs']} dB), {time.time() - t0:.0f}s -> {out_dir / (name + '.json')}"
    )
    return sidecar
