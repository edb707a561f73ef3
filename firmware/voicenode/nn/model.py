"""Load a model (`<name>.vnm` + `<name>.json`) and run it one feature frame at a time.

    >>> from voicenode.nn import model
    >>> m = model.load("/models/hey_node.vnm")
    >>> p = m.step(frame)        # uint8 probability, or -1 between model steps

    >>> a = model.load("/models/phones.vnm", head="logits")    # a multi-channel head
    >>> if a.step(frame) >= 0:   # the step emitted: a.out holds out_ch uint8 logits
    ...     best = max(range(len(a.out)), key=lambda i: a.out[i])

Two heads: "sigmoid" (the default, a wake-word model: the last layer is one channel through
the logistic table, sidecar kind "wake" or none) and "logits" (sidecar kind "phones": the
last layer has activation none, no table and two or more channels, all read from `out`).

The loader refuses anything it cannot run exactly as trained, with a `ModelError` whose
message names the file and the problem: wrong magic or format version, a truncated file, a
checksum mismatch, impossible layer sizes, arithmetic that could overflow 32 bits, a sidecar
written for another file, or front-end parameters that differ from this firmware's
`voicenode.dsp.params` (must match training). Format: docs/MODEL_FORMAT.md.

All buffers are allocated here, once; `Model.step` allocates nothing. `load` is three steps
that can be taken apart: `prepare` (check and size), `Model.bind` (buffers) and `Model.fill`
(read the weights). Models that never run at the same time share memory with `share` and
take turns, each `fill` reading its weights back from the flash:

    >>> wake = prepare("/models/hey_node.vnm"); cmd = prepare("/models/cmd.vnm", head="logits")
    >>> blocks = share([[wake], [cmd]])     # about the larger model's buffers, not the sum
    >>> wake.fill()                          # ... wake.step(frame) ...
    >>> cmd.fill()                           # wake's weights are gone; cmd.step(frame) ...
"""

import array
import gc
import json
import struct

from micropython import const

from voicenode.crc import crc32 as _crc32

from . import kernels
from .kernels import run_layers

FORMAT_VERSION = const(1)
MAGIC = b"VNNM"
_HEADER = const(16)
_LAYER_HEAD = const(12)
_CHAN = const(8)  # a channel record in the file
_REC = const(8)  # a channel record in a layer's buffer: bias + 2**29, m << 8 | s
_CONV = const(1)
_DWCONV = const(2)
_DENSE = const(3)
_RELU = const(1)
_SIGMOID = const(2)
_NONE = const(0)
# layer meta tuple: kind, act, k, stride, dil, out_zp, in_ch, out_ch, then these
_M_PER = const(8)  # terms per sum = weights per output channel
_M_DATA = const(9)  # bytes after the layer head in the file
_M_SIZE = const(10)  # bytes of the layer's buffer


class ModelError(ValueError):
    """A model file or its sidecar cannot be used; the message says which and why."""


