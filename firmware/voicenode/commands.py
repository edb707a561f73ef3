"""Spoken commands after the wake word: listening window, end-pointing, intent and slots.

    >>> from voicenode.commands import Recognizer
    >>> rec = Recognizer("/app/x/models/commands_home.vcm")   # + commands_home.json
    >>> rec.reset()                  # on a wake event: a new listening window
    >>> r = rec.step(frame)          # every feature frame after it: None while listening,
    >>> r                            # then once: the result
    {'intent': 'timer.set', 'slots': {'minutes': 5}, 'score': 0.91}

Why this shape: a command is short (under 3 s) and is decided once, after the speaker stops,
so the network does not stream. The frames of the listening window are kept (300 x 40 bytes);
`voicenode.vad.Endpointer` finds where the command starts and stops; the command's frames
are averaged into a fixed number of time bins (so fast and slow speakers look alike), a
small int8 network (dense layers, viper kernel below) maps those bytes plus the command's
length to one output per intent and one per slot value, all uint8. The decoder takes the best
intent; its logistic probability against the model's cutoff decides between the intent and
`unknown`; for each slot the intent uses, the best value of that slot's block.

Model: `<name>.vcm` (binary, below) and `<name>.json` (sidecar: the command set's intents,
slots and values, the end-pointer settings, the cutoff, how it was trained and its scores).
The host twin is `voicenode_tools.reference.commands` (same bytes, same decisions).

`.vcm` (little-endian): header "<4sHHHHI" (b"VNCM", version 1, n_layers, n_in, 0, body_len),
then per layer "<HHBBBB" (in, out, act 0 none/1 relu, in_zp, out_zp, has_table), the weights
as w + 128 (out x in bytes, row by row), out x "<iHBB" (bias - in_zp * sum(w), m, s, 0), the
256-byte logistic table when has_table; then the CRC-32 of everything before it.
Requantisation as docs/MODEL_FORMAT.md: t = floor(acc * m / 2**16), y = zo + round(t / 2**s).

`step` allocates nothing while listening (the decision, once per command, builds the result).
"""

import array
import json
import struct

import micropython
from micropython import const

from voicenode import vad
from voicenode.vad import vad_step

FORMAT_VERSION = const(1)
MAGIC = b"VNCM"
_BIAS_OFFSET = const(0x20000000)  # 2**29: ptr32 loads are zero-extended on the 64-bit port
_HEAD = const(16)
_LHEAD = const(8)
# layer cfg (array "i")
_C_IN = const(0)
_C_OUT = const(1)
_C_ZO = const(2)
_C_LO = const(3)
_C_W = const(4)  # offset of the weights in the layer buffer (params first: 4-byte aligned)
_C_OUTOFF = const(5)  # offset of the output bytes
_C_LEN = const(6)
# end-pointer state indices (voicenode.vad.S_*)
_S_N = const(1)
_S_MAX = const(10)
_S_NMELS = const(13)

UNKNOWN = "unknown"

try:
    from binascii import crc32 as _crc32
except ImportError:  # pragma: no cover - ports without binascii.crc32

    def _crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF


class CommandModelError(ValueError):
    """The command model or its sidecar cannot be used; the message says which and why."""


# --- kernels ----------------------------------------------------------------------------------


@micropython.viper
def dense(x: ptr8, w: ptr8, acc: int, cfg: ptr32) -> int:
    """One dense layer: out[o] = requant(bias[o] + sum_i w[o][i] * (x[i] - zi)).

    `w` is the layer buffer ([params out*3 int32][weights (w+128) out*in][out]); the first
    three locals (x, w, acc) stay in registers, so the dot product walks x and w.
    Returns the number of outputs.
    """
    c = cfg
    base = int(w)
    n = int(c[_C_IN])
    nout = int(c[_C_OUT])
    zo = int(c[_C_ZO])
    lo = int(c[_C_LO])
    po = ptr8(base + int(c[_C_OUTOFF]))
    xa = int(x)
    n4 = n - (n & 3)
    end = xa + n4
    acc = 0
    while int(x) < end:
        acc += x[0] + x[1] + x[2] + x[3]
        x = ptr8(int(x) + 4)
    end = xa + n
    while int(x) < end:
        acc += x[0]
        x = ptr8(int(x) + 1)
    sx128 = acc << 7  # weights are stored + 128: subtract 128 * sum(x) once
    w = ptr8(base + int(c[_C_W]))
    o = 0
    while o < nout:
        pp = ptr32(base + o * 12)
        acc = int(pp[0]) - _BIAS_OFFSET - sx128
        x = ptr8(xa)
        end = xa + n4
        while int(x) < end:
            acc += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]
            x = ptr8(int(x) + 4)
            w = ptr8(int(w) + 4)
        end = xa + n
        while int(x) < end:
            acc += x[0] * w[0]
            x = ptr8(int(x) + 1)
            w = ptr8(int(w) + 1)
        m = int(pp[1])
        s = int(pp[2])
        t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
        v = zo + ((t + ((1 << s) >> 1)) >> s)
        if v < lo:
            v = lo
        if v > 255:
            v = 255
        po[o] = v
        o += 1
    return nout


