"""Training and validation *tracks*: long augmented recordings turned into features with labels.

The front end is stateful (its noise floor adapts over seconds), so examples are not cut
from isolated clips: utterances are laid one after another over a background bed (generated
noise, babble, music or near-silence), each in its own room and at its own level, the whole
track goes through the reference front end (`reference.frontend.features`, identical to the
chip), and every feature frame gets a label:

* 1   the phrase has just ended (from 50 ms before its end to `POS_AFTER_S` after),
* 0   nothing wakes here (background, confusables, other speech, the start of the phrase),
* -1  ignored (the last part of the phrase, and the moments after `POS_AFTER_S` while the
      phrase is still in the network's view).

Validation tracks also keep the list of their positive events, to count detections.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from . import augment

POS_BEFORE_S = 0.05
POS_AFTER_S = 0.30
IGNORE_AFTER_S = 0.8
IGNORE_TAIL_FRACTION = 0.35  # the last 35% of the phrase is neither positive nor negative


def _frontend():
    from voicenode_tools.reference import frontend, params

    return frontend, params


def _frame_of_sample(sample: int, window: int, step: int) -> int:
    """Index of the first feature frame whose window ends at or after ``sample``."""
    return max(0, -(-(sample - window) // step))


class Track:
    """One recording's features and per-frame labels (and its positive events)."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray, events: list[tuple[int, int, str]]):
        self.feats = feats  # uint8 (frames, n_mels)
        self.labels = labels  # int8 (frames,)
        self.events = events  # (start_frame, end_frame, kind) for every utterance


# The kinds of background a track's bed is drawn from, and their shares (a recipe's optional
# data.babble_fraction changes them for its training tracks: `recipe.bed_shares`).
BED_SHARES = {"music": 0.3, "babble": 0.2, "noise": 0.5}


def background_bed(n: int, rate: int, rng, music, speech, kind=None) -> np.ndarray:
    """A unit-RMS background bed of ``n`` samples: ``kind`` "music" (a stretch of one of
    ``music``), "babble" (3-6 of ``speech`` at once) or "noise" (white, pink or brown); None
    draws one by `BED_SHARES`, as every track does, and a dict of shares draws by those
    (noise takes what music and babble leave)."""
    if kind is None or isinstance(kind, dict):
        shares = kind or BED_SHARES
        r, m = rng.random(), shares["music"]
        b = m + shares["babble"]
        kind = "music" if r < m and music else "babble" if r < b and speech else "noise"
    if kind == "music":
        m = music[rng.integers(len(music))]
        start = int(rng.integers(0, max(1, len(m) - n)))
        b = np.resize(m[start : start + n].astype(np.float32), n)
        return b / (augment.rms(b) + 1e-9)
    if kind == "babble":
        return augment.babble(n, rng, speech, talkers=int(rng.integers(3, 7)))
    if kind == "noise":
        return augment.noise(n, rng)
    raise ValueError(f"bed kind {kind!r}: music, babble or noise")


