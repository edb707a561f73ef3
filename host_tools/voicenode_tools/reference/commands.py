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
twin); avg = (cost << 8) // rows against `cutoff_avg` and the margin over the best other
intent against `margin_avg` decide between the intent and `unknown`.

The dense-MLP command model of format 1 (`CommandNet`, `quantize`, `pool`, `net_input`,
`decode`) is kept at the end of this module for `train.commands` and `bench.commands` until
they move to the phone network; the firmware no longer reads it.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import grammar as G
from .. import phones
from . import nn as ref_nn
from . import vad as ref_vad

FORMAT_VERSION = 2
BIAS_LIMIT = 1 << 29
UNKNOWN = "unknown"
#: avg of a command without a single network step (the chip's too)
NO_ROWS_AVG = 1 << 20
#: zlib.crc32 of any intact file that ends in its own CRC-32: not a usable file checksum
CRC_RESIDUE = 0x2144DF1C
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
        return {k: self.sidecar["vad"][k] for k in ref_vad.DEFAULTS}

    @property
    def cutoff_avg(self) -> int:
        return int(self.sidecar["cutoff_avg"])

    @property
    def margin_avg(self) -> int:
        return int(self.sidecar.get("margin_avg", 0))

    @property
    def logit_scale(self) -> float:
        return float(self.sidecar.get("logit_scale", 1.0))


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

    def __init__(self, g: G.Grammar):
        self.g = g
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
            stay = s[:n] + np.minimum(cp, c[blank])
            keep = stay <= enter
            k[:n] = np.where(keep, k[:n], tok)
            s[:n] = np.where(keep, stay, enter)
            bsum += int(c[blank])
        return s[:n].copy(), k[:n].copy()

    def decode(self, cost: np.ndarray) -> dict:
        """The same dict as `grammar.decode(g, cost)`."""
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
    for k in ref_vad.DEFAULTS:
        if k not in side["vad"]:
            raise CommandModelError(f"{where}: vad setting {k!r} missing")


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
    return CommandModel(base, side, net, g, Decoder(g))


def costgram(model: CommandModel, frames: np.ndarray) -> np.ndarray:
    """The chip's cost rows for frames fed from a reset: uint8 (len(frames) // stride, classes)."""
    return G.costs(model.net.stream(np.asarray(frames, np.uint8)))


def score_of(avg: int, logit_scale: float) -> float:
    """exp(-avg / 256 * logit_scale) rounded to two decimals (half up), as the chip."""
    return int(math.exp(-avg / 256 * logit_scale) * 100 + 0.5) / 100


def slots_of(token: int, intent: str, layout: dict) -> dict:
    """Slot values from a token (`grammar.slots_of`): a value off the list is None."""
    return G.slots_of(token, intent, layout)


def decide(
    model: CommandModel,
    rows: np.ndarray,
    cutoff_avg: int | None = None,
    margin_avg: int | None = None,
) -> dict:
    """The chip's decision for the costgram rows of one command.

    Returns the result dict (intent, slots, score, and reason for unknown) plus "avg",
    "second" (the best other intent's avg or None), "token" and "pattern".
    """
    cutoff = model.cutoff_avg if cutoff_avg is None else cutoff_avg
    margin = model.margin_avg if margin_avg is None else margin_avg
    d = model.decoder.decode(rows)
    if d["frames"] == 0:
        avg, second, tok, pi = NO_ROWS_AVG, None, 0, -1
    else:
        avg, second, tok, pi = d["avg"], d["second"], d["token"], d["pattern"]
    extra = {"avg": avg, "second": second, "token": tok, "pattern": pi}
    score = score_of(avg, model.logit_scale)
    if pi < 0 or avg > cutoff or (second is not None and second - avg < margin):
        return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "low score", **extra}
    intent = model.layout["intents"][model.grammar.patterns[pi][2]]
    slots = slots_of(tok, intent, model.layout)
    if any(v is None for v in slots.values()):
        return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "bad slot", **extra}
    return {"intent": intent, "slots": slots, "score": score, **extra}


