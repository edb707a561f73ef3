"""How sure the benchmarks' figures are: bootstrap intervals and paired comparisons for the
wake words, binomial intervals for the commands.

A false-reject rate at 0.5 FA/h on 1.2 h of negatives rests on few events: no false accept
is allowed, so the single highest-scoring negative sets the cutoff, and each group of
positives has a few hundred clips. `bootstrap` resamples both, with replacement: the
validation negative tracks and, per positive set, its clips, the same draws for every
engine. On each resample it chooses every engine's setting again on the resampled
negatives, as `wakeword.operating_point` does (the loosest setting with at most
floor(budget x hours) false accepts), and reads the FRR of each group of positives there.
That gives:

- `interval`: for each engine, budget and group, the 5th and 95th percentiles of the FRR
  over the resamples (a 90 % interval);
- `ours_fewer`: for ours against each peer, the share of resamples in which ours misses
  fewer clips of a group than the peer at the same budget (`tie`: as many). Near 1 or 0
  the order is settled; near 0.5 it is a coin toss.

The independent negatives are not resampled (settings are never chosen on them). A
setting an engine was not run at (the peers stop once their false accepts pass the
largest budget) is never chosen, so a peer's resampled FRR can only be as good as its
settings allow. An engine whose strictest setting exceeds a resample's budget misses
everything there (FRR 1).

`wilson`: the commands' rates (intent accuracy, unknown speech accepted) are shares of a
few hundred utterances decided by a fixed rule, so a binomial interval says how sure they
are (with 100 unknown utterances, 1 accepted is anywhere from 0.2 to 5.4 %).
"""

from __future__ import annotations

import math

import numpy as np

#: Resamples per run and the percentiles of the interval.
RESAMPLES = 1000
PERCENTILES = (5, 95)


def _draws(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of n items is drawn in each resample: (resamples, n) counts."""
    if n == 0:
        return np.zeros((resamples, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def frr_at(
    outcome: dict, neg_counts: np.ndarray, hours: np.ndarray, pos_counts: dict, target: float
) -> dict:
    """One engine's FRR per group of positives at a budget, for each resample.

    Args:
        outcome: the engine's {"neg_fa": (settings, tracks), "pos_hit": {set: (settings,
            clips)}} from `wakeword.evaluate_engine`, settings strict to lenient.
        neg_counts: (resamples, tracks) draws of the negative tracks.
        hours: (resamples,) hours of negatives in each resample.
        pos_counts: {set: (resamples, clips)} draws of each positive set's clips.
        target: false accepts per hour allowed.

    Returns:
        {group: (resamples,) FRR}, the groups of `wakeword.GROUP_LABELS` present and
        "validation" (every group but the independent one), each the mean over its sets
        (`wakeword.group_means`, as the table's figures).
    """
    from .wakeword import group_means  # not at import: that module imports this one

    fa = neg_counts @ outcome["neg_fa"].T.astype(np.float64)  # (resamples, settings)
    allowed = np.floor(target * hours + 1e-9)
    ok = fa <= allowed[:, None]
    n_settings = ok.shape[1]
    loosest = n_settings - 1 - np.argmax(ok[:, ::-1], axis=1)
    none = ~ok.any(axis=1)
    rows = np.arange(len(hours))
    per_set = {}
    for k, hit in outcome["pos_hit"].items():
        c = pos_counts[k]
        rate = (c @ hit.T.astype(np.float64)) / max(hit.shape[1], 1)  # (resamples, settings)
        per_set[k] = np.where(none, 1.0, 1.0 - rate[rows, loosest])
    return group_means(per_set)


def bootstrap(
    outcomes: dict,
    track_hours,
    targets,
    resamples: int = RESAMPLES,
    seed: int = 0,
    ours: str = "ours",
) -> dict:
    """Intervals for each engine and paired comparisons of ours with each peer.

    Args:
        outcomes: {engine name: its outcome (see `frr_at`)}, all on the same audio.
        track_hours: hours of each validation negative track, in the outcomes' order.
        targets: the budgets (false accepts per hour).
        resamples: how many resamples.
        seed: the resampling seed (the same seed, the same draws).
        ours: the engine compared with the others.

    Returns:
        {"resamples", "seed", "percentiles", "interval": {engine: {budget: {group: [lo,
        hi]}}}, "ours_fewer": {peer: {budget: {group: share}}}, "tie": (the same)}.
    """
    rng = np.random.default_rng(seed)
    track_hours = np.asarray(track_hours, np.float64)
    if not outcomes:
        raise ValueError("no engine outcomes to resample")
    neg_counts = _draws(len(track_hours), resamples, rng)
    hours = neg_counts @ track_hours
    first = next(iter(outcomes.values()))
    pos_counts = {
        k: _draws(h.shape[1], resamples, rng) for k, h in sorted(first["pos_hit"].items())
    }
    frr = {
        name: {str(t): frr_at(o, neg_counts, hours, pos_counts, t) for t in targets}
        for name, o in outcomes.items()
    }
    lo, hi = PERCENTILES
    out = {
        "resamples": resamples,
        "seed": seed,
        "percentiles": list(PERCENTILES),
        "interval": {
            name: {
                t: {
                    g: [
                        round(float(np.percentile(f, lo)), 4),
                        round(float(np.percentile(f, hi)), 4),
                    ]
                    for g, f in by_group.items()
                }  # fmt: skip
                for t, by_group in per_t.items()
            }
            for name, per_t in frr.items()
        },
        "ours_fewer": {},
        "tie": {},
    }
    if ours in frr:
        for peer in frr:
            if peer == ours:
                continue
            fewer, tie = {}, {}
            for t in frr[ours]:
                a, b = frr[ours][t], frr[peer][t]
                common = [g for g in a if g in b]
                fewer[t] = {g: round(float(np.mean(a[g] < b[g] - 1e-12)), 3) for g in common}
                tie[t] = {g: round(float(np.mean(np.abs(a[g] - b[g]) <= 1e-12)), 3) for g in common}
            out["ours_fewer"][peer] = fewer
            out["tie"][peer] = tie
    return out


def save_outcomes(path, outcomes: dict, track_hours, settings: dict) -> None:
    """Keep a run's outcomes for a later resampling (`bench longneg` adds its negatives to
    them): one compressed .npz, each engine's arrays and the settings of its curve."""
    arrays = {"track_hours": np.asarray(track_hours, np.float64)}
    for name, o in outcomes.items():
        arrays[f"{name}__settings"] = np.asarray(settings[name], np.float64)
        arrays[f"{name}__neg_fa"] = o["neg_fa"]
        for k, hit in o["pos_hit"].items():
            arrays[f"{name}__pos_hit__{k}"] = hit
    np.savez_compressed(path, **arrays)


