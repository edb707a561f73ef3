"""The command grammar: a command set compiled into a graph of phone classes, and its decoder.

A command set (`voicenode_tools.commandset`) says which sentences mean which intent. Here each
intent becomes one *pattern*: a small directed acyclic graph whose nodes are phone classes
(`voicenode_tools.phones`), built from the intent's sentences (shared beginnings share nodes;
every word has its American and British pronunciations side by side; a slot is its values side
by side, numbers as tens and units). The chip runs the phone network over the command, keeps a
cost per frame and class (max logit - logit, so 0 for the most likely class), and finds for
every pattern the cheapest path through its graph (Viterbi, CTC style: a node is entered on a
frame of its class and may then stay on frames of its class or of the blank). The cheapest
pattern wins; its average cost per frame against the cutoff decides between the intent and
`unknown` (the free phone loop costs 0 per frame, so the average cost *is* how much worse the
command explains the audio than any phone sequence would).

Slot values ride along the path as one int32 "token": every node may add a constant to it
(byte k of the token is slot k of the intent: value index + 1 for a list slot, the number
itself for a number slot, built as tens + units; at most 3 slots). Byte 3 counts the words on
the path (`WORD` per word), which the chip's reject rule weighs against the rows heard.

Binary format `.vcg` (little-endian), read by `voicenode.grammar` on the chip:

    header "<4sHHHHHBBI": b"VNCG", version 1, n_nodes, n_preds, n_patterns, n_adds,
                          n_classes, blank class, body_len (bytes after the header, before the CRC)
    adds      n_adds x int32           token increments; adds[0] == 0
    patterns  n_patterns x "<HHHH"     first node, nodes, intent index, slots
    pstart    (n_nodes + 1) x uint16   preds of node i: preds[pstart[i]:pstart[i+1]]
    preds     n_preds x uint16         predecessors (global node numbers, earlier nodes)
    ph        n_nodes x uint8          class of each node
    flags     n_nodes x uint8          bit 0: may start the pattern, bit 1: may end it
    addidx    n_nodes x uint8          index into adds
    (padding to 4 bytes)   CRC-32 of everything before it

The names (intents, slots, values) live in the sidecar JSON. `decode` here is the twin of the
chip's decoder: same integers, same ties (first predecessor wins ties; staying wins over
entering; the first cheapest final node wins).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import commandset as csmod
from . import phones

MAGIC = b"VNCG"
VERSION = 1
_HEAD = "<4sHHHHHBBI"
START = 1
FINAL = 2
#: Cost of an unreachable node at the start; the sentinel is above anything reachable.
INF = 1 << 28
SENTINEL = 1 << 30
#: Token increment of every word: byte 3 of a path's token is its number of words.
WORD = 1 << 24


class GrammarError(ValueError):
    """A grammar file that cannot be used (corrupt, truncated, wrong version)."""


@dataclass
class Grammar:
    ph: np.ndarray  # uint8 (N,)
    flags: np.ndarray  # uint8 (N,)
    addidx: np.ndarray  # uint8 (N,)
    adds: np.ndarray  # int32 (A,)
    pstart: np.ndarray  # uint16 (N+1,)
    preds: np.ndarray  # uint16 (E,)
    patterns: list = field(default_factory=list)  # (first, count, intent index, slots)
    n_classes: int = len(phones.CLASSES)
    blank: int = 0

    @property
    def n_nodes(self) -> int:
        return len(self.ph)

    def heap_bytes(self) -> int:
        """The chip's buffers for this grammar: the whole file (one bytearray) and S/K, two
        int32 per node (the chip decodes all patterns row by row); Python objects not counted."""
        return len(self.to_bytes()) + 8 * self.n_nodes

    # ---- the file -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        body = bytearray()
        body += np.asarray(self.adds, "<i4").tobytes()
        for first, count, intent, slots in self.patterns:
            body += struct.pack("<HHHH", first, count, intent, slots)
        body += np.asarray(self.pstart, "<u2").tobytes()
        body += np.asarray(self.preds, "<u2").tobytes()
        body += np.asarray(self.ph, "u1").tobytes()
        body += np.asarray(self.flags, "u1").tobytes()
        body += np.asarray(self.addidx, "u1").tobytes()
        body += bytes(-len(body) % 4)
        head = struct.pack(
            _HEAD, MAGIC, VERSION, self.n_nodes, len(self.preds), len(self.patterns),
            len(self.adds), self.n_classes, self.blank, len(body),
        )  # fmt: skip
        data = head + bytes(body)
        return data + struct.pack("<I", zlib.crc32(data))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "grammar") -> Grammar:
        hs = struct.calcsize(_HEAD)
        if len(data) < hs + 4:
            raise GrammarError(f"{where}: {len(data)} bytes is too short for a grammar")
        magic, ver, n, e, p, a, ncls, blank, body_len = struct.unpack_from(_HEAD, data)
        if magic != MAGIC:
            raise GrammarError(f"{where}: not a voicenode grammar (magic {magic!r})")
        if ver != VERSION:
            raise GrammarError(f"{where}: format version {ver}, this reads {VERSION}")
        if len(data) != hs + body_len + 4:
            raise GrammarError(f"{where}: {len(data)} bytes, the header says {hs + body_len + 4}")
        (crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != crc:
            raise GrammarError(f"{where}: checksum mismatch (corrupt file)")
        o = hs
        adds = np.frombuffer(data, "<i4", a, o).astype(np.int64)
        o += 4 * a
        pats = [struct.unpack_from("<HHHH", data, o + 8 * i) for i in range(p)]
        o += 8 * p
        pstart = np.frombuffer(data, "<u2", n + 1, o).astype(np.int64)
        o += 2 * (n + 1)
        preds = np.frombuffer(data, "<u2", e, o).astype(np.int64)
        o += 2 * e
        ph = np.frombuffer(data, "u1", n, o).copy()
        flags = np.frombuffer(data, "u1", n, o + n).copy()
        addidx = np.frombuffer(data, "u1", n, o + 2 * n).copy()
        g = cls(ph, flags, addidx, adds, pstart, preds, [tuple(x) for x in pats], ncls, blank)
        g.check(where)
        return g

    def check(self, where: str = "grammar") -> None:
        n = self.n_nodes
        if int(self.pstart[0]) != 0 or int(self.pstart[-1]) != len(self.preds):
            raise GrammarError(f"{where}: predecessor table does not add up")
        if np.any(np.diff(self.pstart) < 0):
            raise GrammarError(f"{where}: predecessor table goes backwards")
        if np.any(self.ph >= self.n_classes) or np.any(self.ph == self.blank):
            raise GrammarError(f"{where}: a node of an unknown class (or the blank)")
        if len(self.adds) == 0 or self.adds[0] != 0 or np.any(self.addidx >= len(self.adds)):
            raise GrammarError(f"{where}: bad token increments")
        covered = 0
        for first, count, _, _ in self.patterns:
            if first != covered or count == 0:
                raise GrammarError(f"{where}: patterns must tile the nodes in order")
            for i in range(first, first + count):
                ps = self.preds[self.pstart[i] : self.pstart[i + 1]]
                if np.any(ps >= i) or np.any(ps < first):
                    raise GrammarError(f"{where}: node {i} has a predecessor outside its past")
                if len(ps) == 0 and not self.flags[i] & START:
                    raise GrammarError(f"{where}: node {i} cannot be reached")
            if not np.any(self.flags[first : first + count] & FINAL):
                raise GrammarError(f"{where}: a pattern with no final node")
            covered += count
        if covered != n:
            raise GrammarError(f"{where}: patterns cover {covered} of {n} nodes")

    def pred_matrix(self) -> np.ndarray:
        """(N, maxpred + 1) predecessors padded with N (the sentinel); last column: start."""
        n = self.n_nodes
        deg = np.diff(self.pstart)
        m = int(deg.max()) if n else 0
        mat = np.full((n, m + 1), n + 1, np.int64)  # n + 1: sentinel slot
        for i in range(n):
            ps = self.preds[self.pstart[i] : self.pstart[i + 1]]
            mat[i, : len(ps)] = ps
            if self.flags[i] & START:
                mat[i, m] = n  # slot n: the blank-only prefix B
        return mat


# ---- compiling a command set -------------------------------------------------------------


UNK = "<unk>"


def vocabulary(cs: csmod.CommandSet) -> list[str]:
    """Every word a sentence of the set can contain (slot values and number words included)."""
    words = set()
    for intent in cs.intents:
        for t, _ in cs.templates(intent):
            words.update(w for w in t.split() if not w.startswith("{"))
    for name in cs.used_slots():
        sl = cs.slots[name]
        for v, spoken in zip(sl.values, sl.spoken, strict=True):
            words.update((csmod.number_words(int(v)) if sl.kind == "number" else spoken).split())
    return sorted(words)


def word_classes(cs: csmod.CommandSet) -> list[str]:
    """The classes of a word network: the blank, <unk> (any other word), the vocabulary."""
    return [phones.BLANK, UNK] + vocabulary(cs)


def word_labels(text: str, classes: list[str]) -> list[int]:
    """Class numbers of a sentence's words; words outside the set are <unk>."""
    index = {c: i for i, c in enumerate(classes)}
    return [index.get(w, 1) for w in text.lower().split()]