class Model:
    """One network: `step(frame)` feeds a feature frame, returns a probability or -1.

    Made in three steps (`load` does all three): `prepare` checks the file and its sidecar
    and sizes the layers, `bind` gives them their buffers, `fill` reads the weights into them.
    Models that never run at the same time can be bound to the same memory (`share`) and
    take turns: each `fill` reads its weights back from the flash, checked as they are read.

    Attributes: `name`, `head` ("sigmoid" or "logits"), `stride` (feature frames per model
    step), `outputs` (the last layer's channels), `path`, `crc` (the file's CRC-32),
    `sizes` (bytes of each layer's buffer), `out` (a memoryview of the last layer's output
    bytes, shared: valid until the next step; a logits head's out_ch logits, a sigmoid
    head's one probability; None before the first `fill`), `labels` (the sidecar's list of
    output names, or None).
    A wake model ("sigmoid") also has `word` (the wake phrase), `cutoff_u8`, `window`,
    `cooloff` (model steps); a logits model has None there.
    """

    def __init__(self, path, side, crc, sizes, strides, outputs, head="sigmoid"):
        self.path = path
        self.name = side["name"]
        self.head = head
        self.word = side.get("wake_phrase")
        self.cutoff_u8 = side.get("cutoff_u8")
        self.window = side.get("window")
        self.cooloff = side.get("cooloff")
        self.labels = side.get("labels")
        self.version = side.get("version", "")
        self.stride = strides
        self.outputs = outputs
        self.crc = crc  # the file's CRC-32: `fill` refuses a file that changed
        self.sizes = sizes
        self._n = len(sizes)
        self._buf = self._cfg = self._out = None
        self.out = None

    def bind(self, bufs=None):
        """Give the layers their buffers: `bufs`, one per layer, each at least `sizes[i]`
        bytes from a 4-byte aligned start (other models may use them between `fill`s, see
        `share`), or with None bytearrays of their own, made largest first so that a
        fragmented heap takes them.

        Raises:
            ModelError: not enough memory, or buffers that do not fit the layers.
        """
        sizes = self.sizes
        n = self._n
        if bufs is None:
            gc.collect()
            total = sum(sizes)
            if total > gc.mem_free():
                raise ModelError(
                    "%s: its buffers need %d bytes, %d free" % (self.path, total, gc.mem_free())
                )
            bufs = [None] * n
            try:
                for i in sorted(range(n), key=lambda i: -sizes[i]):
                    bufs[i] = bytearray(sizes[i])  # type: ignore[call-overload]
            except MemoryError:
                bufs = None
                gc.collect()
                raise ModelError(
                    "%s: not enough contiguous heap for its %d bytes of buffers"
                    % (self.path, total)
                ) from None
            self._buf = bufs
        elif len(bufs) != n or [i for i in range(n) if len(bufs[i]) < sizes[i]]:
            raise ModelError("%s: the buffers given do not fit its layers" % self.path)
        else:  # blocks longer than the layer are fine: the layer's offsets stay inside
            self._buf = list(bufs)
        self._cfg = [array.array("i", bytes(4 * kernels.CFG_LEN)) for _ in range(n)]
        self._out = None
        self.out = None

    def fill(self):
        """Read the weights from the file into the buffers (`bind` first) and reset.

        The file is checked as it is read: its header and layer sizes must be the ones
        `prepare` saw, the arithmetic must fit 32 bits, and the CRC-32 at its end must match.

        Raises:
            ModelError: the file changed, is corrupt or cannot be read; the buffers then
                hold no usable model.
        """
        vnm = self.path
        try:
            f = open(vnm, "rb")
        except OSError as e:
            raise ModelError("%s: cannot open (%s)" % (vnm, e)) from None
        with f:
            try:
                self._read(f)
            except (OSError, MemoryError) as e:  # a flash read error, or no heap left for it
                raise ModelError("%s: read failed (%s)" % (vnm, e)) from None
        if self._out is None:
            # Views of each layer's output bytes (the next layer's input), made once.
            bufs, cfgs = self._buf, self._cfg
            self._out = [
                memoryview(bufs[i])[  # type: ignore[index]
                    cfgs[i][kernels.CFG_OUTOFF] : cfgs[i][kernels.CFG_OUTOFF]  # type: ignore[index]
                    + cfgs[i][kernels.CFG_OUT]  # type: ignore[index]
                ]
                for i in range(self._n)
            ]
            # The last layer's output bytes: a view into its buffer, rewritten by every
            # step that emits (read it before the next step).
            self.out = self._out[-1]
        self.reset()

    def _read(self, f):
        # `fill`'s reading: every layer into its buffer, the CRC continued as it goes.
        vnm = self.path
        hdr = f.read(_HEADER)
        if len(hdr) != _HEADER:
            raise ModelError("%s: the file changed since it was checked" % vnm)
        _, _, _, n_in, zp, _, _ = struct.unpack("<4sHHHBBI", hdr)
        crc = _crc32(hdr)
        hb = bytearray(_LAYER_HEAD)
        chan = None
        for i in range(self._n):
            where = "%s: layer %d" % (vnm, i)
            if f.readinto(hb) != _LAYER_HEAD:
                raise ModelError("%s runs past the end" % where)
            crc = _crc32(hb, crc)
            meta = _layer_meta(hb, where, i == self._n - 1, zp, n_in, self.head)
            if meta[_M_SIZE] != self.sizes[i]:
                raise ModelError("%s: the file changed since it was checked" % vnm)
            if chan is None or len(chan) < _CHAN * meta[7]:
                chan = bytearray(_CHAN * meta[7])
            crc = _fill(f, where, meta, zp, self._buf[i], self._cfg[i], chan, crc)  # type: ignore[index]
            zp = meta[5]
            n_in = meta[7]
        tail = f.read(4)
        if len(tail) != 4 or struct.unpack("<I", tail)[0] != crc:
            raise ModelError("%s: checksum mismatch (corrupt file)" % vnm)
        if crc != self.crc:
            raise ModelError("%s: the file changed since it was checked" % vnm)

    def reset(self):
        """Forget all history (rings back to the input zero points, stride counters to 0)."""
        for i in range(self._n):
            cfg = self._cfg[i]  # type: ignore[index]
            buf = self._buf[i]  # type: ignore[index]
            zi = cfg[kernels.CFG_ZI]
            ring = cfg[kernels.CFG_RING]
            if cfg[kernels.CFG_K] > 1:
                kernels.fill_u8(buf, ring, cfg[kernels.CFG_SPAN] * cfg[kernels.CFG_IN], zi)
            cfg[kernels.CFG_WPOS] = 0
            cfg[kernels.CFG_PHASE] = 0

    def step(self, frame):
        """Feed one feature frame (N_MELS bytes); return the probability 0..255 or -1.

        Returns -1 when the network has not completed a model step (between strides). A
        logits head returns its first logit (0..255) when it emitted: read all of them from
        `out` (a view, overwritten by the next emitting step). Allocates nothing.
        """
        return run_layers(frame, self._buf, self._cfg, self._out)

    def layer_output(self, i):
        """The newest output of layer i (a view into the layer's buffer, valid until the next step)."""
        return self._out[i]  # type: ignore[index]


