"""numpy twin of `firmware/voicenode/commands.py`: phone network, costgram, grammar, decision.

Host API::

    model = load("models/commands_home")        # .json + .vcg + <network>.vnm/.json, checked
    r = recognize(model, window_frames_u8)      # == Recognizer on the chip, frame by frame
    cost = costgram(model, frames)              # uint8 (rows, classes): the chip's cost rows
    r = decide(model, cost[row0:row1])          # the decision from a command's rows

The chip feeds every frame of the listening window to the end-pointer (`reference.vad`) and
to the phone network (a logits head, `reference.nn.QuantModel`); each network step gives one
costgram row (max logit - logit, `grammar.costs`). When the end-pointer decides, rows
[start // stride, frames_used // stride) go through the grammar (`grammar.decode`, the chip's
twin, with the sidecar's `word_bonus`); avg = (cost << 8) // rows against `cutoff_avg` and the
margin over the best other intent against `margin_avg` decide between the intent and
`unknown`, and, for a sidecar with a `reject` rule, a linear score of integer features of the
rows (`features`, `reject_score`).

The dense-MLP command model of format 1 (`.vcm`) is gone: neither the chip nor the host
reads it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import grammar as G
from .. import phones
from . import nn as ref_nn
from . import vad as ref_vad

FORMAT_VERSION = 2
UNKNOWN = "unknown"
#: avg of a command without a single network step (the chip's too)
NO_ROWS_AVG = 1 << 20
#: zlib.crc32 of any intact file that ends in its own CRC-32: not a usable file checksum
CRC_RESIDUE = 0x2144DF1C
#: The features of the `reject` rule, in the order of its weights (all integers, `features`).
REJECT_FEATURES = (
    "avg", "margin", "emissions", "unk_rows", "nonblank_rows", "rows", "nonblank_share",
    "words", "rows_per_word",
)  # fmt: skip
#: margin of a command without another intent, and the largest margin counted
MARGIN_CAP = 4096
#: the largest `word_bonus` a sidecar may hold (costs are at most 255 per row)
MAX_WORD_BONUS = 255
SIDECAR_KEYS = (
    "name", "network", "grammar", "layout", "vad", "stride", "cutoff_avg", "frontend",
)  # fmt: skip


class CommandModelError(ValueError):
    """A command model or its sidecar is unusable; the message names the file and problem."""


@dataclass
class CommandModel:
    """A loaded command model: phone network, grammar and sidecar (`load(base)`)."""

    base: Path
    sidecar: dict
    net: ref_nn.QuantModel
    grammar: G.Grammar
    decoder: Decoder = field(repr=False)  # made once per model

    @property
    def name(self) -> str:
        return self.sidecar["name"]

    @property
    def layout(self) -> dict:
        return self.sidecar["layout"]

    @property
    def stride(self) -> int:
        return int(self.net.stride)

    @property
    def vad(self) -> dict:
        return ref_vad.settings(self.sidecar["vad"])

    @property
    def cutoff_avg(self) -> int:
        return int(self.sidecar["cutoff_avg"])

    @property
    def margin_avg(self) -> int:
        return int(self.sidecar.get("margin_avg", 0))

    @property
    def logit_scale(self) -> float:
        return float(self.sidecar.get("logit_scale", 1.0))

    @property
    def word_bonus(self) -> int:
        return self.decoder.word_bonus  # the sidecar's, 0 without one (`load`)

    def intent_of(self, pattern: int) -> str | None:
        """The intent a grammar pattern stands for (None for -1: no pattern)."""
        return self.layout["intents"][self.grammar.patterns[pattern][2]] if pattern >= 0 else None


class Decoder:
    """`grammar.decode` for one grammar, several times faster (the same integers and ties).

    `grammar.viterbi` gathers a padded (nodes, max predecessors + 1) matrix every frame; the
    home grammar's widest node has 46 predecessors, most have one. Here the candidates are
    one flat edge list (each node's predecessors in order, then the blank-only prefix for a
    start node), reduced per node with one `np.minimum.reduceat` of cost * edges + position:
    the first cheapest candidate wins, as on the chip.

        dec = Decoder(grammar)
        dec.decode(cost)     # == grammar.decode(grammar, cost)
    """

    def __init__(self, g: G.Grammar, word_bonus: int = 0):
        self.g = g
        self.word_bonus = int(word_bonus)
        n = g.n_nodes
        src: list[int] = []
        ostart = [0]
        for i in range(n):
            src += [int(p) for p in g.preds[g.pstart[i] : g.pstart[i + 1]]]
            if g.flags[i] & G.START:
                src.append(n)  # the blank-only prefix
            ostart.append(len(src))
        self.src = np.array(src, np.int64)
        self.seg = np.array(ostart[:-1], np.int64)
        self.ph = g.ph.astype(np.int64)
        self.add = g.adds[g.addidx.astype(np.int64)].astype(np.int64)
        self.final = [
            (pi, intent, np.flatnonzero(g.flags[first : first + count] & G.FINAL) + first)
            for pi, (first, count, intent, _) in enumerate(g.patterns)
        ]

    def viterbi(self, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every node's cost and token after the last row (== `grammar.viterbi`)."""
        cost = np.asarray(cost, np.int64)
        n = self.g.n_nodes
        s = np.full(n + 1, G.INF, np.int64)
        k = np.zeros(n + 1, np.int64)
        pos = np.arange(len(self.src), dtype=np.int64)
        big = len(self.src)  # costs stay below 2**30: cost * big + position fits int64
        bsum = 0
        blank = self.g.blank
        wb = self.word_bonus
        for t in range(len(cost)):
            c = cost[t]
            s[n] = bsum
            k[n] = 0
            # one reduction finds each node's cheapest candidate and, on ties, the first
            key = np.minimum.reduceat(s[self.src] * big + pos, self.seg)
            best = key // big
            tok = k[self.src[key - best * big]] + self.add
            cp = c[self.ph]
            enter = best + cp
            stay = s[:n] + np.minimum(cp, c[blank]) + wb
            keep = stay <= enter
            k[:n] = np.where(keep, k[:n], tok)
            s[:n] = np.where(keep, stay, enter)
            bsum += int(c[blank]) + wb
        return s[:n].copy(), k[:n].copy()

    def decode(self, cost: np.ndarray) -> dict:
        """The same dict as `grammar.decode(g, cost, word_bonus=...)`."""
        frames = len(cost)
        if frames == 0:
            return G.decode(self.g, cost)
        s, k = self.viterbi(cost)
        best = (None, G.SENTINEL, 0)
        per_intent: dict[int, int] = {}
        for pi, intent, fin in self.final:
            if len(fin) == 0:
                continue
            j = int(np.argmin(s[fin]))  # the first cheapest final node
            v = int(s[fin[j]])
            if v < best[1]:
                best = (pi, v, int(k[fin[j]]))
            if v < per_intent.get(intent, G.SENTINEL):
                per_intent[intent] = v
        pi, v, tok = best
        intent = self.g.patterns[pi][2]
        others = [x for i, x in per_intent.items() if i != intent]
        second = ((min(others) << 8) // frames) if others else None
        return {"pattern": pi, "intent": intent, "cost": v, "frames": frames,
                "avg": (v << 8) // frames, "token": tok, "second": second}  # fmt: skip


def _base(path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".vcg", ".vcm") else p


def grammar_crc32(data: bytes) -> int:
    """What a sidecar records as ``grammar.crc32``: the checksum stored in the file's last 4
    bytes (the CRC-32 of everything before it). Not the CRC-32 of the whole file: that is the
    same constant (0x2144DF1C) for every intact file."""
    return struct.unpack("<I", data[-4:])[0]


def _check_head(side, where: str) -> None:
    if not isinstance(side, dict) or side.get("kind") != "commands":
        raise CommandModelError(f"{where}: not a command model sidecar")
    if side.get("format") != FORMAT_VERSION:
        raise CommandModelError(
            f"{where}: command model format {side.get('format')!r}, this host reads "
            f"{FORMAT_VERSION} (retrain with voicenode train-commands)"
        )
    for k in SIDECAR_KEYS:
        if k not in side:
            raise CommandModelError(f"{where}: missing {k!r}")
    if not isinstance(side["grammar"], dict) or "file" not in side["grammar"]:
        raise CommandModelError(f"{where}: the grammar file is not named")


def check_sidecar(side: dict, g: G.Grammar, grammar_crc32: int, where: str) -> None:
    """Raise `CommandModelError` unless the sidecar describes this grammar (as the chip checks)."""
    _check_head(side, where)
    try:
        ref_nn.check_frontend(side["frontend"], ref_nn.frontend_params(), where)
    except ref_nn.ModelFormatError as e:
        raise CommandModelError(str(e)) from None
    gs = side["grammar"]
    if gs.get("crc32") != grammar_crc32:
        if gs.get("crc32") == CRC_RESIDUE:
            raise CommandModelError(
                f"{where}: grammar crc32 is the CRC-32 of the whole file (the same for every "
                "file); record the checksum in its last 4 bytes"
            )
        raise CommandModelError(f"{where}: sidecar belongs to another grammar file")
    if gs.get("nodes") != g.n_nodes:
        raise CommandModelError(
            f"{where}: sidecar says {gs.get('nodes')!r} grammar nodes, the grammar has {g.n_nodes}"
        )
    lay = side["layout"]
    try:
        intents = lay["intents"]
        for name in intents:  # the chip looks up every intent's slots
            lay["intent_slots"][name]
        for _, _, ii, n_slots in g.patterns:
            if ii >= len(intents):
                raise CommandModelError(
                    f"{where}: grammar intent {ii}, the layout names {len(intents)}"
                )
            names = lay["intent_slots"][intents[ii]]
            if len(names) != n_slots:
                raise CommandModelError(
                    f"{where}: intent {intents[ii]} has {n_slots} slots in the grammar, "
                    f"{len(names)} in the layout"
                )
            for s in names:
                if lay["slots"][s]["kind"] not in ("list", "number"):
                    raise CommandModelError(f"{where}: slot {s} of unknown kind")
    except (KeyError, TypeError) as e:
        raise CommandModelError(f"{where}: layout incomplete ({e!r})") from None
    for k in ref_vad.REQUIRED:
        if k not in side["vad"]:
            raise CommandModelError(f"{where}: vad setting {k!r} missing")
    drop = side["vad"].get("drop", 0)
    if type(drop) is not int or drop < 0:
        raise CommandModelError(f"{where}: vad setting 'drop' must be an integer >= 0")
    wb = side.get("word_bonus", 0)
    if type(wb) is not int or not 0 <= wb <= MAX_WORD_BONUS:
        raise CommandModelError(f"{where}: word_bonus {wb!r} is not an integer 0..{MAX_WORD_BONUS}")
    rule = side.get("reject")
    if rule is not None and not (
        isinstance(rule, dict)
        and rule.get("features") == list(REJECT_FEATURES)
        and isinstance(rule.get("weights"), list)
        and len(rule["weights"]) == len(REJECT_FEATURES)
        and all(type(w) is int for w in rule["weights"])
        and type(rule.get("bias")) is int
    ):
        raise CommandModelError(
            f"{where}: reject rule is not {len(REJECT_FEATURES)} integer weights of "
            f"{list(REJECT_FEATURES)} and an integer bias"
        )


def load(base) -> CommandModel:
    """Load a command model: ``<base>.json``, its grammar and its phone network, all checked.

    Args:
        base: ``models/commands_home`` (or the ``.json`` / ``.vcg`` path).

    Raises:
        CommandModelError: as the chip's `Recognizer`: a missing or damaged file, a sidecar
            for another grammar or front end, a network whose classes or stride differ.
    """
    base = _base(base)
    side_path = base.with_name(base.name + ".json")
    try:
        side = json.loads(side_path.read_text())
    except OSError:
        raise CommandModelError(f"{side_path}: sidecar missing") from None
    except ValueError as e:
        raise CommandModelError(f"{side_path}: not JSON ({e})") from None
    _check_head(side, str(side_path))
    gpath = base.parent / side["grammar"]["file"]
    try:
        data = gpath.read_bytes()
    except OSError as e:
        raise CommandModelError(f"{gpath}: cannot open ({e})") from None
    try:
        g = G.Grammar.from_bytes(data, str(gpath))
    except G.GrammarError as e:
        raise CommandModelError(str(e)) from None
    check_sidecar(side, g, grammar_crc32(data), str(side_path))
    vnm = base.parent / (side["network"] + ".vnm")
    try:
        net = ref_nn.QuantModel.load(vnm, head="logits")
    except (OSError, ref_nn.ModelFormatError) as e:
        raise CommandModelError(f"network: {e}") from None
    # the class names, where both sides record them: the network's and the grammar's numbering
    names = (net.sidecar or {}).get("classes") or (net.sidecar or {}).get("labels")
    want = side["layout"].get("classes", list(phones.CLASSES))
    if names is not None and list(names) != list(want):
        raise CommandModelError(
            f"{vnm}: classes {list(names)[:4]}... are not the grammar's {list(want)[:4]}..."
        )
    n_out = net.layers[-1].out_ch
    if n_out != g.n_classes:
        raise CommandModelError(
            f"{side_path}: network {side['network']} has {n_out} classes, the grammar {g.n_classes}"
        )
    if net.stride != side["stride"]:
        raise CommandModelError(
            f"{side_path}: stride {side['stride']!r}, network {side['network']} has {net.stride}"
        )
    return CommandModel(base, side, net, g, Decoder(g, side.get("word_bonus", 0)))


def ring_rows(vad: dict, stride: int) -> int:
    """Costgram rows the chip's Recognizer keeps (`voicenode.commands.ring_rows`): those
    written before the end-pointer hears speech (onset and preroll frames) and one more."""
    full = (vad["max_frames"] + stride - 1) // stride
    return min(full, (vad["onset"] + vad["preroll"] + stride - 1) // stride + 2)


def costgram(model: CommandModel, frames: np.ndarray) -> np.ndarray:
    """The chip's cost rows for frames fed from a reset: uint8 (len(frames) // stride, classes)."""
    return G.costs(model.net.stream(np.asarray(frames, np.uint8)))


def score_of(avg: int, logit_scale: float) -> float:
    """exp(-avg / 256 * logit_scale) rounded to two decimals (half up), as the chip."""
    return int(math.exp(-avg / 256 * logit_scale) * 100 + 0.5) / 100


def heard_avg(cost: int, rows: int, token: int, word_bonus: int) -> int:
    """The best path's average cost per row (x 256) without the `word_bonus` it paid: the
    rows it stayed on are the rows minus its words (byte 3 of its token: the nodes it
    entered, in a grammar of words), as on the chip. What the score is made of."""
    words = (token >> 24) & 0xFF
    return (max(0, cost - word_bonus * (rows - words)) << 8) // rows


def slots_of(token: int, intent: str, layout: dict) -> dict:
    """Slot values from a token (`grammar.slots_of`): a value off the list is None."""
    return G.slots_of(token, intent, layout)


def features(cost: np.ndarray, avg: int, second: int | None, unk: int, token: int) -> list[int]:
    """The `reject` rule's features of a decoded command (`REJECT_FEATURES`), as the chip.

    From its cost rows (uint8 (rows, classes)) the best class of each row (the first of
    cost 0: the network's first largest logit): `emissions` (rows whose best class is not the
    blank and differs from the row before, the first row counting as a change), `unk_rows`
    (best class `unk`, -1: none), `nonblank_rows`, `rows`, `nonblank_share` (nonblank rows
    * 256 // rows); and from the grammar `avg`, `margin` (second - avg, at most
    `MARGIN_CAP`, which is also the margin without another intent), `words` (on the best
    path: byte 3 of its token) and `rows_per_word` (rows * 16 // words, words at least 1):
    unknown speech that a one-word command fits is long for one word.
    """
    cost = np.asarray(cost)
    best = np.argmax(cost == 0, axis=1) if len(cost) else np.zeros(0, np.int64)
    n = len(best)
    nonblank = best != 0
    changed = np.r_[True, best[1:] != best[:-1]] if n else np.zeros(0, bool)
    nb = int(nonblank.sum())
    margin = MARGIN_CAP if second is None else min(second - avg, MARGIN_CAP)
    words = (int(token) >> 24) & 0xFF
    return [
        int(avg), int(margin), int((nonblank & changed).sum()),
        int((best == unk).sum()) if unk >= 0 else 0, nb, n, (nb << 8) // n if n else 0,
        words, (n << 4) // max(words, 1),
    ]  # fmt: skip


def reject_score(feats: list[int], rule: dict) -> int:
    """The `reject` rule's score: sum(weight * feature) + bias; the command is kept at >= 0."""
    return sum(int(w) * f for w, f in zip(rule["weights"], feats, strict=True)) + int(rule["bias"])


def unk_class(layout: dict) -> int:
    """The class number of `<unk>` in the network's classes, -1 without one (phone units)."""
    classes = layout.get("classes", [])
    return classes.index("<unk>") if "<unk>" in classes else -1


def accepts(
    avg: int,
    second: int | None,
    cutoff_avg: int,
    margin_avg: int,
    feats: list[int] | None = None,
    rule: dict | None = None,
) -> bool:
    """The chip's rule for a decoded command: its average cost within the cutoff, ahead of
    the best other intent (`second`, None if there is none) by at least the margin, and with
    a `reject` rule (then `feats` are its `features`) a score >= 0."""
    if avg > cutoff_avg or (second is not None and second - avg < margin_avg):
        return False
    return rule is None or reject_score(feats, rule) >= 0


def decide(
    model: CommandModel,
    rows: np.ndarray,
    cutoff_avg: int | None = None,
    margin_avg: int | None = None,
) -> dict:
    """The chip's decision for the costgram rows of one command.

    Returns the result dict (intent, slots, score, and reason for unknown) plus "avg",
    "second" (the best other intent's avg or None), "token", "pattern" and "features" (the
    `reject` rule's, None without rows).
    """
    cutoff = model.cutoff_avg if cutoff_avg is None else cutoff_avg
    margin = model.margin_avg if margin_avg is None else margin_avg
    d = decode(model.decoder, rows, unk_class(model.layout))
    if d["frames"] == 0:
        avg, second, tok, pi = NO_ROWS_AVG, None, 0, -1
        heard = avg
    else:
        avg, second, tok, pi = d["avg"], d["second"], d["token"], d["pattern"]
        heard = heard_avg(d["cost"], d["frames"], tok, model.word_bonus)
    feats = d["features"]
    extra = {"avg": avg, "second": second, "token": tok, "pattern": pi, "features": feats}
    score = score_of(heard, model.logit_scale)
    if pi < 0 or not accepts(avg, second, cutoff, margin, feats, model.sidecar.get("reject")):
        return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "low score", **extra}
    intent = model.intent_of(pi)
    slots = slots_of(tok, intent, model.layout)
    if any(v is None for v in slots.values()):
        return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "bad slot", **extra}
    return {"intent": intent, "slots": slots, "score": score, **extra}


def recognize(
    model: CommandModel,
    frames: np.ndarray,
    cutoff_avg: int | None = None,
    margin_avg: int | None = None,
) -> dict | None:
    """What the chip's Recognizer answers for the frames of a listening window (from reset).

    Returns the result dict (as `decide`) plus "start", "end" (the segment's frames),
    "frames" (frames consumed before the decision) and "rows" ((first, end) of the costgram
    rows decoded); None if the frames ran out before a decision.
    """
    seg, rows, cost = heard(model.net, model.vad, model.stride, frames)
    if seg.state < ref_vad.DONE:
        return None
    if cost is None:
        r = {"intent": UNKNOWN, "slots": {}, "score": 0.0, "reason": "silence"}
    else:
        r = decide(model, cost, cutoff_avg, margin_avg)
    r.update(start=seg.start, end=seg.end, frames=seg.frames_used, rows=rows)
    return r


def heard(net, vad: dict, stride: int, frames: np.ndarray):
    """What the chip hears of a listening window (frames from the Recognizer's reset): the
    end-pointer's segment, the (first, end) costgram rows of the command and those rows
    (uint8 costs; None when the end-pointer has not decided or heard only silence)."""
    frames = np.asarray(frames, np.uint8)
    seg = ref_vad.endpoint(frames, **vad)
    if seg.state != ref_vad.DONE:
        return seg, (0, 0), None
    rows = (seg.start // stride, seg.frames_used // stride)
    cost = G.costs(net.stream(frames[: seg.frames_used]))
    return seg, rows, cost[rows[0] : rows[1]]


def decode(decoder: Decoder, rows: np.ndarray, unk: int) -> dict:
    """The grammar's decode of a command's cost rows (`Decoder.decode`) plus the `reject`
    rule's "features" (None without rows; `unk`: the <unk> class or -1)."""
    d = decoder.decode(rows)
    d["features"] = features(rows, d["avg"], d["second"], unk, d["token"]) if d["frames"] else None
    return d