class _Builder:
    def __init__(self, word_index: dict | None = None):
        self.word_index = word_index  # words as units (None: phone chains)
        self.ph: list[int] = []
        self.flags: list[int] = []
        self.add: list[int] = []
        self.preds: list[list[int]] = []

    def chain(self, classes, preds, add: int) -> int:
        """Nodes for one pronunciation; the first takes `preds` (None: a start) and `add`."""
        last = -1
        for j, c in enumerate(classes):
            self.ph.append(phones.INDEX[c])
            if j == 0:
                self.flags.append(START if preds is None else 0)
                self.preds.append([] if preds is None else list(preds))
                self.add.append(add)
            else:
                self.flags.append(0)
                self.preds.append([last])
                self.add.append(0)
            last = len(self.ph) - 1
        return last

    def word(self, w: str, preds, add: int = 0) -> list[int]:
        """The nodes of one word after `preds`, adding `add` and one `WORD` to the token."""
        add += WORD
        if self.word_index is not None:  # one node: the word's class
            self.ph.append(self.word_index[w])
            self.flags.append(START if preds is None else 0)
            self.preds.append([] if preds is None else list(preds))
            self.add.append(add)
            return [len(self.ph) - 1]
        return [self.chain(p, preds, add) for p in phones.pronunciations(w)]

    def words(self, text: str, preds, add: int) -> list[int]:
        ends = preds
        for j, w in enumerate(text.split()):
            ends = self.word(w, ends, add if j == 0 else 0)
        return ends