def build_track(*args, **kwargs) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Lay utterances over a background (`mix_track`'s arguments, without its clean twin);
    returns int16 audio and (start, end, kind) in samples."""
    audio, _, events = mix_track(*args, **kwargs)
    return audio, events


def mix_track(
    utterances: list[tuple[np.ndarray, str]],
    rate: int,
    rng: np.random.Generator,
    music: list[np.ndarray],
    babble_speech: list[np.ndarray],
    snr_db: tuple[float, float],
    p_reverb: float = 0.5,
    bed: str | dict | None = None,
    clean_db: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[tuple[int, int, str]]]:
    """Lay utterances over a background, and with ``clean_db`` make its clean twin: the same
    utterances in the same rooms, band limit and gain, with the same background bed
    ``clean_db`` dB below the speech (a quiet room). Returns (int16 audio, int16 clean twin or
    None, events in samples); the twin takes no random draw of its own, so the audio is the
    same with or without it.

    Args:
        utterances: (int16 clip, kind) with kind "pos" or anything else (negative).
        rate: sample rate.
        rng: random generator.
        music: music recordings for backgrounds.
        babble_speech: clips to make babble from.
        snr_db: range of utterance-to-background ratios (by RMS of the utterance).
        p_reverb: probability of a room per utterance.
        bed: the background's kind ("music", "babble" or "noise", `background_bed`), or None
            to draw it by `BED_SHARES`, or a dict of shares to draw it by.
        clean_db: the twin's utterance-to-background ratio (None: no twin).
    """
    lead = int(rng.uniform(1.0, 2.5) * rate)
    gaps = [int(rng.uniform(0.2, 1.2) * rate) for _ in utterances]
    total = lead + sum(len(u) for u, _ in utterances) + sum(gaps) + int(0.9 * rate)
    x = np.zeros(total, np.float32)
    events = []
    pos = lead
    levels = []
    for (clip, kind), gap in zip(utterances, gaps, strict=True):
        c = clip.astype(np.float32)
        if rng.random() < p_reverb:
            c = augment.reverb(c, rate, rng)
        c *= 3000.0 / (augment.rms(c) + 1e-9)  # all utterances at one level; the bed varies
        x[pos : pos + len(c)] += c
        events.append((pos, pos + len(clip), kind))
        levels.append(float(rng.uniform(*snr_db)))
        pos += len(c) + gap
    b = background_bed(total, rate, rng, music, babble_speech, bed)
    snr = float(np.mean(levels)) if levels else 20.0
    clean = None if clean_db is None else x + b * 3000.0 * 10 ** (-float(clean_db) / 20)
    x += b * 3000.0 * 10 ** (-snr / 20)
    x, clean = augment.band_and_level(x, clean, rate, rng, p_band=0.5, top_db=0.0)
    return augment.to_int16(x), None if clean is None else augment.to_int16(clean), events


def label_frames(n_frames: int, events, rate: int) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Per-frame labels from utterance events (in samples); events converted to frames."""
    _, P = _frontend()
    lab = np.zeros(n_frames, np.int8)
    ev_frames = []
    for s, e, kind in events:
        fs = _frame_of_sample(s, P.WINDOW, P.STEP)
        fe = _frame_of_sample(e, P.WINDOW, P.STEP)
        ev_frames.append((fs, fe, kind))
        if kind != "pos":
            continue
        n = fe - fs
        ign0 = fs + int((1 - IGNORE_TAIL_FRACTION) * n)
        p0 = fe - int(POS_BEFORE_S * rate / P.STEP)
        p1 = fe + int(POS_AFTER_S * rate / P.STEP)
        i1 = fe + int(IGNORE_AFTER_S * rate / P.STEP)
        lab[max(0, ign0) : min(n_frames, i1)] = -1
        lab[max(0, p0) : min(n_frames, p1)] = 1
    return lab, ev_frames


_SHARED = {}


def _init(music, babble_speech):
    _SHARED["music"], _SHARED["babble"] = music, babble_speech


def _make_track(args) -> Track:
    utts, rate, seed, snr_db, p_reverb, bed, clean_db = args
    rng = np.random.default_rng(seed)
    music, babble = _SHARED["music"], _SHARED["babble"]
    audio, clean, events = mix_track(
        utts, rate, rng, music, babble, snr_db, p_reverb, bed, clean_db
    )
    frontend, _ = _frontend()
    feats = frontend.features(audio if clean is None else clean)
    labels, ev = label_frames(len(feats), events, rate)
    return Track(feats, labels, ev)


def make_tracks(
    plans: list[list[tuple[np.ndarray, str]]],
    rate: int,
    seed: int,
    music: list[np.ndarray],
    babble_speech: list[np.ndarray],
    snr_db=(0.0, 25.0),
    p_reverb: float = 0.5,
    bed: str | dict | None = None,
    workers: int = 2,
    progress=None,
    clean_db: float | None = None,
) -> list[Track]:
    """Build many tracks in parallel processes (each seeded from ``seed`` and its index).

    With ``clean_db`` the tracks' clean twins instead (`mix_track`): the same frames and
    labels, the background that far below the speech.
    """
    jobs = [
        (utts, rate, [seed, i], tuple(snr_db), p_reverb, bed, clean_db)
        for i, utts in enumerate(plans)
    ]
    out = []
    if workers <= 1 or len(jobs) < 4:
        _init(music, babble_speech)
        for i, j in enumerate(jobs):
            out.append(_make_track(j))
            if progress:
                progress((i + 1) / len(jobs))
        return out
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(music, babble_speech)) as ex:
        for i, t in enumerate(ex.map(_make_track, jobs, chunksize=2)):
            out.append(t)
            if progress:
                progress((i + 1) / len(jobs))
    return out


def babble_pool(
    speech: list[np.ndarray], rng: np.random.Generator, n: int = 60
) -> list[np.ndarray]:
    """``n`` of the ``speech`` clips in a random order: the talkers of a set's babble beds."""
    return [speech[i] for i in rng.permutation(len(speech))[:n]]


def plan_tracks(
    items: list[tuple[np.ndarray, str]], rng: np.random.Generator, per_track: int = 12
) -> list[list[tuple[np.ndarray, str]]]:
    """Shuffle utterances and group them into tracks of ``per_track``."""
    order = rng.permutation(len(items))
    return [[items[j] for j in order[i : i + per_track]] for i in range(0, len(order), per_track)]


def save(path, tracks: list[Track]):
    """Store tracks in one .npz (features, labels and events concatenated)."""
    lens = np.array([len(t.feats) for t in tracks], np.int64)
    ev = np.array(
        [(i, s, e, 1 if k == "pos" else 0) for i, t in enumerate(tracks) for s, e, k in t.events],
        np.int64,
    ).reshape(-1, 4)
    np.savez(
        path,
        feats=np.concatenate([t.feats for t in tracks]),
        labels=np.concatenate([t.labels for t in tracks]),
        lens=lens,
        events=ev,
    )


def load(path) -> list[Track]:
    """Read tracks written by `save`."""
    z = np.load(path)
    cuts = np.cumsum(z["lens"])[:-1]
    feats = np.split(z["feats"], cuts)
    labels = np.split(z["labels"], cuts)
    events = [[] for _ in feats]
    for i, s, e, p in z["events"]:
        events[i].append((int(s), int(e), "pos" if p else "neg"))
    return [Track(f, lab, ev) for f, lab, ev in zip(feats, labels, events, strict=True)]
