"""Spoken commands after the wake word: listening window, end-pointing, phones, grammar.

    >>> from voicenode.commands import Recognizer
    >>> rec = Recognizer("/app/x/models/commands_home")   # + .json, .vcg, _phones.vnm/.json
    >>> rec.reset()                  # on a wake event: a new listening window
    >>> r = rec.step(frame)          # every feature frame after it: None while listening,
    >>> r                            # then once: the result
    {'intent': 'timer.set', 'slots': {'minutes': 5}, 'score': 0.91}

How: while the window is open every frame goes to the end-pointer (`voicenode.vad`) and to a
streaming phone network (`voicenode.nn.model.load(..., head="logits")`: the wake word's int8
layers with one logit per phone class, class 0 the CTC blank). Each time the network emits
(every `stride` frames) its logits become one row of a costgram: cost = max logit - logit,
so 0 for the most likely class. The rows of the command (from the segment's start to the
frame of the decision) go through the command grammar (`voicenode.grammar`, one phone graph
per intent) as they come, once the end-pointer has heard speech, so the decision itself
only reads the final nodes: the cheapest path names the intent and carries the slot values
and its word count. Its average cost per row, in 1/256 (`avg`), against the model's
`cutoff_avg`, its margin over the best other intent against `margin_avg`, and the sidecar's
`reject` rule (integer weights of the decision's `features`: avg, margin, the rows' best
classes, the path's words) decide between the intent and `unknown`. The sidecar's
`word_bonus` makes every row a path stays on a node cost that much more, a bonus per word
entered (`voicenode.grammar`). The costgram is a ring of a few rows; each row's best class is
kept for the rule. score = exp(-heard / 256 * logit_scale), two decimals, where heard is the
path's avg without its word bonus (`heard_avg`).

Model files (`voicenode train-commands`, name e.g. commands_home): `<name>.json` (sidecar:
kind "commands", format 2, the network's name, the grammar file and its CRC-32, the layout
of intents and slots, end-pointer settings, stride, cutoff_avg, margin_avg, logit_scale, the
front-end parameters), `<name>.vcg` (the grammar), `<network>.vnm` + `.json` (the phones).
The host twin is `voicenode_tools.reference.commands` (same rows, same decisions).

`step` allocates nothing while listening; the decision (once per command) builds the result.
"""

import array
import json
import math

import micropython
from micropython import const

from voicenode import grammar, vad
from voicenode.grammar import advance
from voicenode.vad import vad_step

FORMAT_VERSION = const(2)
UNKNOWN = "unknown"
_SPEECH = const(1)  # voicenode.vad.SPEECH
_DONE = const(2)  # voicenode.vad.DONE
_S_STATE = const(0)  # voicenode.vad.S_STATE
_S_START = const(3)  # voicenode.vad.S_START
_G_ROW0 = const(9)  # voicenode.grammar's decoder state: next row, rows available
_G_ROW1 = const(10)
_NOT_STARTED = const(0x3FFFFFFF)  # voicenode.grammar.NOT_STARTED
_NO_ROWS_AVG = const(0x100000)  # avg of a command without a single network step (1 << 20)
# costgram state (array "i")
_C_ROW = const(0)  # rows written since reset
_C_CAP = const(1)  # rows the buffer holds
_C_NCLS = const(2)
_C_STRIDE = const(3)
_C_BEST = const(4)  # rows the best-class buffer holds
# The CRC-32 of any intact file that ends in its own CRC-32 (little-endian): what a sidecar
# holds if it recorded the whole file's CRC instead of the stored one.
_CRC_RESIDUE = const(0x2144DF1C)
_VAD_KEYS = ("threshold", "onset", "hangover", "max_frames", "preroll", "tail")
# the `reject` rule's features, in the order of its weights
REJECT_FEATURES = (
    "avg", "margin", "emissions", "unk_rows", "nonblank_rows", "rows", "nonblank_share",
    "words", "rows_per_word",
)  # fmt: skip
_MARGIN_CAP = const(4096)  # margin without another intent, and the largest counted
_MAX_WORD_BONUS = const(255)


class CommandModelError(ValueError):
    """The command model or one of its files cannot be used; the message says which and why."""