def _slot(b: _Builder, slot: csmod.Slot, shift: int, preds) -> list[int]:
    """A slot's values side by side; ends of all of them."""
    ends: list[int] = []
    if slot.kind != "number":
        for i, spoken in enumerate(slot.spoken):
            ends += b.words(spoken, preds, (i + 1) << shift)
        return ends
    values = [int(v) for v in slot.values]
    if max(values) > 255:
        raise GrammarError(f"slot {slot.name}: numbers above 255 do not fit the chip's token")
    tens_units: dict[int, list[int]] = {}
    for n in values:
        words = csmod.number_words(n).split()
        if len(words) == 1:
            ends += b.word(words[0], preds, n << shift)
        elif len(words) == 2 and n < 100:
            tens_units.setdefault(n - n % 10, []).append(n % 10)
        else:  # hundreds: one chain per number
            ends += b.words(" ".join(words), preds, n << shift)
    groups: dict[tuple, list[int]] = {}
    for t, units in sorted(tens_units.items()):
        t_ends = b.word(csmod.number_words(t), preds, t << shift)
        if t in values:
            ends += t_ends  # "twenty" alone is also a value
        groups.setdefault(tuple(sorted(units)), []).extend(t_ends)
    for units, t_ends in groups.items():
        for u in units:
            ends += b.word(csmod.number_words(u), t_ends, u << shift)
    return ends