def share(groups):
    """Bind groups of models that take turns (the wake words, the command network) to the
    same memory: block i holds the i-th largest layer of whichever group runs, so the
    blocks take sum(max over groups) bytes, about the larger group's, in pieces a fragmented
    heap can still give. The groups then take turns with `fill` (each leaves the others'
    weights unusable until their own next `fill`). Returns the blocks.

    Raises:
        MemoryError: the heap cannot give the blocks (no model is bound then).
    """
    ranked = []
    for models in groups:
        layers = []
        for m in models:
            for j in range(len(m.sizes)):
                layers.append((m.sizes[j], m, j))
        layers.sort(key=lambda x: -x[0])
        ranked.append(layers)
    n = max(len(r) for r in ranked)
    sizes = [max(r[i][0] for r in ranked if i < len(r)) for i in range(n)]
    blocks = [bytearray((s + 3) & ~3) for s in sizes]  # largest first
    for layers in ranked:
        bufs = {}
        for i in range(len(layers)):
            _, m, j = layers[i]
            if m not in bufs:
                bufs[m] = [None] * len(m.sizes)
            bufs[m][j] = blocks[i]  # type: ignore[call-overload]
        for m in bufs:
            m.bind(bufs[m])
    return blocks


def firmware_frontend():
    """The must-match front-end parameters of this firmware: {NAME: value} from dsp.params."""
    from voicenode.dsp import params

    out = {}
    for name in dir(params):
        if name.isupper() and not name.startswith("_"):
            out[name] = getattr(params, name)
    return out


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return False
        for i in range(len(a)):
            if not _same(a[i], b[i]):
                return False
        return True
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa = float(a)
            return abs(fa - float(b)) <= 1e-6 * max(1.0, abs(fa))
        except (TypeError, ValueError):
            return False
    return a == b


def check_frontend(trained, current, where):
    """Raise ModelError if a front-end parameter recorded by training differs from `current`."""
    if not isinstance(trained, dict):
        raise ModelError("%s: 'frontend' must be an object of parameters" % where)
    for key in current:
        if key not in trained:
            raise ModelError("%s: front-end parameter %s not recorded in the model" % (where, key))
    for key in trained:
        if key not in current:
            raise ModelError(
                "%s: model trained with front-end parameter %s=%r, unknown to this firmware"
                % (where, key, trained[key])
            )
        if not _same(trained[key], current[key]):
            raise ModelError(
                "%s: front-end parameter %s: model trained with %r, firmware has %r"
                % (where, key, trained[key], current[key])
            )


_WAKE_KEYS = ("wake_phrase", "cutoff_u8", "window", "cooloff")
_COMMON_KEYS = ("format", "name", "input", "model_crc32", "frontend", "heap_bytes")


