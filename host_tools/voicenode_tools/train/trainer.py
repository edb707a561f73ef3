"""From a recipe to a shipped model: data, tracks, training, quantisation, validation, export.

`build(recipe, out_dir)` is what `voicenode train-wakeword` runs. Every random choice comes
from the recipe's seed, so the same recipe gives the same data; PyTorch training on the CPU
is seeded too (bit-for-bit repeatability across machines is not promised by PyTorch).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from . import data as datamod
from . import evaluate, portable, specaug, synth
from . import recipe as recipes
from . import tracks as trk

TRACKS_VERSION = 2
#: Feature value v (uint8) is fed to the network as v * INPUT_SCALE.
INPUT_SCALE = 1.0 / 64.0
VAL_SNRS = (20, 10, 5)


class Progress:
    """A one-line text progress bar on stderr (`voicenode train-wakeword`)."""

    def __init__(self, enabled: bool = True, stream=None):
        import sys

        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.t0 = time.time()
        self.last = ""

    def __call__(self, stage: str, frac: float, note: str = ""):
        if not self.enabled:
            return
        n = int(round(30 * max(0.0, min(1.0, frac))))
        line = f"\r[{'#' * n}{'.' * (30 - n)}] {100 * frac:5.1f}% {stage:<22} {note:<28} {time.time() - self.t0:6.0f}s"
        if line != self.last:
            self.stream.write(line)
            self.stream.flush()
            self.last = line

    def done(self, msg: str = ""):
        if self.enabled:
            self.stream.write(f"\r{msg:<110}\n")
            self.stream.flush()

    def log(self, msg: str):
        if self.enabled:
            self.stream.write(f"\r{msg:<110}\n")
            self.stream.flush()


def frontend_hash() -> str:
    """Hash of the must-match front-end parameters (features depend on nothing else)."""
    from voicenode_tools.reference import nn as ref

    return hashlib.sha256(recipes.canonical(ref.frontend_params()).encode()).hexdigest()[:12]


def prepare(rec: dict, progress=None, workers: int = 2) -> dict:
    """Clips, then tracks (features and labels) of every set, cached next to the clips.

    Returns:
        {"train": [...], "val_neg": [...], "val_pos_snr20": [...], "val_piper_snr20": [...], ...}
    """
    from voicenode_tools.reference import params

    rate = int(params.SAMPLE_RATE)
    report = progress or (lambda *a, **k: None)
    path = _tracks_path(rec, rate)
    names_path = path.with_suffix(".json")
    if path.exists() and names_path.exists():  # the clips are not needed then
        names = json.loads(names_path.read_text())
        all_tracks = trk.load(path)
        out, i = {}, 0
        for name, n in names:
            out[name] = all_tracks[i : i + n]
            i += n
        return out
    clips = datamod.load_or_generate(rec, rate, progress=report, workers=workers)
    g = clips.groups
    seed = rec["seed"]
    plans, babble, val_babble, rng = _train_plans(rec, clips)
    sets = {}
    sets["train"] = _train_tracks(rec, clips, plans, babble, rate, workers, report)
    # False accepts per hour: held-out voices reading held-out text over noise, babble, music.
    neg = [(c, "speech") for c in g["val_speech"]]
    sets["val_neg"] = trk.make_tracks(
        trk.plan_tracks(neg, rng, per_track=10), rate, seed * 1000 + 2, g["music"], val_babble,
        snr_db=(5, 25), workers=workers, progress=lambda f: report("features val_neg", f),
    )  # fmt: skip
    # Confusable phrases (accept rate per phrase said, not per hour).
    conf = [(c, "conf") for c in g["val_conf"]]
    sets["val_conf"] = trk.make_tracks(
        trk.plan_tracks(conf, rng, per_track=10), rate, seed * 1000 + 4, g["music"], val_babble,
        snr_db=(10, 25), workers=workers, progress=lambda f: report("features val_conf", f),
    )  # fmt: skip
    for group in ("val_pos", "val_piper"):
        for snr in VAL_SNRS:
            pos = [(c, "pos") for c in g[group]]
            if not pos:
                continue
            sets[f"{group}_snr{snr}"] = trk.make_tracks(
                trk.plan_tracks(pos, rng, per_track=8), rate, seed * 1000 + 3 + snr, g["music"],
                val_babble, snr_db=(snr, snr), workers=workers,
                progress=lambda f, n=f"features {group} {snr}dB": report(n, f),
            )  # fmt: skip
    names = [(k, len(v)) for k, v in sets.items()]
    trk.save(path, [t for v in sets.values() for t in v])
    names_path.write_text(json.dumps(names))
    return sets


def _tracks_path(rec: dict, rate: int, clean_db: float | None = None) -> Path:
    """Where `prepare` keeps the recipe's tracks (and `clean_train_tracks` their twins):
    beside its clips. "train_without_piper": the same clips, but piper's never reach the
    training tracks (a check of generalisation across synthesizers: validated on piper all
    the same)."""
    suffix = "_nopiper" if rec.get("train_without_piper") else ""
    if clean_db is not None:
        suffix += f"_clean{clean_db:g}"
    return datamod.folder_of(rec, rate) / f"tracks_{frontend_hash()}_v{TRACKS_VERSION}{suffix}.npz"


def distill_clean_db(rec: dict) -> float | None:
    """How far below the speech the teachers hear the background: ``train.distill.clean_db``
    (40 dB) with ``"teacher_input": "clean"``, None when they hear the training audio itself
    (the default, "noisy") or nothing is distilled. The wake words' and the commands' rule.

    Raises:
        ValueError: for a ``teacher_input`` other than "noisy" or "clean".
    """
    dist = rec["train"].get("distill") or {}
    teacher_input = dist.get("teacher_input", "noisy")
    if teacher_input not in ("noisy", "clean"):
        raise ValueError(f"train.distill.teacher_input {teacher_input!r}: 'noisy' or 'clean'")
    return float(dist.get("clean_db", 40)) if teacher_input == "clean" else None


def _train_plans(rec: dict, clips):
    """The training tracks' utterances (`tracks.plan_tracks`), the training and validation
    babble talkers, and the random generator `prepare` goes on with."""
    g = clips.groups
    no_piper = bool(rec.get("train_without_piper"))
    rng = np.random.default_rng([rec["seed"], 11])
    babble = trk.babble_pool(g["train_speech"], rng)
    val_babble = trk.babble_pool(g["val_speech"], rng)

    def keep(group):
        info = clips.info[group]
        return [
            c
            for c, i in zip(g[group], info, strict=True)
            if not (no_piper and i.startswith("piper:"))
        ]

    items = [(c, "pos") for c in keep("train_pos") for _ in range(rec["data"]["augment_copies"])]
    items += [(c, "conf") for c in keep("train_conf")] + [
        (c, "speech") for c in keep("train_speech")
    ]
    return trk.plan_tracks(items, rng, per_track=10), babble, val_babble, rng


def _train_tracks(rec, clips, plans, babble, rate, workers, report, clean_db=None) -> list:
    """The training tracks of `_train_plans`' plans (`prepare`), or with ``clean_db`` their
    clean twins (`clean_train_tracks`): one call, so that both lay the same scenes."""
    d = rec["data"]
    return trk.make_tracks(
        plans, rate, rec["seed"] * 1000 + 1, clips.groups["music"], babble, snr_db=d["snr_db"],
        p_reverb=recipes.room_fraction(d), bed=recipes.bed_shares(d), workers=workers,
        clean_db=clean_db,
        progress=lambda f: report("features train" + ("" if clean_db is None else " (clean)"), f),
    )  # fmt: skip


def clean_train_tracks(rec: dict, clean_db: float, progress=None, workers: int = 2) -> list:
    """The training tracks' clean twins (`tracks.mix_track`): the same utterances, rooms,
    frames and labels, with the background ``clean_db`` dB below the speech; cached beside
    the tracks. What teachers hear with ``train.distill.teacher_input`` "clean"."""
    from voicenode_tools.reference import params

    rate = int(params.SAMPLE_RATE)
    report = progress or (lambda *a, **k: None)
    path = _tracks_path(rec, rate, clean_db)
    if path.exists():
        return trk.load(path)
    clips = datamod.load_or_generate(rec, rate, progress=report, workers=workers)
    plans, babble, _, _ = _train_plans(rec, clips)
    out = _train_tracks(rec, clips, plans, babble, rate, workers, report, clean_db)
    tmp = path.with_name(path.stem + ".tmp.npz")
    trk.save(tmp, out)
    tmp.replace(path)
    return out


def fit(rec: dict, train_tracks, progress=None, threads: int = 1, soft=None):
    """Train the float network on chunks of the training tracks.

    Args:
        soft: optional per-frame target probabilities over the concatenated training tracks
            (`teacher_targets`): each output is then also fitted to them, with the weight of
            the recipe's ``train.distill.weight`` (see `build`), for ``train.distill.steps``
            steps if the recipe sets them (``train.steps`` otherwise).

    Returns:
        the trained `model.StreamNet` (eval mode).
    """
    import torch

    from .model import StreamNet

    t = rec["train"]
    exact, threads = portable.prepare(rec, threads)  # the same bytes on any x86-64 CPU
    torch.manual_seed(rec["seed"])
    torch.set_num_threads(max(1, threads))
    rng = np.random.default_rng([rec["seed"], 21])
    feats = np.concatenate([x.feats for x in train_tracks])
    labels = np.concatenate([x.labels for x in train_tracks])
    n_mels = feats.shape[1]
    net = StreamNet(n_mels, rec["model"].get("spec"))
    stride = net.stride
    chunk = int(t.get("chunk", 600)) // stride * stride
    warm = -(-net.receptive_field() // stride)  # outputs whose view starts before the chunk
    starts_ok = len(feats) - chunk
    offsets = np.cumsum([0] + [len(x.feats) for x in train_tracks])[:-1]
    track_starts = offsets[offsets < starts_ok]
    p_start = float(t.get("p_stream_start", 0.0))
    if starts_ok <= 0:
        raise ValueError("not enough training audio for one chunk")
    xf = torch.from_numpy(feats)
    lab = torch.from_numpy(labels.astype(np.int64))
    # a student may train longer than its teachers did (``train.distill.steps``); twice as
    # long made the hey jarvis students worse (docs/WAKEWORD_HISTORY.md, "Distillation")
    steps = int(t["distill"].get("steps", t["steps"]) if soft is not None else t["steps"])
    batch = int(t["batch"])
    adamw = portable.AdamW if exact else torch.optim.AdamW
    opt = adamw(net.parameters(), lr=float(t["lr"]), weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(t["lr"]), total_steps=steps, pct_start=0.1
    )
    neg_w = float(t.get("neg_weight", 2.0))
    out_frames = torch.arange(chunk // stride) * stride + stride - 1
    aug = t.get("augment")  # on-the-fly feature augmentation (`specaug`), None for none
    hard = t.get("hard_negatives")  # {"frac", "weight", "guard"}: the worst again, or None
    kd = float(t["distill"]["weight"]) if soft is not None else 0.0
    soft_t = torch.from_numpy(np.asarray(soft, np.float32)) if soft is not None else None
    g = torch.Generator().manual_seed(int(rec["seed"]))
    net.train()
    running = None
    for step in range(steps):
        st_np = rng.integers(0, starts_ok, batch)
        # Some chunks start where a track starts: the network's history is then real zeros,
        # exactly as on the chip after a reset, so those chunks are learned from their start.
        fresh = rng.random(batch) < p_start
        st_np[fresh] = track_starts[rng.integers(0, len(track_starts), int(fresh.sum()))]
        st = torch.from_numpy(st_np)
        idx = st[:, None] + torch.arange(chunk)[None, :]
        x = xf[idx].float() * INPUT_SCALE
        if aug:
            x = specaug.augment(x, g, aug)
        y = lab[st[:, None] + out_frames[None, :]]
        logits = net(x)
        past_warm = torch.from_numpy(fresh)[:, None] | (torch.arange(y.shape[1]) >= warm)[None, :]
        valid = (y >= 0) & past_warm
        target = (y == 1).float()
        w = torch.where(y == 1, 1.0, neg_w) * valid
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, target, weight=w, reduction="sum"
        )
        loss = loss / w.sum().clamp(min=1.0)
        if kd:
            # The teachers' probabilities on every output past the warm-up, the frames whose
            # hard label is "ignore" included; negatives weighted as in the hard loss.
            wk = torch.where(y == 0, neg_w, 1.0) * past_warm
            ys = soft_t[st[:, None] + out_frames[None, :]]
            soft_loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, ys, weight=wk, reduction="sum"
            ) / wk.sum().clamp(min=1.0)
            loss = (1.0 - kd) * loss + kd * soft_loss
        if hard:
            loss = loss + _hard_negative_loss(logits, y, valid, hard)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lv = loss.item()
        running = lv if running is None else 0.98 * running + 0.02 * lv
        if progress and (step % 10 == 0 or step == steps - 1):
            progress("train", (step + 1) / steps, f"loss {running:.4f}")
    net.eval()
    return net


def teacher_targets(models, tracks) -> np.ndarray:
    """The mean probability of ``models`` at every feature frame of the concatenated tracks.

    Each model streams each track from its start (full history, as on the chip), once per
    phase of its stride, so that every frame gets the output completed at it; a chunk in
    `fit` may start at any frame. Frames before a model's first output get 0.
    """
    out = []
    for t in tracks:
        n = len(t.feats)
        p = np.zeros(n, np.float64)
        for m in models:
            s = m.stride
            for o in range(s):
                q = m.stream(t.feats[o:]).astype(np.float64) / 255.0
                f = o + evaluate.frame_of_step(np.arange(len(q)), s)
                keep = f < n
                p[f[keep]] += q[keep]
        out.append(p / len(models))
    return np.concatenate(out).astype(np.float32)


def teacher_recipe(rec: dict, seed: int, variant: dict | None = None) -> dict:
    """The recipe of ``rec``'s teacher at ``seed``: the same recipe without distillation, or,
    with ``"generations": n`` (n > 1), distilled itself over n - 1 generations. With
    ``"teacher_model": {...}`` the teacher's ``model`` is that instead (a larger network
    teaching the chip's; its own teachers, if any, keep it). ``variant`` (one entry of
    ``"teacher_variants"``) is merged on top: teachers made from other data or training."""
    t_rec = copy.deepcopy(rec)
    t_rec["seed"] = int(seed)
    d = t_rec["train"]["distill"]
    d.pop("teacher_variants", None)
    model = d.pop("teacher_model", None)
    if model is not None:
        if not isinstance(model, dict):
            raise ValueError(f"train.distill.teacher_model must be a model table, not {model!r}")
        t_rec["model"] = model
    n = int(d.pop("generations", 1))
    if n > 2:
        d["generations"] = n - 1
    elif n < 2:
        del t_rec["train"]["distill"]
    if variant:
        t_rec = recipes._merge(t_rec, variant)
    return t_rec


def teacher_recipes(rec: dict) -> list:
    """Every teacher's recipe of ``rec["train"]["distill"]``, in the order their outputs are
    averaged: `teacher_recipe` at each of its ``teacher_seeds`` for each entry of its
    ``teacher_variants`` (recipe tables merged on the teacher's recipe, e.g. ``{"data":
    {"babble_fraction": 0.5}}``; ``[{}]`` when absent: the plain recipe alone). The wake
    words' and the commands' rule."""
    d = rec["train"]["distill"]
    variants = d.get("teacher_variants", [{}])
    if (
        not isinstance(variants, list)
        or not variants
        or not all(isinstance(v, dict) for v in variants)
    ):
        raise ValueError(
            f"train.distill.teacher_variants must be a list of recipe tables, not {variants!r}"
        )
    for v in variants:
        train = v.get("train", {})
        if {"seed", "name", "phrase"} & set(v) or not isinstance(train, dict) or "distill" in train:
            raise ValueError(
                f"train.distill.teacher_variants: {v!r} may not set the seed, name, phrase "
                "or distill"
            )
        synth.refuse_mbrola(v.get("data", {}))  # here, before any teacher trains
    return [teacher_recipe(rec, s, v) for v in variants for s in d["teacher_seeds"]]


def teachers(rec: dict, progress=None, workers: int = 2, threads: int = 1) -> list:
    """The teacher models of ``rec["train"]["distill"]`` (`teacher_recipes`), each built as
    `train-wakeword --seed S` builds its recipe (its own data) and kept in the cache
    (``teachers/<recipe hash>/``) for the next build."""
    from voicenode_tools.reference import nn as ref

    out = []
    for t_rec in teacher_recipes(rec):
        folder = recipes.cache_dir().parent / "teachers" / recipes.recipe_hash(t_rec)
        path = folder / f"{t_rec['name']}.vnm"
        if not path.exists():
            if progress:
                progress.log(f"teacher: seed {t_rec['seed']} ({folder})")
            build(t_rec, folder, progress, workers, threads)
        out.append(ref.QuantModel.load(path))
    return out


def _hard_negative_loss(logits, y, valid, hard: dict):
    """The mean loss of the batch's hardest negative outputs, times ``hard["weight"]``.

    The false accepts a budget of 0.5 per hour allows are decided by the few negatives that
    score highest, which a mean over every output barely sees: this term is the mean binary
    cross-entropy of the ``hard["frac"]`` share of the batch's negative outputs (label 0,
    valid) that the network scores highest (at least one).
    """
    import torch

    # Outputs near a phrase (within ``hard["guard"]`` outputs of any label but 0) stay out:
    # the start of the phrase is labelled negative, and pushing it down undoes the positives.
    guard = int(hard.get("guard", 0))
    near = (y != 0).float()[:, None, :]
    if guard:
        near = torch.nn.functional.max_pool1d(near, 2 * guard + 1, stride=1, padding=guard)
    neg = logits[valid & (y == 0) & (near[:, 0, :] == 0)]
    if neg.numel() == 0:
        return logits.sum() * 0.0
    k = max(1, int(float(hard["frac"]) * neg.numel()))
    worst = torch.topk(neg, k).values
    zeros = torch.zeros_like(worst)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(worst, zeros)
    return float(hard["weight"]) * bce


def quantize(net, train_tracks, n_calib: int = 40, exact_root: bool = False):
    """Post-training quantisation through `reference.nn.quantize`, calibrated on training tracks
    (``exact_root``: batch norm folded as a portable training needs, `model.to_float_layers`)."""
    from voicenode_tools.reference import nn as ref

    from .model import to_float_layers

    layers = to_float_layers(net, exact_root)
    step = max(1, len(train_tracks) // n_calib)
    calib = [t.feats for t in train_tracks[::step][:n_calib]]
    return ref.quantize(layers, calib, input_scale=INPUT_SCALE, input_zp=0), layers


def validate(qmodel, sets: dict, window: int, cooloff: int, target_fa_per_hour: float) -> dict:
    """Pick the cutoff on validation negatives and report false rejects per condition.

    The cutoff is the lowest uint8 cutoff whose false accepts on the validation negatives stay
    within ``target_fa_per_hour`` (so with less than two hours of negatives: none at all).
    """
    stride = qmodel.stride
    neg = sets["val_neg"]
    neg_probs = [qmodel.stream(t.feats) for t in neg]
    neg_hours = evaluate.hours(neg)
    allowed = int(np.floor(target_fa_per_hour * neg_hours))
    cutoffs = np.arange(1, 255)
    fa = np.array(
        [evaluate.score_tracks(neg_probs, neg, stride, int(c), window, cooloff)[2] for c in cutoffs]
    )
    ok = np.flatnonzero(fa <= allowed)
    cutoff_u8 = int(cutoffs[ok[0]]) if len(ok) else 254
    pos_sets = {
        k: v for k, v in sets.items() if k.startswith("val_pos") or k.startswith("val_piper")
    }
    pos_probs = {k: [qmodel.stream(t.feats) for t in v] for k, v in pos_sets.items()}

    def frr_at(c):
        out = {}
        for k, v in pos_sets.items():
            # No cool-off here: positives follow each other within a second in these tracks,
            # and each must be judged on its own (the cool-off is for repeats of one word).
            hit, total, _ = evaluate.score_tracks(pos_probs[k], v, stride, c, window, 0)
            out[k] = round(1.0 - hit / max(total, 1), 4)
        return out

    frr = frr_at(cutoff_u8)
    conf_sets = sets.get("val_conf", [])
    conf_probs = [qmodel.stream(t.feats) for t in conf_sets]

    def conf_rate(c):
        """Share of confusable utterances that wake the detector (within 1 s of their end)."""
        n = hit = 0
        for p, t in zip(conf_probs, conf_sets, strict=True):
            frames = [
                evaluate.frame_of_step(m, stride) for m in evaluate.detections(p, c, window, 0)
            ]
            for s, e, _ in t.events:
                n += 1
                hit += any(s <= f <= e + 100 for f in frames)
        return round(hit / max(n, 1), 4)

    espeak = [frr[k] for k in frr if k.startswith("val_pos")]
    piper = [frr[k] for k in frr if k.startswith("val_piper")]
    curve = []
    for c in (64, 96, 128, 160, 192, 224):
        f = frr_at(c)
        n_fa = int(fa[c - 1])
        curve.append(
            {"cutoff_u8": c, "fa_per_hour": round(n_fa / neg_hours, 2),
             "confusable_accept": conf_rate(c),
             "frr_espeak": round(float(np.mean([f[k] for k in f if k.startswith("val_pos")])), 4),
             "frr_piper": round(float(np.mean([f[k] for k in f if k.startswith("val_piper")] or [0])), 4)}
        )  # fmt: skip
    return {
        "cutoff_u8": cutoff_u8,
        "negative_hours": round(neg_hours, 3),
        "false_accepts": int(fa[cutoff_u8 - 1]),
        "fa_per_hour": round(float(fa[cutoff_u8 - 1]) / neg_hours, 3),
        "frr": frr,
        "confusable_accept": conf_rate(cutoff_u8),
        "confusables": sum(len(t.events) for t in conf_sets),
        "frr_espeak_mean": round(float(np.mean(espeak)), 4) if espeak else None,
        "frr_piper_mean": round(float(np.mean(piper)), 4) if piper else None,
        "curve": curve,
    }


def build(
    rec: dict, out_dir: Path, progress: Progress | None = None, workers: int = 2, threads: int = 1
) -> dict:
    """Make the model of ``rec``: returns the sidecar written to ``out_dir/<name>.json``."""
    from voicenode_tools import __version__
    from voicenode_tools.reference import nn as ref

    from .model import trained_on

    progress = progress or Progress(enabled=False)
    clean_db = distill_clean_db(rec)  # a bad setting is refused before any work
    if rec["train"].get("distill"):
        teacher_recipes(rec)  # as are bad teacher_variants
    t0 = time.time()
    sets = prepare(rec, progress, workers)
    t_data = time.time() - t0
    progress.log(f"data ready in {t_data:.0f}s: {len(sets['train'])} training tracks "
                 f"({evaluate.hours(sets['train']):.2f} h), {evaluate.hours(sets['val_neg']):.2f} h validation negatives")  # fmt: skip
    soft = None
    if rec["train"].get("distill"):
        # Distillation: the network also learns the mean output of the same recipe's models
        # at other seeds (trained first, or taken from the cache), on the training tracks.
        # With "teacher_input": "clean" they hear the tracks' clean twins (the background
        # 40 dB down): the student learns from noisy audio what they make of clean audio.
        heard = sets["train"]
        if clean_db is not None:
            heard = clean_train_tracks(rec, clean_db, progress, workers)
            if [len(t.feats) for t in heard] != [len(t.feats) for t in sets["train"]]:
                raise RuntimeError("the clean training tracks do not match the tracks")
        soft = teacher_targets(teachers(rec, progress, workers, threads), heard)
    net = fit(rec, sets["train"], progress, threads, soft=soft)
    t_train = time.time() - t0 - t_data
    qmodel, layers = quantize(net, sets["train"], exact_root=portable.wanted(rec))
    det = rec["detect"]
    window, cooloff = int(det["window"]), int(det.get("cooloff", 50))
    progress("validate", 0.5)
    scores = validate(qmodel, sets, window, cooloff, float(det["target_fa_per_hour"]))
    progress("validate", 1.0)
    # Float vs int8 agreement on validation negatives (quantisation error, in probability).
    t = sets["val_neg"][0]
    pf = ref.float_stream(layers, t.feats.astype(np.float64) * INPUT_SCALE)
    pq = qmodel.stream(t.feats).astype(np.float64) / 255.0
    scores["quant_max_abs_diff"] = round(float(np.max(np.abs(pf - pq))), 4)
    scores["quant_mean_abs_diff"] = round(float(np.mean(np.abs(pf - pq))), 5)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = rec["name"]
    sidecar = {
        "name": name,
        "version": f"{__version__}+{recipes.recipe_hash(rec)}",
        "wake_phrase": rec["phrase"],
        "frontend": ref.frontend_params(),
        "cutoff": scores["cutoff_u8"] / 255.0,
        "window": window,
        "cooloff": cooloff,
        "recipe": rec,
        "recipe_hash": recipes.recipe_hash(rec),
        "data_hash": recipes.data_hash(rec, int(sidecar_rate())),
        "seed": rec["seed"],
        "scores": scores,
        "train_seconds": {"data": round(t_data, 1), "train": round(t_train, 1),
                          "total": round(time.time() - t0, 1)},
        "trained_on": trained_on(),
    }  # fmt: skip
    side = qmodel.save(out_dir / f"{name}.vnm", sidecar)
    progress.done(
        f"{name}: cutoff {scores['cutoff_u8']}/255, FA {scores['fa_per_hour']}/h on "
        f"{scores['negative_hours']} h, FRR espeak {scores['frr_espeak_mean']}, piper "
        f"{scores['frr_piper_mean']}, {time.time() - t0:.0f}s -> {out_dir / (name + '.vnm')}"
    )
    return side


def sidecar_rate() -> int:
    from voicenode_tools.reference import params

    return int(params.SAMPLE_RATE)