def dense_py(x, buf, acc, cfg):
    """Plain-Python twin of `dense` (same buffers, same integers)."""
    n, nout = cfg[_C_IN], cfg[_C_OUT]
    wb, ob = cfg[_C_W], cfg[_C_OUTOFF]
    for o in range(nout):
        p = struct.unpack_from("<iii", buf, o * 12)
        acc = p[0] - _BIAS_OFFSET
        for i in range(n):
            acc += (buf[wb + o * n + i] - 128) * x[i]
        m, s = p[1], p[2]
        t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
        v = cfg[_C_ZO] + ((t + ((1 << s) >> 1)) >> s)
        buf[ob + o] = min(max(v, cfg[_C_LO]), 255)
    return nout


@micropython.viper
def pool(frames: ptr8, out: ptr8, bins: int, cfg: ptr32) -> int:
    """Average frames [start, end) into `bins` time bins: out[b*n_mels + c] (uint8).

    cfg = [start, end, n_mels]. Bin b covers frames start + b*L//bins .. start + (b+1)*L//bins
    (at least one frame); the mean is sum * round(4096 / count) >> 12, rounded.
    """
    start = int(cfg[0])
    length = int(cfg[1]) - start
    nm = int(cfg[2])
    b = 0
    while b < bins:
        f0 = start + (b * length) // bins
        f1 = start + ((b + 1) * length) // bins
        if f1 <= f0:
            f1 = f0 + 1
        cnt = f1 - f0
        r = (4096 + (cnt >> 1)) // cnt
        c = 0
        while c < nm:
            s = 0
            p = ptr8(int(frames) + f0 * nm + c)
            f = f0
            while f < f1:
                s += p[0]
                p = ptr8(int(p) + nm)
                f += 1
            v = (s * r + 2048) >> 12
            if v > 255:
                v = 255
            out[b * nm + c] = v
            c += 1
        b += 1
    return bins * nm