def _read_sidecar(path, crc, in_zp, n_in, frontend, head):
    try:
        with open(path) as f:
            side = json.load(f)
    except OSError:
        raise ModelError("%s: sidecar missing (a model needs its .json)" % path) from None
    except ValueError:
        raise ModelError("%s: sidecar is not valid JSON" % path) from None
    if not isinstance(side, dict):
        raise ModelError("%s: sidecar is not a JSON object" % path)
    # The sidecar's kind says which head the network has: a wake-word model ("wake", or no
    # kind: the models made before there were two heads) or a phone model ("phones").
    kind = side.get("kind", "wake")
    if head == "sigmoid" and kind != "wake":
        raise ModelError(
            "%s: sidecar kind %r is not a wake-word model (load it with head='logits')"
            % (path, kind)
        )
    if head == "logits" and kind != "phones":
        raise ModelError(
            "%s: sidecar kind %r: a logits head needs a 'phones' model, not a wake-word model"
            % (path, kind)
        )
    for key in _COMMON_KEYS + (_WAKE_KEYS if head == "sigmoid" else ()):
        if key not in side:
            raise ModelError("%s: sidecar lacks %r" % (path, key))
    if side["format"] != FORMAT_VERSION:
        raise ModelError(
            "%s: sidecar format %r, expected %d" % (path, side["format"], FORMAT_VERSION)
        )
    if side["model_crc32"] != crc:
        raise ModelError("%s: sidecar was written for another model file (checksum differs)" % path)
    for key, kind in (("name", str), ("input", dict), ("heap_bytes", int)):
        if not isinstance(side[key], kind):
            raise ModelError("%s: sidecar %r has the wrong type" % (path, key))
    inp = side["input"]
    if inp.get("zero_point") != in_zp or inp.get("n_mels") != n_in:
        raise ModelError(
            "%s: input zero point %r / n_mels %r do not match the model (%d, %d)"
            % (path, inp.get("zero_point"), inp.get("n_mels"), in_zp, n_in)
        )
    if head == "sigmoid":
        if not (isinstance(side["cutoff_u8"], int) and 0 < side["cutoff_u8"] < 256):
            raise ModelError("%s: cutoff_u8 must be 1..255" % path)
        if not (isinstance(side["window"], int) and 0 < side["window"] < 256):
            raise ModelError("%s: window must be 1..255 model steps" % path)
        if not (isinstance(side["cooloff"], int) and side["cooloff"] >= 0):
            raise ModelError("%s: cooloff must be >= 0 model steps" % path)
    labels = side.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or [x for x in labels if not isinstance(x, str)]:
            raise ModelError("%s: sidecar 'labels' must be a list of strings" % path)
    if frontend is None:
        try:
            frontend = firmware_frontend()
        except ImportError:
            raise ModelError(
                "%s: this firmware has no voicenode.dsp.params to check against" % path
            ) from None
    check_frontend(side["frontend"], frontend, path)
    if "N_MELS" in frontend and frontend["N_MELS"] != n_in:
        raise ModelError(
            "%s: the model reads %d bands, the front end gives %r"
            % (path, n_in, frontend["N_MELS"])
        )
    return side


def load(path, frontend=None, check_heap=True, head="sigmoid"):
    """Load `<name>.vnm` and its `<name>.json` sidecar; return a `Model` ready to step.

    `prepare`, then `Model.bind()` (buffers of its own) and `Model.fill()`.

    Args:
        path: the .vnm path (the sidecar is the same path with .json).
        frontend: {NAME: value} the sidecar's front-end parameters must equal; None takes
            this firmware's `voicenode.dsp.params`.
        check_heap: refuse the model if the sidecar's heap_bytes exceed gc.mem_free().
        head: "sigmoid" (a wake-word model: the last layer is one sigmoid channel, sidecar
            kind "wake") or "logits" (sidecar kind "phones": the last layer has activation
            none, no table and >= 2 channels, read from `Model.out` after a step).

    Raises:
        ModelError: with a message naming the file and the problem.
    """
    m = prepare(path, frontend, head, check_heap)
    m.bind()
    m.fill()
    return m