@micropython.viper
def cost_row(out: ptr8, cost: ptr8, st: ptr32, best: ptr8) -> int:
    """Append one costgram row from the network's logits: cost[c] = max logit - logit[c].

    `st` = [rows written, rows the ring holds, n_classes, stride, rows `best` holds]: row r
    goes to slot r % capacity (the grammar reads it before it is overwritten), and its best
    class (the first largest logit) to best[r] while r fits. Returns the rows written so far.
    """
    n = int(st[_C_NCLS])
    row = int(st[_C_ROW])
    mx = 0
    arg = 0
    i = 0
    while i < n:
        if int(out[i]) > mx:
            mx = int(out[i])
            arg = i
        i += 1
    d = ptr8(int(cost) + (row % int(st[_C_CAP])) * n)
    i = 0
    while i < n:
        d[i] = mx - int(out[i])
        i += 1
    if row < int(st[_C_BEST]):
        best[row] = arg
    row += 1
    st[_C_ROW] = row
    return row


def cost_row_py(out, cost, st, best):
    """Plain-Python twin of `cost_row`."""
    n, row = st[_C_NCLS], st[_C_ROW]
    mx = max(out[i] for i in range(n))
    d = (row % st[_C_CAP]) * n
    for i in range(n):
        cost[d + i] = mx - out[i]
    if row < st[_C_BEST]:
        best[row] = [out[i] for i in range(n)].index(mx)
    st[_C_ROW] = row + 1
    return row + 1