def load_outcomes(path) -> tuple[dict, np.ndarray, dict]:
    """A `save_outcomes` file: ({engine: outcome}, track hours, {engine: settings})."""
    z = np.load(path)
    outcomes: dict = {}
    settings = {}
    for key in z.files:
        if key == "track_hours":
            continue
        name, kind, *rest = key.split("__")
        o = outcomes.setdefault(name, {"pos_hit": {}})
        if kind == "settings":
            settings[name] = [float(v) for v in z[key]]
        elif kind == "neg_fa":
            o["neg_fa"] = z[key]
        else:
            o["pos_hit"][rest[0]] = z[key]
    return outcomes, z["track_hours"], settings


def table(iv: dict, ours: str = "ours") -> str:
    """The intervals and comparisons as Markdown: one row per (engine, group), a cell per
    budget; then, for each peer, the share of resamples in which ours missed fewer."""
    from .wakeword import GROUP_LABELS

    lo, hi = iv["percentiles"]
    budgets = list(next(iter(iv["interval"].values())))
    lines = [
        f"{hi - lo:g} % intervals of the FRR ({lo:g}th-{hi:g}th percentile over "
        f"{iv['resamples']} resamples of the negative tracks and positive clips, seed "
        f"{iv['seed']}; `bench.intervals`):",
        "",
        "| engine | positives | " + " | ".join(f"@ {float(t):g} FA/h" for t in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    labels = dict(GROUP_LABELS, validation="all validation")
    for name, per_t in iv["interval"].items():
        for g, label in labels.items():
            if g not in per_t[budgets[0]]:
                continue
            cells = [f"{100 * a:.1f}-{100 * b:.1f} %" for a, b in (per_t[t][g] for t in budgets)]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    for peer, per_t in iv["ours_fewer"].items():
        lines += ["", f"Share of resamples in which {ours} misses fewer than {peer} (ties):", ""]
        for g, label in labels.items():
            if g not in per_t[budgets[0]]:
                continue
            cells = [
                f"{float(t):g} FA/h: {per_t[t][g]:.3f} ({iv['tie'][peer][t][g]:.3f})"
                for t in budgets
            ]
            lines.append(f"- {label}: " + "; ".join(cells))
    return "\n".join(lines) + "\n"


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The Wilson score interval of a share of k in n (95 % by default): [lo, hi]; [0, 1]
    for n = 0."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)]