def prepare(path, frontend=None, head="sigmoid", check_heap=False):
    """Check `<name>.vnm` and its sidecar and size its layers: a `Model` without buffers
    (`bind` and `fill` it; `sizes` says how much memory its layers take). Arguments as `load`.

    Raises:
        ModelError: with a message naming the file and the problem.
    """
    base = path[:-4] if path.endswith(".vnm") else path
    vnm = base + ".vnm"
    if head not in ("sigmoid", "logits"):
        raise ModelError("%s: unknown head %r (sigmoid or logits)" % (vnm, head))
    try:
        f = open(vnm, "rb")
    except OSError as e:
        raise ModelError("%s: cannot open (%s)" % (vnm, e)) from None
    with f:
        hdr = f.read(_HEADER)
        if len(hdr) < _HEADER:
            raise ModelError("%s: %d bytes is too short for a model" % (vnm, len(hdr)))
        magic, version, n_layers, n_in, in_zp, _, body_len = struct.unpack("<4sHHHBBI", hdr)
        if magic != MAGIC:
            raise ModelError("%s: not a voicenode model (magic %r)" % (vnm, magic))
        if version != FORMAT_VERSION:
            raise ModelError(
                "%s: format version %d, this firmware reads %d" % (vnm, version, FORMAT_VERSION)
            )
        size = f.seek(0, 2)
        if size != _HEADER + body_len + 4:
            raise ModelError(
                "%s: %d bytes, the header says %d (truncated or padded)"
                % (vnm, size, _HEADER + body_len + 4)
            )
        # Checksum first: nothing is parsed from a corrupt file.
        f.seek(0)
        buf = bytearray(256)
        mv = memoryview(buf)
        crc = 0
        left = size - 4
        while left:
            n = f.readinto(mv[: min(256, left)])
            if not n:
                raise ModelError("%s: read failed" % vnm)
            crc = _crc32(mv[:n], crc)
            left -= n
        (stored,) = struct.unpack("<I", f.read(4))
        if crc != stored:
            raise ModelError("%s: checksum mismatch (corrupt file)" % vnm)
        side = _read_sidecar(base + ".json", stored, in_zp, n_in, frontend, head)
        del buf, mv
        if check_heap:
            gc.collect()
            need = side["heap_bytes"]
            if need > gc.mem_free():
                raise ModelError("%s: needs %d bytes of heap, %d free" % (vnm, need, gc.mem_free()))
        # Every layer's shape (headers only): the sizes of the buffers, checked chaining.
        sizes = []
        strides = 1
        last = None
        hb = bytearray(_LAYER_HEAD)
        zp = in_zp
        prev_out = n_in
        pos = _HEADER
        for i in range(n_layers):
            f.seek(pos)
            if f.readinto(hb) != _LAYER_HEAD:
                raise ModelError("%s: layer %d runs past the end" % (vnm, i))
            where = "%s: layer %d" % (vnm, i)
            meta = _layer_meta(hb, where, i == n_layers - 1, zp, prev_out, head)
            sizes.append(meta[_M_SIZE])
            strides *= meta[3]
            last = meta
            zp = meta[5]
            prev_out = meta[7]
            pos += _LAYER_HEAD + meta[_M_DATA]
            if pos > size - 4:
                raise ModelError("%s: layer %d runs past the end" % (vnm, i))
        if pos != size - 4:
            raise ModelError("%s: %d stray bytes after the layers" % (vnm, size - 4 - pos))
        if last is None:
            raise ModelError("%s: no layers" % vnm)
        labels = side.get("labels")
        if labels is not None and len(labels) != last[7]:
            raise ModelError(
                "%s: sidecar names %d labels for %d outputs" % (vnm, len(labels), last[7])
            )
    return Model(vnm, side, stored, tuple(sizes), strides, last[7], head)