def _word_dag(templates: list[str]):
    """The templates as a minimal word graph: a trie whose identical subtrees are merged.

    Returns (nodes in topological order (0 is the start), final flags, edges per node as
    [(token, target)]): "turn on the {room} light" and "switch on the {room} light" share
    "the {room} light".
    """
    trie: dict = {}
    for t in templates:
        node = trie
        for tok in t.split():
            node = node.setdefault(tok, {})
        node[None] = True
    ids: dict = {}
    final: list[bool] = []
    edges: list[list] = []

    def canon(node) -> int:
        kids = tuple(sorted((tok, canon(ch)) for tok, ch in node.items() if tok is not None))
        key = (None in node, kids)
        if key not in ids:
            ids[key] = len(final)
            final.append(None in node)
            edges.append(list(kids))
        return ids[key]

    root = canon(trie)
    # topological order from the start (Kahn), by first appearance
    indeg = [0] * len(final)
    for es in edges:
        for _, w in es:
            indeg[w] += 1
    order, ready = [], [root]
    while ready:
        v = ready.pop(0)
        order.append(v)
        for _, w in edges[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    return order, final, edges


def _pattern(b: _Builder, cs: csmod.CommandSet, intent: csmod.Intent) -> None:
    """Phone nodes of one intent: its word graph, every edge a word (or slot) chain."""
    order, final, edges = _word_dag([t for t, _ in cs.templates(intent)])
    ends: dict = {order[0]: None}  # None: the start of the pattern
    for v in order:
        preds = ends[v]
        if final[v] and preds:
            for e in preds:
                b.flags[e] |= FINAL
        for tok, w in edges[v]:
            if tok.startswith("{"):
                name = tok[1:-1]
                got = _slot(b, cs.slots[name], 8 * intent.slots.index(name), preds)
            else:
                got = b.word(tok, preds)
            ends.setdefault(w, [])
            ends[w] = ends[w] + got


def compile_commandset(cs: csmod.CommandSet, units: str = "phones") -> tuple[Grammar, dict]:
    """One pattern per intent. Returns the grammar and its layout for the sidecar.

    Args:
        units: "phones" (nodes are phone classes, `phones.CLASSES`) or "words" (a node is a
            word, classes `word_classes(cs)`: the network is trained for this set's words).
    """
    if units not in ("phones", "words"):
        raise ValueError(f"units must be phones or words, not {units!r}")
    classes = list(phones.CLASSES) if units == "phones" else word_classes(cs)
    if len(classes) > 255:
        raise GrammarError(f"{len(classes)} classes: the chip's grammar holds at most 255")
    b = _Builder({c: i for i, c in enumerate(classes)} if units == "words" else None)
    patterns = []
    for ii, intent in enumerate(cs.intents):
        first = len(b.ph)
        if len(intent.slots) > 3:
            raise GrammarError(f"intent {intent.name}: more than 3 slots")
        longest = max(len(t.split()) for t, _ in cs.templates(intent))
        if longest > 40:  # byte 3 of the token counts words (the chip's sums stay < 2**30)
            raise GrammarError(f"intent {intent.name}: a phrase of {longest} words (at most 40)")
        _pattern(b, cs, intent)
        patterns.append((first, len(b.ph) - first, ii, len(intent.slots)))
    adds = [0] + sorted({a for a in b.add if a})
    if len(adds) > 256:
        raise GrammarError("more than 255 distinct token increments in the grammar")
    aidx = {a: i for i, a in enumerate(adds)}
    pstart = [0]
    flat: list[int] = []
    for ps in b.preds:
        flat += ps
        pstart.append(len(flat))
    if len(b.ph) >= 65535 or len(flat) >= 65535:
        raise GrammarError(f"the grammar is too big for the chip ({len(b.ph)} nodes)")
    g = Grammar(
        np.array(b.ph, np.uint8), np.array(b.flags, np.uint8),
        np.array([aidx[a] for a in b.add], np.uint8), np.array(adds, np.int64),
        np.array(pstart, np.int64), np.array(flat, np.int64), patterns, len(classes),
    )  # fmt: skip
    g.check("compiled grammar")
    layout = {
        "units": units,
        "classes": classes,
        "intents": cs.intent_names,
        "intent_slots": {i.name: list(i.slots) for i in cs.intents},
        "slots": {
            s: {"kind": cs.slots[s].kind, "values": list(cs.slots[s].values)}
            for s in cs.used_slots()
        },
    }
    return g, layout


# ---- decoding (the chip's twin) ---------------------------------------------------------


def costs(logits: np.ndarray) -> np.ndarray:
    """uint8 logits (steps, classes) -> costs: max logit of the step - logit (uint8)."""
    lg = np.asarray(logits, np.int64)
    return (lg.max(axis=1, keepdims=True) - lg).astype(np.uint8)


def viterbi(g: Grammar, cost: np.ndarray, pm: np.ndarray | None = None, word_bonus: int = 0):
    """Best cost and token of every node after the last frame (int64 arrays).

    `word_bonus`: every row a path stays on a node (or in the blank-only prefix) costs this
    much more. A path of T rows that enters W nodes pays word_bonus * (T - W) on top of its
    rows' costs: the same as a bonus per word (node) entered, with costs that stay >= 0.
    Without it a long command that the network heard poorly loses to a one-word command
    whose word fits one row of it and the blank the rest.
    """
    cost = np.asarray(cost, np.int64)
    n = g.n_nodes
    pm = g.pred_matrix() if pm is None else pm
    ph = g.ph.astype(np.int64)
    add = g.adds[g.addidx.astype(np.int64)]
    s = np.full(n + 2, INF, np.int64)
    s[n + 1] = SENTINEL
    k = np.zeros(n + 2, np.int64)
    bsum = 0
    rows = np.arange(n)
    for t in range(len(cost)):
        c = cost[t]
        s[n] = bsum
        cand = s[pm]  # (n, m+1)
        j = np.argmin(cand, axis=1)
        best = cand[rows, j]
        src = pm[rows, j]
        enter = best + c[ph]
        stay = s[:n] + np.minimum(c[ph], c[g.blank]) + word_bonus
        keep = stay <= enter
        tok = np.where(keep, k[:n], np.where(src == n, 0, k[src]) + add)
        s[:n] = np.where(keep, stay, enter)
        k[:n] = tok
        bsum += int(c[g.blank]) + word_bonus
    return s[:n].copy(), k[:n].copy()


def decode(g: Grammar, cost: np.ndarray, pm: np.ndarray | None = None, word_bonus: int = 0) -> dict:
    """The cheapest pattern for a command's costs (`word_bonus`: see `viterbi`).

    Returns {"pattern", "intent" (index), "cost", "frames", "avg" ((cost << 8) // frames),
    "token", "second" (avg of the best pattern of another intent, or None)}.
    """
    frames = len(cost)
    if frames == 0:
        return {"pattern": -1, "intent": -1, "cost": 0, "frames": 0, "avg": 1 << 20,
                "token": 0, "second": None}  # fmt: skip
    s, k = viterbi(g, cost, pm, word_bonus)
    best = (None, SENTINEL, 0)
    per_intent: dict[int, int] = {}
    for pi, (first, count, intent, _) in enumerate(g.patterns):
        for i in range(first, first + count):
            if g.flags[i] & FINAL:
                v = int(s[i])
                if v < best[1]:
                    best = (pi, v, int(k[i]))
                if v < per_intent.get(intent, SENTINEL):
                    per_intent[intent] = v
    pi, v, tok = best
    intent = g.patterns[pi][2]
    others = [x for i, x in per_intent.items() if i != intent]
    second = ((min(others) << 8) // frames) if others else None
    return {"pattern": pi, "intent": intent, "cost": v, "frames": frames,
            "avg": (v << 8) // frames, "token": tok, "second": second}  # fmt: skip


def slots_of(token: int, intent: str, layout: dict) -> dict:
    """Slot values from a token: {"room": "kitchen", "minutes": 5}; a value off the list: None."""
    out = {}
    for k, name in enumerate(layout["intent_slots"][intent]):
        code = (token >> (8 * k)) & 0xFF
        sl = layout["slots"][name]
        if sl["kind"] == "number":
            out[name] = code if code in sl["values"] else None
        else:
            out[name] = sl["values"][code - 1] if 0 < code <= len(sl["values"]) else None
    return out