def pool_py(frames, out, bins, cfg):
    """Plain-Python twin of `pool`."""
    start, end, nm = cfg[0], cfg[1], cfg[2]
    length = end - start
    for b in range(bins):
        f0 = start + (b * length) // bins
        f1 = max(start + ((b + 1) * length) // bins, f0 + 1)
        cnt = f1 - f0
        r = (4096 + (cnt >> 1)) // cnt
        for c in range(nm):
            s = sum(frames[f * nm + c] for f in range(f0, f1))
            out[b * nm + c] = min((s * r + 2048) >> 12, 255)
    return bins * nm


@micropython.viper
def _listen(frame, frames, s) -> int:
    """Keep the frame in the window (while there is room) and step the end-pointer.

    The arguments stay objects (a pointer passed on to another function would be boxed).
    """
    st = ptr32(s)
    fp = ptr8(frame)
    n = int(st[_S_N])
    nm = int(st[_S_NMELS])
    if n < int(st[_S_MAX]):
        d = ptr8(int(ptr8(frames)) + n * nm)
        i = 0
        while i < nm:
            d[i] = fp[i]
            i += 1
    return int(vad_step(frame, s))


# --- model ------------------------------------------------------------------------------------


def _read(f, n, path, what):
    b = f.read(n)
    if b is None or len(b) != n:
        raise CommandModelError("%s: truncated file (%s)" % (path, what))
    return b


class CommandModel:
    """A loaded command network and its sidecar (`load_model(path)`)."""

    def __init__(self, path, side, layers, table):
        self.path = path
        self.side = side
        self.name = side["name"]
        lay = side["layout"]
        self.intents = lay["intents"]
        self.intent_slots = [lay["intent_slots"][i] for i in self.intents]
        self.slots = {s["name"]: (s["offset"], s["values"]) for s in lay["slots"]}
        self.n_outputs = lay["outputs"]
        self.cutoff_u8 = side["cutoff_u8"]
        inp = side["input"]
        self.bins = inp["bins"]
        self.n_mels = inp["n_mels"]
        self.n_in = self.bins * self.n_mels + 1
        self.bufs = [L[0] for L in layers]
        self.cfgs = [L[1] for L in layers]
        self.outs = [
            memoryview(buf)[cfg[_C_OUTOFF] : cfg[_C_OUTOFF] + cfg[_C_OUT]] for buf, cfg in layers
        ]
        self.table = table
        self.x = bytearray(self.n_in)  # the network's input: pooled frames + length

    def run(self, x=None):
        """Run the network on `self.x` (or x); returns the output bytes (a view, reused)."""
        x = self.x if x is None else x
        for i in range(len(self.bufs)):
            dense(x, self.bufs[i], 0, self.cfgs[i])
            x = self.outs[i]
        return x


def load_model(path):
    """Load `<name>.vcm` and its sidecar `<name>.json`, checking both.

    Raises:
        CommandModelError: wrong magic or version, truncated file, CRC mismatch, a layer
            that does not chain, a sidecar for another file or another front end.
    """
    side_path = path[:-4] + ".json" if path.endswith(".vcm") else path + ".json"
    try:
        with open(side_path) as f:
            side = json.load(f)
    except OSError:
        raise CommandModelError("%s: sidecar missing" % side_path) from None
    except ValueError as e:
        raise CommandModelError("%s: not JSON (%s)" % (side_path, e)) from None
    if side.get("format") != FORMAT_VERSION or side.get("kind") != "commands":
        raise CommandModelError(
            "%s: not a version %d command model sidecar" % (side_path, FORMAT_VERSION)
        )
    _check_frontend(side_path, side.get("frontend", {}))
    layers = []
    table = None
    try:
        f = open(path, "rb")
    except OSError:
        raise CommandModelError("%s: no such model file" % path) from None
    with f:
        head = _read(f, _HEAD, path, "header")
        crc = _crc32(head)
        magic, ver, n_layers, n_in, _, body_len = struct.unpack("<4sHHHHI", head)
        if magic != MAGIC:
            raise CommandModelError("%s: not a command model (magic %r)" % (path, magic))
        if ver != FORMAT_VERSION:
            raise CommandModelError(
                "%s: format version %d, firmware reads %d" % (path, ver, FORMAT_VERSION)
            )
        inp = side["input"]
        if n_in != inp["bins"] * inp["n_mels"] + 1:
            raise CommandModelError("%s: input size %d does not match the sidecar" % (path, n_in))
        prev = n_in
        for li in range(n_layers):
            lh = _read(f, _LHEAD, path, "layer %d" % li)
            crc = _crc32(lh, crc)
            n, nout, act, zi, zo, has_tab = struct.unpack("<HHBBBB", lh)
            if n != prev or nout == 0:
                raise CommandModelError(
                    "%s: layer %d takes %d inputs, previous gives %d" % (path, li, n, prev)
                )
            if zi != 0:
                raise CommandModelError(
                    "%s: layer %d input zero point %d (must be 0)" % (path, li, zi)
                )
            prev = nout
            woff = nout * 12
            ooff = woff + nout * n
            buf = bytearray(ooff + nout)
            mv = memoryview(buf)
            f.readinto(mv[woff:ooff])
            crc = _crc32(mv[woff:ooff], crc)
            prm = _read(f, nout * 8, path, "layer %d channels" % li)
            crc = _crc32(prm, crc)
            p32 = array.array("i", bytes(nout * 12))
            for o in range(nout):
                b, m, s, _ = struct.unpack_from("<iHBB", prm, o * 8)
                if not -_BIAS_OFFSET <= b < _BIAS_OFFSET or s > 30 or m >= 0x8000:
                    raise CommandModelError("%s: layer %d channel %d out of range" % (path, li, o))
                p32[3 * o] = b + _BIAS_OFFSET
                p32[3 * o + 1] = m
                p32[3 * o + 2] = s
            buf[0:woff] = bytes(p32)
            p32 = None  # type: ignore[assignment]
            # 32-bit safety: |bias| + 255 * 255 * n must stay below 2**31
            if n * 65025 + _BIAS_OFFSET >= 0x7FFFFFFF:
                raise CommandModelError("%s: layer %d too wide for 32-bit sums" % (path, li))
            if has_tab:
                table = _read(f, 256, path, "table")
                crc = _crc32(table, crc)
            cfg = array.array("i", [n, nout, zo, zo if act == 1 else 0, woff, ooff])
            layers.append((buf, cfg))
        want = struct.unpack("<I", _read(f, 4, path, "crc"))[0]
        if f.read(1):
            raise CommandModelError("%s: extra bytes after the CRC" % path)
    if want != (crc & 0xFFFFFFFF):
        raise CommandModelError("%s: CRC mismatch (file damaged)" % path)
    if side.get("model_crc32") != want:
        raise CommandModelError("%s: sidecar belongs to another model file" % side_path)
    if table is None or prev != side["layout"]["outputs"]:
        raise CommandModelError(
            "%s: %d outputs, sidecar layout has %d" % (path, prev, side["layout"]["outputs"])
        )
    return CommandModel(path, side, layers, table)


def _check_frontend(where, trained):
    from voicenode.dsp import params

    for k in trained:
        have = getattr(params, k, None)
        if have != trained[k]:
            raise CommandModelError(
                "%s: front-end parameter %s: model trained with %r, firmware has %r"
                % (where, k, trained[k], have)
            )


# --- recogniser -------------------------------------------------------------------------------


class Recognizer:
    """Listens after a wake word and decides on one command.

    Args:
        model: a `.vcm` path or a loaded `CommandModel`.
        cutoff_u8: override the model's cutoff (0..255).

    `reset()` opens a listening window; `step(frame)` returns None until the command is
    decided, then the result dict once (and `listening` becomes False). The result is
    `{"intent": name, "slots": {slot: value}, "score": p}` or, below the cutoff or without
    speech, `{"intent": "unknown", "slots": {}, "score": p, "reason": "low score"|"silence"}`.
    `frames_after_speech` tells how many frames after the last speech frame the decision came.
    """

    def __init__(self, model, cutoff_u8=None):
        self.model = m = load_model(model) if isinstance(model, str) else model
        v = m.side["vad"]
        self.vad = vad.Endpointer(
            v["threshold"],
            v["onset"],
            v["hangover"],
            v["max_frames"],
            v["preroll"],
            v["tail"],
            m.n_mels,
        )
        self.cutoff_u8 = m.cutoff_u8 if cutoff_u8 is None else cutoff_u8
        self.frames = bytearray(v["max_frames"] * m.n_mels)
        self._vs = self.vad.s
        self._pcfg = array.array("i", [0, 0, m.n_mels])
        self.listening = False
        self.best = 0  # index of the best intent
        self.conf = 0  # its probability (uint8)
        self.frames_after_speech = 0

    def reset(self):
        """Start a listening window (call on the wake event)."""
        self.vad.reset()
        self.listening = True

    def step(self, frame):
        """Feed one feature frame (n_mels bytes). None while listening; the result once.

        Kept tiny (the work is in the viper `_listen`): a bytecode method with a bigger
        frame would take it from the heap on every call.
        """
        if not self.listening:
            return None
        if _listen(frame, self.frames, self._vs) < vad.DONE:
            return None
        return self._done()

    def _done(self):
        v = self.vad
        self.listening = False
        if v.state == vad.SILENCE:
            return {"intent": UNKNOWN, "slots": {}, "score": 0.0, "reason": "silence"}
        self.frames_after_speech = v.n - 1 - v.last
        return self.decide(v.start, v.end)

    def features(self, start, end):
        """Fill the network input from frames [start, end) of the window (pooled + length)."""
        m = self.model
        self._pcfg[0] = start
        self._pcfg[1] = end
        pool(self.frames, m.x, m.bins, self._pcfg)
        L = (end - start) >> 1
        m.x[m.n_in - 1] = L if L < 255 else 255
        return m.x

    def decide(self, start, end):
        """Run the network on frames [start, end) and decode intent and slots."""
        m = self.model
        self.features(start, end)
        out = m.run()
        best, top = 0, -1
        for i in range(len(m.intents)):
            if out[i] > top:
                best, top = i, out[i]
        conf = m.table[top]
        self.best, self.conf = best, conf
        score = round(conf / 255, 3)
        if conf < self.cutoff_u8:
            return {"intent": UNKNOWN, "slots": {}, "score": score, "reason": "low score"}
        slots = {}
        for s in m.intent_slots[best]:
            off, values = m.slots[s]
            bi, bv = 0, -1
            for j in range(len(values)):
                if out[off + j] > bv:
                    bi, bv = j, out[off + j]
            slots[s] = values[bi]
        return {"intent": m.intents[best], "slots": slots, "score": score}