def ring_rows(vad_cfg, stride):
    """Costgram rows the Recognizer keeps: the rows written before the end-pointer hears
    speech and the grammar starts (its onset and preroll frames) and one more; the grammar
    decodes each later row as it comes. The host twin has the same rule."""
    full = (vad_cfg["max_frames"] + stride - 1) // stride
    return min(full, (vad_cfg["onset"] + vad_cfg["preroll"] + stride - 1) // stride + 2)


@micropython.viper
def sync(vs: ptr32, st: ptr32, g: ptr32) -> int:
    """Once the end-pointer has found speech, the costgram rows the grammar may decode now:
    from the segment's first row (start // stride, set once) to the rows written. Sets the
    grammar's row0 (first time) and row1; returns the rows pending."""
    state = int(vs[_S_STATE])
    if state != _SPEECH:
        if state != _DONE:
            return 0
    if int(g[_G_ROW0]) == _NOT_STARTED:
        g[_G_ROW0] = int(vs[_S_START]) // int(st[_C_STRIDE])
    rows = int(st[_C_ROW])
    g[_G_ROW1] = rows
    return rows - int(g[_G_ROW0])


def slots_of(token, names, slots):
    """Slot values from a path's token (byte k: slot k of the intent); None for a value off
    the list. `names`: the intent's slot names, `slots`: {name: (number, values)} (see
    `compact_slots`)."""
    out = {}
    for k in range(len(names)):
        code = (token >> (8 * k)) & 0xFF
        number, values = slots[names[k]]
        if number:
            out[names[k]] = code if code in values else None
        else:
            out[names[k]] = values[code - 1] if 0 < code <= len(values) else None
    return out


def compact_slots(layout):
    """The layout's slot table and each intent's slot names, small for the heap: {name:
    (number, values)}, the numbers as bytes (a token byte each), the words as a tuple; the
    intents' names as tuples of the table's own keys (one string each)."""
    slots = {}
    for name, sl in layout["slots"].items():
        v = sl["values"]
        number = sl["kind"] == "number"
        slots[name] = (number, bytes(v) if number else tuple(v))
    keys = {k: k for k in slots}
    names = layout["intent_slots"]
    return slots, [tuple(keys[s] for s in names[x]) for x in layout["intents"]]


def features(best, row0, row1, avg, second, unk, token):
    """The `reject` rule's features (`REJECT_FEATURES`) of the rows [row0, row1): from each
    row's best class (`best`) the emissions (not the blank, and not the class of the row
    before, the first row counting as a change), the rows of `unk` (-1: none), the rows not
    blank, the rows, and the share not blank (x 256); from the grammar avg, margin, the
    words on the best path (byte 3 of its token) and rows * 16 // words."""
    em = unk_rows = nb = 0
    prev = -1
    for r in range(row0, row1):
        c = best[r]
        if c:
            nb += 1
            if c != prev:
                em += 1
        if c == unk:
            unk_rows += 1
        prev = c
    n = row1 - row0
    margin = _MARGIN_CAP if second is None else min(second - avg, _MARGIN_CAP)
    words = (token >> 24) & 0xFF
    return (avg, margin, em, unk_rows, nb, n, (nb << 8) // n if n else 0, words,
            (n << 4) // (words if words else 1))  # fmt: skip


def reject_score(feats, rule):
    """sum(weight * feature) + bias: the rule keeps the command at >= 0."""
    w = rule["weights"]
    s = rule["bias"]
    for i in range(len(w)):
        s += w[i] * feats[i]
    return s


def _check_reject(where, rule):
    w = rule.get("weights") if isinstance(rule, dict) else None
    ok = (
        isinstance(w, list)
        and rule.get("features") == list(REJECT_FEATURES)
        and len(w) == len(REJECT_FEATURES)
        and all(type(x) is int for x in w)
        and type(rule.get("bias")) is int
    )
    if not ok:
        raise CommandModelError(
            "%s: reject rule is not %d integer weights of %s and an integer bias"
            % (where, len(REJECT_FEATURES), list(REJECT_FEATURES))
        )


def score_of(avg, logit_scale):
    """exp(-avg / 256 * logit_scale) rounded to two decimals (half up)."""
    return int(math.exp(-avg / 256 * logit_scale) * 100 + 0.5) / 100


def heard_avg(cost, rows, token, word_bonus):
    """The best path's average cost per row (x 256) without the word bonus it paid (on the
    rows minus its words, byte 3 of its token): what the score is made of."""
    words = (token >> 24) & 0xFF
    return (max(0, cost - word_bonus * (rows - words)) << 8) // rows


def _base(path):
    for ext in (".json", ".vcg", ".vcm"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def _check_frontend(where, trained):
    from voicenode.dsp import params

    for k in trained:
        have = getattr(params, k, None)
        if have != trained[k]:
            raise CommandModelError(
                "%s: front-end parameter %s: model trained with %r, firmware has %r"
                % (where, k, trained[k], have)
            )


def _read_sidecar(path):
    try:
        with open(path) as f:
            side = json.load(f)
    except OSError:
        raise CommandModelError("%s: sidecar missing" % path) from None
    except ValueError as e:
        raise CommandModelError("%s: not JSON (%s)" % (path, e)) from None
    if not isinstance(side, dict) or side.get("kind") != "commands":
        raise CommandModelError("%s: not a command model sidecar" % path)
    if side.get("format") != FORMAT_VERSION:
        raise CommandModelError(
            "%s: command model format %r, this firmware reads %d (retrain with "
            "voicenode train-commands)" % (path, side.get("format"), FORMAT_VERSION)
        )
    for k in ("name", "network", "grammar", "layout", "vad", "stride", "cutoff_avg", "frontend"):
        if k not in side:
            raise CommandModelError("%s: missing %r" % (path, k))
    if not isinstance(side["grammar"], dict) or "file" not in side["grammar"]:
        raise CommandModelError("%s: the grammar file is not named" % path)
    for k in _VAD_KEYS:
        if k not in side["vad"]:
            raise CommandModelError("%s: vad setting %r missing" % (path, k))
    drop = side["vad"].get("drop", 0)  # optional: sidecars before 27 Nov have none (off)
    if type(drop) is not int or drop < 0:
        raise CommandModelError("%s: vad setting 'drop' must be an integer >= 0" % path)
    _check_frontend(path, side["frontend"])
    return side


def _check_layout(where, side, g):
    lay = side["layout"]
    try:
        intents = lay["intents"]
        slots = lay["slots"]
        for p in g.patterns:
            if p[2] >= len(intents):
                raise CommandModelError(
                    "%s: grammar intent %d, the layout names %d" % (where, p[2], len(intents))
                )
            names = lay["intent_slots"][intents[p[2]]]
            if len(names) != p[3]:
                raise CommandModelError(
                    "%s: intent %s has %d slots in the grammar, %d in the layout"
                    % (where, intents[p[2]], p[3], len(names))
                )
            for s in names:
                if slots[s]["kind"] not in ("list", "number"):
                    raise CommandModelError("%s: slot %s of unknown kind" % (where, s))
    except (KeyError, TypeError) as e:
        raise CommandModelError("%s: layout incomplete (%r)" % (where, e)) from None


class Recognizer:
    """Listens after a wake word and decides on one command.

    Args:
        path: the model's base path (`.../commands_home`) or its `.json` or `.vcg`.
        cutoff_avg, margin_avg: override the sidecar's.
        shared: only check and size the network (`voicenode.nn.model.prepare`); the owner
            binds it to memory it shares with the wake words (`net.bind(mem)`) and reads it
            in (`net.fill()`) before each `reset` (see `voicenode.node`).

    `reset()` opens a listening window; `step(frame)` returns None until the command is
    decided, then the result dict once (and `listening` becomes False): `{"intent": name,
    "slots": {slot: value}, "score": s}` or `{"intent": "unknown", "slots": {}, "score": s,
    "reason": "low score" | "bad slot" | "silence"}`. After a decision `avg`, `second_avg`
    (None without another intent), `token`, `pattern`, `rows` ((first, end) of the costgram
    rows decoded) and `features` (the `reject` rule's, `REJECT_FEATURES`) tell how it was
    reached; `frames_after_speech` how many frames after the last speech frame it came.
    `cost` holds the last rows (a ring of `ring_rows`, rewritten after reset).

    Raises:
        CommandModelError: a missing or damaged file, a sidecar for other files or another
            front end, a network whose classes or stride the grammar or sidecar do not share.
    """

    def __init__(self, path, cutoff_avg=None, margin_avg=None, shared=False):
        base = _base(path)
        try:
            self._load(base, cutoff_avg, margin_avg, shared)
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            # a sidecar with the keys but values of the wrong shape
            raise CommandModelError("%s.json: sidecar unusable (%r)" % (base, e)) from None

    def _load(self, base, cutoff_avg, margin_avg, shared):
        side_path = base + ".json"
        # the sidecar is read here and not kept: its recipe and scores would stay on the heap
        side = _read_sidecar(side_path)
        self.name = side["name"]
        self.version = side.get("version", "")
        i = base.rfind("/")
        folder = base[: i + 1]
        gs = side["grammar"]
        gpath = folder + gs["file"]
        try:
            self.grammar = g = grammar.load(gpath)
        except grammar.GrammarError as e:
            raise CommandModelError(str(e)) from None
        if g.crc32 != gs.get("crc32"):
            if gs.get("crc32") == _CRC_RESIDUE:
                raise CommandModelError(
                    "%s: grammar crc32 is the CRC-32 of the whole file (the same for every "
                    "file); record the checksum in its last 4 bytes" % side_path
                )
            raise CommandModelError("%s: sidecar belongs to another grammar file" % side_path)
        if g.n_nodes != gs.get("nodes"):
            raise CommandModelError(
                "%s: sidecar says %r grammar nodes, %s has %d"
                % (side_path, gs.get("nodes"), gpath, g.n_nodes)
            )
        _check_layout(side_path, side, g)
        from voicenode.nn import model as nn_model

        try:
            npath = folder + side["network"] + ".vnm"
            if shared:
                net = nn_model.prepare(npath, head="logits")
            else:
                net = nn_model.load(npath, head="logits")
        except nn_model.ModelError as e:
            raise CommandModelError("network: %s" % e) from None
        self.net = net
        if net.outputs != g.n_classes:
            raise CommandModelError(
                "%s: network %s has %d classes, the grammar %d"
                % (side_path, side["network"], net.outputs, g.n_classes)
            )
        net.labels = None  # the grammar names the classes: 98 strings less on the heap
        self.stride = stride = net.stride
        if stride != side["stride"]:
            raise CommandModelError(
                "%s: stride %r, network %s has %d" % (side_path, side["stride"], net.name, stride)
            )
        lay = side["layout"]
        self.intents = lay["intents"]
        try:
            self.slots, self.intent_slots = compact_slots(lay)
        except ValueError:
            raise CommandModelError(
                "%s: a number slot holds a value outside 0..255" % side_path
            ) from None
        self.cutoff_avg = side["cutoff_avg"] if cutoff_avg is None else cutoff_avg
        self.margin_avg = side.get("margin_avg", 0) if margin_avg is None else margin_avg
        self.logit_scale = side.get("logit_scale", 1.0)
        wb = side.get("word_bonus", 0)
        if type(wb) is not int or not 0 <= wb <= _MAX_WORD_BONUS:
            raise CommandModelError(
                "%s: word_bonus %r is not an integer 0..%d" % (side_path, wb, _MAX_WORD_BONUS)
            )
        self.word_bonus = wb
        g.word_bonus(wb)
        rule = side.get("reject")  # None: cutoff_avg and margin_avg only
        if rule is not None:
            _check_reject(side_path, rule)
            rule = {"weights": tuple(rule["weights"]), "bias": rule["bias"]}
        self.reject = rule
        classes = lay.get("classes") or ()
        self.unk = classes.index("<unk>") if "<unk>" in classes else -1
        from voicenode.dsp import params

        v = side["vad"]
        self.vad = vad.Endpointer(
            v["threshold"], v["onset"], v["hangover"], v["max_frames"], v["preroll"],
            v["tail"], params.N_MELS, v.get("drop", 0),
        )  # fmt: skip
        cap = ring_rows(v, stride)
        self.cost = bytearray(cap * g.n_classes)  # the costgram's last cap rows (a ring)
        g.ring(cap)
        full = (v["max_frames"] + stride - 1) // stride
        self.best = bytearray(full)  # each row's best class, for the `reject` rule
        self._st = array.array("i", [0, cap, g.n_classes, stride, full])
        self._vs = self.vad.s
        self._gcfg = g.cfg
        self._bufs = (self.cost, g.blob, g.sk, g.cfg)  # the grammar kernel's buffers
        self.listening = False
        self.frames_after_speech = 0
        self.avg = self.second_avg = None
        self.token = self.pattern = 0
        self.rows = (0, 0)
        self.features = None

    def reset(self):
        """Start a listening window (call on the wake event): the end-pointer, the network's
        history, the costgram and the grammar decoder start over, exactly as if the network
        started here."""
        self.vad.reset()
        self.net.reset()
        self._st[_C_ROW] = 0
        self.grammar.begin()
        self.features = None
        self.listening = True

    def step(self, frame):
        """Feed one feature frame (n_mels bytes). None while listening; the result once.

        Every `stride` frames the network's logits become a costgram row; once the
        end-pointer has heard speech, the grammar decodes the rows as they come, so the
        decision only reads the final nodes. Kept tiny (the work is in viper): a bytecode
        method with a bigger frame would take it from the heap on every call.
        """
        if not self.listening:
            return None
        net = self.net
        if net.step(frame) >= 0:
            cost_row(net.out, self.cost, self._st, self.best)
        st = vad_step(frame, self._vs)
        if sync(self._vs, self._st, self._gcfg) > 0:
            advance(0, 0, 0, self._bufs)
        if st < _DONE:
            return None
        return self._done()

    def _done(self):
        v = self.vad
        self.listening = False
        if v.state == vad.SILENCE:
            return {"intent": UNKNOWN, "slots": {}, "score": 0.0, "reason": "silence"}
        self.frames_after_speech = v.n - 1 - v.last
        # the rows of the command: from its first frame to the frame of the decision, all
        # decoded by now (`step`)
        row0, row1 = v.start // self.stride, v.n // self.stride
        self.grammar.advance(self.cost, row0, row1)  # nothing left, unless rows were skipped
        self.rows = (row0, row1)
        return self._decision(self.grammar.finish(row1 - row0), row0, row1)

    def decide(self, cost, rows):
        """Decode a whole costgram from scratch (`cost`: rows x n_classes bytes) and decide,
        for tests and tools (`step` decodes as it goes, in its ring)."""
        g = self.grammar
        n = g.n_classes
        for r in range(min(rows, len(self.best))):
            c = 0
            while c < n - 1 and cost[r * n + c]:  # the first class of cost 0
                c += 1
            self.best[r] = c
        cap = g.ring(0)
        try:
            self.rows = (0, rows)
            return self._decision(g.decode(cost, 0, rows), 0, rows)
        finally:
            g.ring(cap)

    def _decision(self, d, row0, row1):
        frames = row1 - row0
        if d is None:
            self.avg, self.second_avg, self.token, self.pattern = _NO_ROWS_AVG, None, 0, -1
            return self._unknown(_NO_ROWS_AVG, "low score")
        pattern, cost, token, second = d
        avg = (cost << 8) // frames
        second_avg = None if second is None else (second << 8) // frames
        self.avg, self.second_avg, self.token, self.pattern = avg, second_avg, token, pattern
        self.features = f = features(self.best, row0, row1, avg, second_avg, self.unk, token)
        heard = heard_avg(cost, frames, token, self.word_bonus)
        if avg > self.cutoff_avg or (second_avg is not None and second_avg - avg < self.margin_avg):
            return self._unknown(heard, "low score")
        if self.reject is not None and reject_score(f, self.reject) < 0:
            return self._unknown(heard, "low score")
        ii = self.grammar.patterns[pattern][2]
        slots = slots_of(token, self.intent_slots[ii], self.slots)
        for k in slots:
            if slots[k] is None:
                return self._unknown(heard, "bad slot")
        return {
            "intent": self.intents[ii],
            "slots": slots,
            "score": score_of(heard, self.logit_scale),
        }

    def _unknown(self, avg, reason):
        return {
            "intent": UNKNOWN,
            "slots": {},
            "score": score_of(avg, self.logit_scale),
            "reason": reason,
        }