def _layer_meta(hb, where, last, in_zp, in_expected, head="sigmoid"):
    kind, act, k, stride, dil, out_zp, in_ch, out_ch, _ = struct.unpack("<BBBBBBHHH", hb)
    if kind not in (_CONV, _DWCONV, _DENSE) or act > _SIGMOID:
        raise ModelError("%s: unknown kind %d or activation %d" % (where, kind, act))
    if in_ch != in_expected:
        raise ModelError("%s: %d inputs, the previous layer gives %d" % (where, in_ch, in_expected))
    if not (k and stride and dil and out_ch):
        raise ModelError("%s: zero kernel, stride, dilation or width" % where)
    if kind == _DENSE and k != 1:
        raise ModelError("%s: dense layer with kernel %d" % (where, k))
    if kind == _DWCONV and in_ch != out_ch:
        raise ModelError("%s: depthwise layer with %d inputs, %d outputs" % (where, in_ch, out_ch))
    if head == "logits":
        if act == _SIGMOID:
            raise ModelError("%s: a sigmoid layer in a logits model" % where)
        if last and (act != _NONE or out_ch < 2):
            raise ModelError(
                "%s: the last layer of a logits model must have activation none and at least"
                " 2 channels (has activation %d, %d channels)" % (where, act, out_ch)
            )
    elif (act == _SIGMOID) != last or (last and out_ch != 1):
        raise ModelError("%s: the last layer (only) must be a one-channel sigmoid" % where)
    per = k if kind == _DWCONV else k * in_ch
    tab = 256 if act == _SIGMOID else 0
    data = per * out_ch + _CHAN * out_ch + tab
    span = (k - 1) * dil + 1
    # the layer's buffer (layout in kernels.py): channel records, weights, table, outputs,
    # the ring of the last span inputs, the gather window of a dilated conv
    size = _REC * out_ch + per * out_ch + tab + out_ch
    if k > 1:
        size += span * in_ch
        if kind != _DWCONV and dil > 1:
            size += k * in_ch
    return kind, act, k, stride, dil, out_zp, in_ch, out_ch, per, data, size


def _fill(f, where, meta, in_zp, buf, cfg, chan, crc):
    # Read one layer's data (the file is positioned after its head) into buf; set up cfg.
    # Returns `crc` continued over the bytes read.
    kind, act, k, stride, dil, out_zp, in_ch, out_ch, per, _, size = meta
    nw = per * out_ch
    woff = _REC * out_ch
    tab = 256 if act == _SIGMOID else 0
    span = (k - 1) * dil + 1
    outoff = woff + nw + tab
    ring = outoff + out_ch
    win = ring + (span * in_ch if k > 1 else 0)
    mv = memoryview(buf)
    if f.readinto(mv[woff : woff + nw]) != nw:
        raise ModelError("%s runs past the end" % where)
    crc = _crc32(mv[woff : woff + nw], crc)
    kernels.xor80(buf, woff, nw)  # int8 -> w + 128, to sum the weights
    cv = memoryview(chan)[: _CHAN * out_ch]
    if f.readinto(cv) != _CHAN * out_ch:
        raise ModelError("%s runs past the end" % where)
    crc = _crc32(cv, crc)
    cfg[kernels.CFG_KIND] = kind
    cfg[kernels.CFG_ACT] = act
    cfg[kernels.CFG_K] = k
    cfg[kernels.CFG_STRIDE] = stride
    cfg[kernels.CFG_DIL] = dil
    cfg[kernels.CFG_IN] = in_ch
    cfg[kernels.CFG_OUT] = out_ch
    cfg[kernels.CFG_SPAN] = span
    cfg[kernels.CFG_ZO] = out_zp
    cfg[kernels.CFG_LO] = out_zp if act == _RELU else 0
    cfg[kernels.CFG_RING] = ring
    cfg[kernels.CFG_WIN] = win if size > win else 0
    cfg[kernels.CFG_W] = woff
    cfg[kernels.CFG_TAB] = woff + nw if tab else 0
    cfg[kernels.CFG_ZI] = in_zp
    cfg[kernels.CFG_OUTOFF] = outoff
    bad = kernels.records(buf, chan, cfg)  # reads kind, k, in, out, zi, w
    if bad:
        o = bad & 0xFFFF
        if bad >> 16 == kernels.REC_BIAS:
            raise ModelError("%s: channel %d bias too large for 32-bit arithmetic" % (where, o))
        if bad >> 16 == kernels.REC_TERMS:
            raise ModelError("%s: %d terms could overflow a 32-bit accumulator" % (where, per))
        m, s = struct.unpack_from("<HB", chan, _CHAN * o + 4)
        raise ModelError(
            "%s: channel %d requantisation out of range (m %d, s %d)" % (where, o, m, s)
        )
    if kind == _DWCONV:  # depthwise kernels read signed int8 weights
        kernels.xor80(buf, woff, nw)
    if tab:
        if f.readinto(mv[woff + nw : outoff]) != tab:
            raise ModelError("%s runs past the end" % where)
        crc = _crc32(mv[woff + nw : outoff], crc)
    return crc