def recognize(model, frames: np.ndarray, cutoff_avg: int | None = None, **kw) -> dict | None:
    """What the chip's Recognizer answers for the frames of a listening window (from reset).

    Returns the result dict (as `decide`) plus "start", "end" (the segment's frames),
    "frames" (frames consumed before the decision) and "rows" ((first, end) of the costgram
    rows decoded); None if the frames ran out before a decision. (A format 1 `CommandNet`
    is still answered the old way, for `bench.commands`.)
    """
    if isinstance(model, CommandNet):
        return _recognize_dense(model, frames, **kw)
    frames = np.asarray(frames, np.uint8)
    seg = ref_vad.endpoint(frames, **model.vad)
    if seg.state < ref_vad.DONE:
        return None
    if seg.state == ref_vad.SILENCE:
        r = {"intent": UNKNOWN, "slots": {}, "score": 0.0, "reason": "silence"}
        rows = (0, 0)
    else:
        s = model.stride
        rows = (seg.start // s, seg.frames_used // s)
        cost = costgram(model, frames[: seg.frames_used])
        r = decide(model, cost[rows[0] : rows[1]], cutoff_avg, kw.get("margin_avg"))
    r.update(start=seg.start, end=seg.end, frames=seg.frames_used, rows=rows)
    return r


# ============================================================================================
# Legacy: the format 1 dense-MLP command model (train.commands, bench.commands still use it)
# ============================================================================================

_DENSE_MAGIC = b"VNCM"
_DENSE_FORMAT = 1


# --- pooling (twin of commands.pool) --------------------------------------------------------


def pool(frames: np.ndarray, start: int, end: int, bins: int) -> np.ndarray:
    """Average frames [start, end) of a window into ``bins`` time bins: uint8 (bins*n_mels,)."""
    frames = np.asarray(frames, np.int64)
    nm = frames.shape[1]
    length = end - start
    out = np.zeros((bins, nm), np.int64)
    for b in range(bins):
        f0 = start + (b * length) // bins
        f1 = max(start + ((b + 1) * length) // bins, f0 + 1)
        cnt = f1 - f0
        r = (4096 + (cnt >> 1)) // cnt
        s = frames[f0:f1].sum(axis=0)
        out[b] = np.minimum((s * r + 2048) >> 12, 255)
    return out.reshape(-1).astype(np.uint8)


def net_input(frames: np.ndarray, start: int, end: int, bins: int) -> np.ndarray:
    """The network input of a segment: pooled frames and the length byte (frames // 2)."""
    return np.concatenate([pool(frames, start, end, bins), [min((end - start) >> 1, 255)]]).astype(
        np.uint8
    )


# --- the quantised network ------------------------------------------------------------------


@dataclass
class DenseQ:
    weights: np.ndarray  # int8 (out, in)
    bias: np.ndarray  # int32 (out,), in units of in_scale * w_scale (input zero point is 0)
    mult: np.ndarray
    shift: np.ndarray
    relu: bool
    out_zp: int
    out_scale: float

    def forward(self, x: np.ndarray) -> np.ndarray:
        acc = x.astype(np.int64) @ self.weights.astype(np.int64).T + self.bias.astype(np.int64)
        lo = self.out_zp if self.relu else 0
        return ref_nn.requantize(acc, self.mult, self.shift, self.out_zp, lo)


@dataclass
class CommandNet:
    """The int8 command network (dense layers; logistic table on the last layer's outputs)."""

    layers: list[DenseQ]
    table: np.ndarray
    input_scale: float = 1.0 / 64
    sidecar: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return int(self.layers[0].weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.layers[-1].weights.shape[0])

    @property
    def macs(self) -> int:
        return int(sum(L.weights.size for L in self.layers))

    def heap_bytes(self, max_frames: int = 300, n_mels: int = 40) -> int:
        """Heap the chip allocates for this model and its recogniser (buffers + ~overhead)."""
        n = 0
        for L in self.layers:
            o, i = L.weights.shape
            n += 12 * o + o * i + o + 64
        return int(n + 256 + self.n_in + max_frames * n_mels + 2048)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """uint8 outputs (N, n_out) for uint8 inputs (N, n_in): the chip's bytes."""
        h = np.atleast_2d(np.asarray(x, np.uint8))
        for L in self.layers:
            h = L.forward(h)
        return h

    def check(self) -> None:
        prev = self.n_in
        for i, L in enumerate(self.layers):
            o, n = L.weights.shape
            if n != prev:
                raise CommandModelError(f"layer {i}: {n} inputs after {prev} outputs")
            prev = o
            if np.any(np.abs(L.bias.astype(np.int64)) >= BIAS_LIMIT):
                raise CommandModelError(f"layer {i}: bias too large for the chip")
            if BIAS_LIMIT + 65025 * n >= (1 << 31) - 1:
                raise CommandModelError(f"layer {i}: {n} inputs could overflow 32 bits")
            if (
                np.any(L.mult < 0)
                or np.any(L.mult >= 1 << 15)
                or np.any(L.shift < 0)
                or np.any(L.shift > 30)
            ):
                raise CommandModelError(f"layer {i}: multiplier or shift out of range")
            if i < len(self.layers) - 1 and not L.relu:
                raise CommandModelError(f"layer {i}: hidden layers need a ReLU")

    def to_bytes(self) -> bytes:
        self.check()
        body = bytearray()
        for i, L in enumerate(self.layers):
            o, n = L.weights.shape
            last = i == len(self.layers) - 1
            body += struct.pack("<HHBBBB", n, o, 1 if L.relu else 0, 0, L.out_zp, 1 if last else 0)
            body += (L.weights.astype(np.int16) + 128).astype(np.uint8).tobytes()
            for c in range(o):
                body += struct.pack("<iHBB", int(L.bias[c]), int(L.mult[c]), int(L.shift[c]), 0)
            if last:
                body += self.table.astype(np.uint8).tobytes()
        head = struct.pack(
            "<4sHHHHI", _DENSE_MAGIC, _DENSE_FORMAT, len(self.layers), self.n_in, 0, len(body)
        )
        data = head + bytes(body)
        return data + struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)

    def save(self, path, sidecar: dict) -> dict:
        """Write ``<name>.vcm`` and ``<name>.json``; returns the sidecar as written."""
        path = Path(path)
        data = self.to_bytes()
        side = dict(sidecar)
        side.update(
            format=_DENSE_FORMAT,
            kind="commands",
            model_crc32=struct.unpack("<I", data[-4:])[0],
            model_bytes=len(data),
            macs=self.macs,
            heap_bytes=self.heap_bytes(
                side.get("vad", {}).get("max_frames", 300), side["input"]["n_mels"]
            ),
            layers=[
                f"dense {L.weights.shape[1]}->{L.weights.shape[0]} {'relu' if L.relu else 'none'}"
                for L in self.layers
            ],
        )
        side.setdefault("input", {})["scale"] = self.input_scale
        _check_dense_sidecar(side, str(path.with_suffix(".json")), self.n_out, self.n_in)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.with_suffix(".json").write_text(json.dumps(side, indent=1) + "\n")
        self.sidecar = side
        return side

    @classmethod
    def load(cls, path) -> CommandNet:
        """Read and check ``<name>.vcm`` and its sidecar."""
        path = Path(path)
        data = path.read_bytes()
        where = str(path)
        if len(data) < 20 or data[:4] != _DENSE_MAGIC:
            raise CommandModelError(f"{where}: not a command model")
        magic, ver, n_layers, n_in, _, body_len = struct.unpack_from("<4sHHHHI", data)
        if ver != _DENSE_FORMAT:
            raise CommandModelError(
                f"{where}: format version {ver}, this host reads {_DENSE_FORMAT}"
            )
        if len(data) != 16 + body_len + 4:
            raise CommandModelError(
                f"{where}: size {len(data)} != {16 + body_len + 4} (truncated?)"
            )
        if zlib.crc32(data[:-4]) & 0xFFFFFFFF != struct.unpack("<I", data[-4:])[0]:
            raise CommandModelError(f"{where}: CRC mismatch (file damaged)")
        pos, layers, table = 16, [], None
        for _ in range(n_layers):
            n, o, act, zi, zo, has_tab = struct.unpack_from("<HHBBBB", data, pos)
            pos += 8
            w = (
                (np.frombuffer(data, np.uint8, o * n, pos).astype(np.int16) - 128)
                .astype(np.int8)
                .reshape(o, n)
            )
            pos += o * n
            ch = np.frombuffer(
                data, np.dtype([("b", "<i4"), ("m", "<u2"), ("s", "u1"), ("r", "u1")]), o, pos
            )
            pos += 8 * o
            if has_tab:
                table = np.frombuffer(data, np.uint8, 256, pos).copy()
                pos += 256
            layers.append(
                DenseQ(
                    w,
                    ch["b"].astype(np.int32),
                    ch["m"].astype(np.int64),
                    ch["s"].astype(np.int64),
                    act == 1,
                    zo,
                    0.0,
                )
            )
        side_path = path.with_suffix(".json")
        try:
            side = json.loads(side_path.read_text())
        except (OSError, ValueError) as e:
            raise CommandModelError(f"{side_path}: cannot read the sidecar ({e})") from None
        if side.get("model_crc32") != struct.unpack("<I", data[-4:])[0]:
            raise CommandModelError(f"{side_path}: sidecar belongs to another model file")
        net = cls(layers, table, float(side.get("input", {}).get("scale", 1 / 64)), side)
        net.check()
        _check_dense_sidecar(side, str(side_path), net.n_out, net.n_in)
        return net


def _check_dense_sidecar(side: dict, where: str, n_out: int, n_in: int) -> None:
    """Raise `CommandModelError` unless the sidecar describes a usable command model."""
    need = ("name", "layout", "input", "vad", "cutoff", "cutoff_u8", "frontend", "model_crc32")
    for k in need:
        if k not in side:
            raise CommandModelError(f"{where}: missing {k!r}")
    lay = side["layout"]
    if lay["outputs"] != n_out:
        raise CommandModelError(f"{where}: layout has {lay['outputs']} outputs, model {n_out}")
    off = len(lay["intents"])
    for s in lay["slots"]:
        if s["offset"] != off:
            raise CommandModelError(f"{where}: slot {s['name']!r} offset {s['offset']} != {off}")
        off += len(s["values"])
    if off != n_out:
        raise CommandModelError(f"{where}: layout covers {off} outputs, model has {n_out}")
    names = {s["name"] for s in lay["slots"]}
    for i in lay["intents"]:
        for s in lay["intent_slots"].get(i, ()):
            if s not in names:
                raise CommandModelError(f"{where}: intent {i!r} uses undeclared slot {s!r}")
    inp = side["input"]
    if inp["bins"] * inp["n_mels"] + 1 != n_in:
        raise CommandModelError(f"{where}: input bins*n_mels+1 != {n_in}")
    if not 0 <= side["cutoff_u8"] <= 255:
        raise CommandModelError(f"{where}: cutoff_u8 out of range")
    for k in ref_vad.DEFAULTS:
        if k not in side["vad"]:
            raise CommandModelError(f"{where}: vad setting {k!r} missing")
    ref_nn.check_frontend(side["frontend"], ref_nn.frontend_params(), where)


def quantize(layers, calibration: np.ndarray, input_scale: float = 1.0 / 64) -> CommandNet:
    """Post-training quantisation of float dense layers.

    Args:
        layers: [(W (out, in), b (out,), "relu" | "none"), ...]; the last one "none".
        calibration: uint8 inputs (N, in) for the activation ranges.
        input_scale: real value of one input step (zero point 0).
    """
    x_q = np.asarray(calibration, np.uint8)
    in_scale = input_scale
    out: list[DenseQ] = []
    for W, b, act in layers:
        W = np.asarray(W, np.float64)
        b = np.asarray(b, np.float64)
        w_scale = np.maximum(np.abs(W).max(axis=1), 1e-12) / 127.0
        wq = np.clip(np.round(W / w_scale[:, None]), -127, 127).astype(np.int8)
        bq = np.round(b / (in_scale * w_scale)).astype(np.int64)
        bq = np.clip(bq, -BIAS_LIMIT + 1, BIAS_LIMIT - 1)
        # float output of this layer given the quantised input
        acc = x_q.astype(np.int64) @ wq.astype(np.int64).T + bq
        y = acc * (in_scale * w_scale)[None, :]
        relu = act == "relu"
        if relu:
            hi = float(np.percentile(y, 99.99)) if y.size else 1.0
            scale, zp = max(hi, 1e-6) / 255.0, 0
        else:
            scale, zp = ref_nn.choose_qparams(float(y.min()), float(y.max()))
        # the multiplier must stay below 0.5
        real = in_scale * w_scale / scale
        if real.max() >= 0.5:
            scale = float(in_scale * w_scale.max() / 0.499)
            if not relu:
                scale, zp = scale, int(np.clip(round(-float(y.min()) / scale), 0, 255))
            real = in_scale * w_scale / scale
        ms = [ref_nn.quantize_multiplier(float(r)) for r in real]
        L = DenseQ(wq, bq.astype(np.int32), np.array([m for m, _ in ms], np.int64),
                   np.array([s for _, s in ms], np.int64), relu, int(zp), float(scale))  # fmt: skip
        out.append(L)
        x_q = L.forward(x_q)
        in_scale = scale
    last = out[-1]
    table = ref_nn.logistic_table(last.out_scale, last.out_zp)
    return CommandNet(out, table, input_scale)


# --- decoding and recognition (twin of commands.Recognizer) ---------------------------------


def decode(out: np.ndarray, layout: dict, table: np.ndarray, cutoff_u8: int) -> dict:
    """The firmware's decision from one output vector (uint8)."""
    intents = layout["intents"]
    k = len(intents)
    best = int(np.argmax(out[:k]))  # first maximum, as the firmware's strict '>'
    conf = int(table[int(out[best])])
    score = round(conf / 255, 3)
    if conf < cutoff_u8:
        return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "low score"}
    slots = {}
    by_name = {s["name"]: s for s in layout["slots"]}
    for s in layout["intent_slots"][intents[best]]:
        sd = by_name[s]
        j = int(np.argmax(out[sd["offset"] : sd["offset"] + len(sd["values"])]))
        slots[s] = sd["values"][j]
    return {"intent": intents[best], "slots": slots, "score": score}


def _recognize_dense(
    net: CommandNet, frames: np.ndarray, side: dict | None = None, cutoff_u8: int | None = None
) -> dict | None:
    """What the old (format 1) Recognizer answered for the frames of a listening window.

    Returns the result dict plus "start", "end" (segment frames) and "frames" (frames the
    chip consumed before answering); None if the frames ran out before a decision.
    """
    side = side or net.sidecar
    v = side["vad"]
    seg = ref_vad.endpoint(frames, **{k: v[k] for k in ref_vad.DEFAULTS})
    if seg.state < ref_vad.DONE:
        return None
    if seg.state == ref_vad.SILENCE:
        r = {"intent": UNKNOWN, "slots": {}, "score": 0.0, "reason": "silence"}
    else:
        x = net_input(frames, seg.start, seg.end, side["input"]["bins"])
        out = net.forward(x)[0]
        r = decode(
            out, side["layout"], net.table, side["cutoff_u8"] if cutoff_u8 is None else cutoff_u8
        )
    r.update(start=seg.start, end=seg.end, frames=seg.frames_used)
    return r
