"""Numpy twin of the on-chip int8 streaming network (`firmware/voicenode/nn/`).

This module is the host API for models:

* :class:`FloatLayer` describes one trained layer (what a torch model is converted to),
  :func:`float_stream` runs a list of them in float with exactly the streaming semantics the
  chip uses, so a converted torch model can be checked against it.
* :func:`quantize` turns float layers plus calibration features into a :class:`QuantModel`
  (int8 weights per output channel, int32 biases, uint8 activations with zero points,
  fixed-point requantisation, a 256-entry logistic table at the end).
* :meth:`QuantModel.save` / :meth:`QuantModel.load` write and read ``<name>.vnm`` and its
  ``<name>.json`` sidecar (format: ``docs/MODEL_FORMAT.md``).
* :meth:`QuantModel.stream` gives the uint8 probability of every model step, vectorised over
  time and bit-exact with ``voicenode.nn.model.Model.step`` on the chip.

Streaming semantics (float and int alike). A layer with kernel ``k``, dilation ``d`` and stride
``s`` reads its input sequence ``x[n]`` (one vector of ``in_ch`` values per input step) and
emits output ``m`` after input step ``e = m*s + s - 1``::

    y[m] = act(b + sum_j W[:, j, :] @ x[e - (k - 1 - j) * d])     x[n < 0] = 0 (real zero)

so tap ``j = 0`` is the oldest input and ``j = k - 1`` the newest (the torch ``Conv1d`` tap
order). A depthwise layer does the same per channel.

Two heads. ``"sigmoid"`` (a wake-word model, sidecar kind ``"wake"``): the last layer has one
output channel and a logistic activation; its uint8 output is the probability (0..255) of
that model step. ``"logits"`` (sidecar kind ``"phones"``): the last layer has activation
``"none"`` and two or more channels, all of which are the model step's uint8 output.

Integer arithmetic (identical on the chip, every intermediate within signed 32 bits)::

    acc = bias[o] + sum_i w[o, i] * (x[i] - x_zp)           # int8 w, uint8 x, int32 bias
    hi, lo = acc >> 16, acc & 0xFFFF
    t = hi * m[o] + ((lo * m[o]) >> 16)                    # = floor(acc * m / 2**16)
    y = clip(y_zp + ((t + ((1 << s[o]) >> 1)) >> s[o]), y_zp if relu else 0, 255)
    prob = table[y]                                        # logistic layer only

with ``0 <= m < 2**15`` and ``0 <= s <= 30`` (real multiplier ``m / 2**(16 + s)``).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: First four bytes of a ``.vnm`` file.
MAGIC = b"VNNM"
#: Version of the ``.vnm`` layout and of the sidecar schema written by this module.
FORMAT_VERSION = 1

KIND_CONV, KIND_DWCONV, KIND_DENSE = 1, 2, 3
KINDS = {"conv": KIND_CONV, "dwconv": KIND_DWCONV, "dense": KIND_DENSE}
ACT_NONE, ACT_RELU, ACT_SIGMOID = 0, 1, 2
ACTS = {"none": ACT_NONE, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID}

_HEADER = struct.Struct("<4sHHHBBI")  # magic, version, n_layers, n_in, input_zp, 0, body_len
_LAYER = struct.Struct("<BBBBBBHHH")  # kind, act, k, stride, dilation, out_zp, in_ch, out_ch, 0
_CHAN = struct.Struct("<iHBB")  # bias, multiplier, shift, 0

#: Largest accumulator the chip may see (signed 32 bits, with room for the bias offset).
ACC_LIMIT = 1 << 31
#: Biases (after folding the input zero point) must stay below this in magnitude: the chip
#: stores them offset by 2**29 so that ptr32 loads are never negative (a ptr32 load is
#: zero-extended on the 64-bit Unix port) and the offset is a small int on the chip.
BIAS_LIMIT = 1 << 29
#: Bytes of heap the loader needs per layer on top of its buffers (objects, views, cfg) and
#: per model, measured with gc.mem_alloc() on the 64-bit Unix port (the 32-bit chip needs
#: less); buffers are counted in 16-byte heap blocks.
LAYER_OVERHEAD = 448
MODEL_OVERHEAD = 640

#: Sidecar keys that the caller of :meth:`QuantModel.save` must give (wake-word model).
REQUIRED_SIDECAR = ("name", "wake_phrase", "cutoff", "window", "cooloff", "frontend")
#: The same for a model with a logits head.
REQUIRED_PHONES_SIDECAR = ("name", "frontend")
#: The two heads and the sidecar ``kind`` that goes with each.
HEADS = {"sigmoid": "wake", "logits": "phones"}


class ModelFormatError(ValueError):
    """A ``.vnm`` file or its sidecar is malformed (the message says what and where)."""


# --------------------------------------------------------------------------------------------
# Float layers and their streaming forward pass


@dataclass
class FloatLayer:
    """One trained layer, in torch weight layout.

    Attributes:
        kind: ``"conv"`` (Conv1d over time), ``"dwconv"`` (depthwise Conv1d) or ``"dense"``
            (pointwise / Linear, kernel 1).
        weights: ``conv``: ``(out_ch, in_ch, k)`` as ``torch.nn.Conv1d.weight``;
            ``dwconv``: ``(ch, 1, k)`` or ``(ch, k)``; ``dense``: ``(out_ch, in_ch)`` as
            ``torch.nn.Linear.weight``.
        bias: ``(out_ch,)`` or ``None`` (zeros).
        stride: emit every ``stride``-th input step.
        dilation: spacing of the taps, in input steps.
        activation: ``"relu"``, ``"none"`` or ``"sigmoid"`` (last layer only, one output
            channel: the wake-word probability). A logits head ends in a ``"none"`` layer of
            two or more channels.
    """

    kind: str
    weights: np.ndarray
    bias: np.ndarray | None = None
    stride: int = 1
    dilation: int = 1
    activation: str = "relu"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r} (one of {sorted(KINDS)})")
        if self.activation not in ACTS:
            raise ValueError(f"unknown activation {self.activation!r} (one of {sorted(ACTS)})")
        w = np.asarray(self.weights, dtype=np.float64)
        if self.kind == "conv":
            if w.ndim != 3:
                raise ValueError(f"conv weights must be (out_ch, in_ch, k), got {w.shape}")
            w = w.transpose(0, 2, 1)  # -> (out, k, in): time-major, as the chip gathers taps
        elif self.kind == "dwconv":
            if w.ndim == 3 and w.shape[1] == 1:
                w = w[:, 0, :]
            if w.ndim != 2:
                raise ValueError(f"dwconv weights must be (ch, 1, k) or (ch, k), got {w.shape}")
        else:
            if w.ndim != 2:
                raise ValueError(f"dense weights must be (out_ch, in_ch), got {w.shape}")
            w = w[:, None, :]  # -> (out, 1, in)
        self.w = w  # internal layout: conv/dense (out, k, in); dwconv (ch, k)
        self.b = np.zeros(self.out_ch) if self.bias is None else np.asarray(self.bias, np.float64)
        if self.b.shape != (self.out_ch,):
            raise ValueError(f"bias must have shape ({self.out_ch},), got {self.b.shape}")
        if not (1 <= self.k <= 255 and 1 <= self.stride <= 255 and 1 <= self.dilation <= 255):
            raise ValueError("kernel, stride and dilation must be 1..255")

    @property
    def k(self) -> int:
        return self.w.shape[1]

    @property
    def in_ch(self) -> int:
        return self.w.shape[0] if self.kind == "dwconv" else self.w.shape[2]

    @property
    def out_ch(self) -> int:
        return self.w.shape[0]


def _windows(x: np.ndarray, k: int, d: int, s: int, pad_value) -> np.ndarray:
    """Taps of every emitted step: ``(steps, k, ch)``, oldest tap first, left-padded."""
    t = x.shape[0]
    p = (k - 1) * d
    xp = np.concatenate([np.full((p, x.shape[1]), pad_value, dtype=x.dtype), x], axis=0)
    ends = np.arange(s - 1, t, s) + p  # index of the newest tap in xp
    taps = ends[:, None] - (k - 1 - np.arange(k))[None, :] * d
    return xp[taps]


def float_layer_forward(layer: FloatLayer, x: np.ndarray) -> np.ndarray:
    """Run one float layer over a whole sequence ``x`` (steps, in_ch) -> (steps', out_ch)."""
    win = _windows(np.asarray(x, np.float64), layer.k, layer.dilation, layer.stride, 0.0)
    if layer.kind == "dwconv":
        y = np.einsum("tkc,ck->tc", win, layer.w) + layer.b
    else:
        y = np.einsum("tkc,okc->to", win, layer.w) + layer.b
    if layer.activation == "relu":
        y = np.maximum(y, 0.0)
    return y


def float_stream(layers: list[FloatLayer], x: np.ndarray, logits: bool = False) -> np.ndarray:
    """Float forward pass with the chip's streaming semantics.

    Args:
        layers: the network, first layer first.
        x: float input features ``(steps, n_mels)``, i.e. ``(uint8 - zero_point) * scale``.
        logits: return the last layer's pre-sigmoid output instead of probabilities.

    Returns:
        ``(model_steps,)`` probabilities (or logits) of the last layer's single channel, or
        ``(model_steps, out_ch)`` outputs if the last layer has several channels (a logits
        head).
    """
    h = np.asarray(x, np.float64)
    for layer in layers:
        h = float_layer_forward(layer, h)
    if layers[-1].out_ch > 1:
        if layers[-1].activation == "sigmoid":
            raise ValueError("a sigmoid last layer must have one channel")
        return h
    out = h[:, 0]
    if layers[-1].activation == "sigmoid" and not logits:
        return 1.0 / (1.0 + np.exp(-out))
    return out


def model_stride(layers) -> int:
    """Input steps (feature frames) per model step: the product of the strides."""
    return int(np.prod([layer.stride for layer in layers]))


# --------------------------------------------------------------------------------------------
# Fixed-point helpers (the exact integer arithmetic of the chip)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Fixed-point form ``(m, s)`` of a real multiplier: ``real ~= m / 2**(16 + s)``.

    ``m`` is below ``2**15`` (normalised to ``[2**14, 2**15)`` when the range allows) and
    ``0 <= s <= 30``, so every intermediate of :func:`requantize` fits in signed 32 bits.

    Raises:
        ValueError: ``real >= 0.5`` (raise the output scale instead) or negative.
    """
    if real < 0:
        raise ValueError(f"negative multiplier {real}")
    if real == 0:
        return 0, 0
    f, e = math.frexp(real)  # real = f * 2**e, 0.5 <= f < 1
    m = int(round(f * (1 << 15)))
    s = -1 - e
    if m == 1 << 15:
        m >>= 1
        s -= 1
    if s < 0:
        raise ValueError(f"multiplier {real:g} >= 0.5: the output scale is too small")
    if s > 30:
        m = int(round(real * 2.0**46))
        s = 30
    return m, s


def requantize(acc, m, s, zp: int, lo: int) -> np.ndarray:
    """Fixed-point rescale of int32 accumulators to uint8, exactly as the chip does it.

    Args:
        acc: accumulators (any int array, broadcast with ``m`` and ``s``).
        m, s: per-channel multiplier and shift from :func:`quantize_multiplier`.
        zp: output zero point.
        lo: lower clamp (``zp`` after a ReLU, else 0); the upper clamp is 255.
    """
    acc = np.asarray(acc, np.int64)
    m = np.asarray(m, np.int64)
    s = np.asarray(s, np.int64)
    t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
    v = zp + ((t + ((1 << s) >> 1)) >> s)
    return np.clip(v, lo, 255).astype(np.uint8)


def choose_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 scale and zero point covering ``[lo, hi]`` (which is widened to 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    scale = (hi - lo) / 255.0
    zp = int(round(-lo / scale))
    return scale, min(max(zp, 0), 255)


def logistic_table(scale: float, zp: int) -> np.ndarray:
    """The 256-entry uint8 table: ``round(255 * sigmoid(scale * (q - zp)))``."""
    q = np.arange(256, dtype=np.float64)
    return np.clip(np.round(255.0 / (1.0 + np.exp(-scale * (q - zp)))), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The quantised model


@dataclass
class QuantLayer:
    """One int8 layer as stored in a ``.vnm`` file.

    ``weights`` is int8 ``(out_ch, k, in_ch)`` for conv/dense and ``(ch, k)`` for dwconv;
    ``bias`` int32 per output channel (in units of ``in_scale * w_scale``, input zero point
    *not* folded in); ``mult``/``shift`` from :func:`quantize_multiplier`; ``table`` the
    logistic table of a sigmoid layer. ``out_scale`` is informational (not stored).
    """

    kind: int
    act: int
    k: int
    stride: int
    dilation: int
    in_ch: int
    out_ch: int
    in_zp: int
    out_zp: int
    weights: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    table: np.ndarray | None = None
    out_scale: float = 0.0

    @property
    def macs(self) -> int:
        """Multiply-accumulates per emitted step."""
        return int(self.weights.size)

    @property
    def span(self) -> int:
        """Input steps the layer remembers: ``(k - 1) * dilation + 1``."""
        return (self.k - 1) * self.dilation + 1

    def folded_bias(self) -> np.ndarray:
        """Bias with the input zero point folded in: ``bias - in_zp * sum(w)``."""
        axis = tuple(range(1, self.weights.ndim))
        return self.bias.astype(np.int64) - self.in_zp * self.weights.astype(np.int64).sum(axis)

    def check(self, where: str = "") -> None:
        """Raise :class:`ModelFormatError` if the chip could overflow or misread this layer."""
        w = self.weights.astype(np.int64)
        if self.kind == KIND_DWCONV:
            if self.in_ch != self.out_ch or w.shape != (self.out_ch, self.k):
                raise ModelFormatError(f"{where}depthwise weights shape {w.shape} mismatch")
            n_terms = self.k
        else:
            if w.shape != (self.out_ch, self.k, self.in_ch):
                raise ModelFormatError(f"{where}weights shape {w.shape} mismatch")
            n_terms = self.k * self.in_ch
        if self.kind == KIND_DENSE and self.k != 1:
            raise ModelFormatError(f"{where}dense layer with kernel {self.k}")
        fb = self.folded_bias()
        if np.any(np.abs(fb) >= BIAS_LIMIT):
            raise ModelFormatError(
                f"{where}bias too large for the chip (|bias - zp*sum(w)| >= 2**29)"
            )
        # The chip sums unsigned (w + 128) * x products onto the bias, then subtracts 128 * sum x.
        if np.max(np.abs(fb)) + 255 * 255 * n_terms >= ACC_LIMIT:
            raise ModelFormatError(f"{where}{n_terms} terms could overflow a 32-bit accumulator")
        if np.any(self.mult < 0) or np.any(self.mult >= 1 << 15):
            raise ModelFormatError(f"{where}multiplier outside 0..32767")
        if np.any(self.shift < 0) or np.any(self.shift > 30):
            raise ModelFormatError(f"{where}shift outside 0..30")
        if (self.act == ACT_SIGMOID) != (self.table is not None):
            raise ModelFormatError(f"{where}a logistic table goes with a sigmoid layer only")

    def stream(self, x: np.ndarray) -> np.ndarray:
        """Integer forward pass over a whole uint8 sequence ``(steps, in_ch)``."""
        win = _windows(np.asarray(x, np.uint8), self.k, self.dilation, self.stride, self.in_zp)
        win = win.astype(np.int64) - self.in_zp
        if self.kind == KIND_DWCONV:
            acc = np.einsum("tkc,ck->tc", win, self.weights.astype(np.int64))
        else:
            acc = np.einsum("tkc,okc->to", win, self.weights.astype(np.int64))
        acc = acc + self.bias.astype(np.int64)
        lo = self.out_zp if self.act == ACT_RELU else 0
        y = requantize(acc, self.mult, self.shift, self.out_zp, lo)
        if self.table is not None:
            y = self.table[y]
        return y


@dataclass
class QuantModel:
    """An int8 streaming network (wake word or logits head), bit-exact with the chip.

    Attributes:
        layers: the quantised layers, first first.
        input_scale, input_zp: what a uint8 feature means: ``(q - input_zp) * input_scale``.
        sidecar: the JSON sidecar (filled by :meth:`load`, written by :meth:`save`).
        head: ``"sigmoid"`` (a wake-word model: one logistic output channel, sidecar kind
            ``"wake"``) or ``"logits"`` (last layer activation none, >= 2 channels, no
            table, sidecar kind ``"phones"``).
    """

    layers: list[QuantLayer]
    input_scale: float = 1.0
    input_zp: int = 0
    sidecar: dict = field(default_factory=dict)
    #: CRC-32 stored in the file this model was read from (None if built in memory).
    file_crc32: int | None = None
    head: str = "sigmoid"

    @property
    def n_in(self) -> int:
        return self.layers[0].in_ch

    @property
    def stride(self) -> int:
        """Feature frames per model step."""
        return model_stride(self.layers)

    @property
    def macs_per_step(self) -> int:
        """Multiply-accumulates per model step (all layers, at their own rates)."""
        total, rate = 0.0, 1.0
        for layer in self.layers:
            rate /= layer.stride
            total += layer.macs * rate
        return int(round(total * self.stride))

    def heap_bytes(self) -> int:
        """Heap the chip's loader allocates for this model (buffers plus object overhead)."""
        n = MODEL_OVERHEAD
        for L in self.layers:
            # one buffer per layer: channel records (2 int32), weights, table, outputs, the
            # ring of the last span inputs, the gather window (dilated conv only); see
            # firmware/voicenode/nn/kernels.py
            ring = L.span * L.in_ch if L.k > 1 else 0
            window = L.k * L.in_ch if L.k > 1 and L.dilation > 1 and L.kind != KIND_DWCONV else 0
            const = 8 * L.out_ch + L.weights.size + (256 if L.table is not None else 0)
            n += LAYER_OVERHEAD + _blocks(const + L.out_ch + ring + window)
        return int(n)

    def check(self) -> None:
        """Raise :class:`ModelFormatError` unless the layers chain and fit the chip."""
        if not self.layers:
            raise ModelFormatError("a model needs at least one layer")
        zp = self.input_zp
        for i, layer in enumerate(self.layers):
            where = f"layer {i}: "
            if i and layer.in_ch != self.layers[i - 1].out_ch:
                raise ModelFormatError(
                    f"{where}{layer.in_ch} inputs after {self.layers[i - 1].out_ch} outputs"
                )
            if layer.in_zp != zp:
                raise ModelFormatError(f"{where}input zero point {layer.in_zp} != {zp}")
            zp = layer.out_zp
            layer.check(where)
            if layer.act == ACT_SIGMOID and i != len(self.layers) - 1:
                raise ModelFormatError(f"{where}sigmoid before the last layer")
        last = self.layers[-1]
        if self.head == "logits":
            if last.act != ACT_NONE or last.out_ch < 2 or last.table is not None:
                raise ModelFormatError(
                    "the last layer of a logits model must have activation none, no table and"
                    f" at least 2 channels (has activation {last.act}, {last.out_ch} channels)"
                )
        elif self.head != "sigmoid":
            raise ModelFormatError(f"unknown head {self.head!r} (one of {sorted(HEADS)})")
        elif last.act != ACT_SIGMOID or last.out_ch != 1:
            raise ModelFormatError("the last layer must have one channel and a sigmoid")

    def stream(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (uint8 0..255) of every model step for a feature sequence.

        Args:
            features: uint8 ``(steps, n_mels)`` from the front end, from a reset state.

        Returns:
            uint8 ``(steps // stride,)``: what ``Model.step`` returns on the chip, in order;
            for a logits head uint8 ``(steps // stride, out_ch)``: what ``Model.out`` holds
            on the chip after each step that emitted.
        """
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"features must be (steps, {self.n_in}), got {x.shape}")
        if x.dtype != np.uint8:
            if x.min() < 0 or x.max() > 255:
                raise ValueError("features must be uint8 0..255")
            x = x.astype(np.uint8)
        for layer in self.layers:
            x = layer.stream(x)
        if self.head == "logits":
            return x.copy()
        return x[:, 0].copy()

    # ---- file format -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The ``.vnm`` image (see ``docs/MODEL_FORMAT.md``)."""
        self.check()
        body = bytearray()
        for L in self.layers:
            body += _LAYER.pack(
                L.kind, L.act, L.k, L.stride, L.dilation, L.out_zp, L.in_ch, L.out_ch, 0
            )
            body += L.weights.astype(np.int8).tobytes()
            for o in range(L.out_ch):
                body += _CHAN.pack(int(L.bias[o]), int(L.mult[o]), int(L.shift[o]), 0)
            if L.table is not None:
                body += L.table.astype(np.uint8).tobytes()
        head = _HEADER.pack(
            MAGIC, FORMAT_VERSION, len(self.layers), self.n_in, self.input_zp, 0, len(body)
        )
        data = head + bytes(body)
        return data + struct.pack("<I", zlib.crc32(data))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "model", head: str = "sigmoid") -> QuantModel:
        """Parse and check a ``.vnm`` image (raises :class:`ModelFormatError`).

        ``head`` is what the caller expects (``"sigmoid"`` or ``"logits"``), as on the chip.
        """
        if len(data) < _HEADER.size + 4:
            raise ModelFormatError(f"{where}: {len(data)} bytes is too short for a model")
        magic, version, n_layers, n_in, input_zp, _, body_len = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ModelFormatError(f"{where}: not a voicenode model (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise ModelFormatError(f"{where}: format version {version}, expected {FORMAT_VERSION}")
        if len(data) != _HEADER.size + body_len + 4:
            raise ModelFormatError(
                f"{where}: {len(data)} bytes, header says {_HEADER.size + body_len + 4} (truncated?)"
            )
        (crc,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != crc:
            raise ModelFormatError(f"{where}: checksum mismatch (corrupt file)")
        pos = _HEADER.size
        layers = []
        zp = input_zp
        for i in range(n_layers):
            if pos + _LAYER.size > len(data) - 4:
                raise ModelFormatError(f"{where}: layer {i} runs past the end")
            kind, act, k, stride, dil, out_zp, in_ch, out_ch, _ = _LAYER.unpack_from(data, pos)
            pos += _LAYER.size
            if kind not in KINDS.values() or act not in ACTS.values():
                raise ModelFormatError(
                    f"{where}: layer {i}: unknown kind {kind} or activation {act}"
                )
            shape = (out_ch, k) if kind == KIND_DWCONV else (out_ch, k, in_ch)
            n_w = int(np.prod(shape))
            need = n_w + _CHAN.size * out_ch + (256 if act == ACT_SIGMOID else 0)
            if pos + need > len(data) - 4:
                raise ModelFormatError(f"{where}: layer {i} runs past the end")
            w = np.frombuffer(data, np.int8, n_w, pos).reshape(shape).copy()
            pos += n_w
            chan = np.frombuffer(
                data, np.dtype([("b", "<i4"), ("m", "<u2"), ("s", "u1"), ("p", "u1")]), out_ch, pos
            )
            pos += _CHAN.size * out_ch
            table = None
            if act == ACT_SIGMOID:
                table = np.frombuffer(data, np.uint8, 256, pos).copy()
                pos += 256
            layers.append(
                QuantLayer(
                    kind,
                    act,
                    k,
                    stride,
                    dil,
                    in_ch,
                    out_ch,
                    zp,
                    out_zp,
                    w,
                    chan["b"].astype(np.int32),
                    chan["m"].astype(np.int32),
                    chan["s"].astype(np.int32),
                    table,
                )
            )
            zp = out_zp
        if pos != len(data) - 4:
            raise ModelFormatError(f"{where}: {len(data) - 4 - pos} stray bytes after the layers")
        model = cls(layers, input_zp=input_zp, file_crc32=crc, head=head)
        if model.n_in != n_in:
            raise ModelFormatError(
                f"{where}: header says {n_in} inputs, first layer has {model.n_in}"
            )
        try:
            model.check()
        except ModelFormatError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        return model

    def save(self, path, sidecar: dict) -> dict:
        """Write ``<path>.vnm`` and ``<path>.json``; return the sidecar as written.

        Args:
            path: the ``.vnm`` path (the sidecar goes next to it with suffix ``.json``).
            sidecar: at least ``name``, ``wake_phrase``, ``cutoff`` (probability 0..1; the
                detector uses ``cutoff_u8``, ``round(255 * cutoff)`` unless given),
                ``window`` and ``cooloff`` (model steps) and ``frontend`` (the must-match
                front-end parameters, see :func:`frontend_params`). Also recorded if given:
                ``version``, ``recipe``, ``seed``, ``scores``. The input scale and zero point,
                the checksum, the stride, the heap and MAC counts are filled in here.
                A logits-head model needs only ``name`` and ``frontend`` (``labels``, a list
                of out_ch names, is checked if given); its ``kind`` is set to ``"phones"``
                (``"wake"`` for a wake-word model).
        """
        required = REQUIRED_SIDECAR if self.head == "sigmoid" else REQUIRED_PHONES_SIDECAR
        missing = [k for k in required if k not in sidecar]
        if missing:
            raise ValueError(f"sidecar lacks {', '.join(missing)}")
        data = self.to_bytes()
        side = dict(sidecar)
        kind = HEADS[self.head]
        if side.get("kind", kind) != kind:
            raise ValueError(f"sidecar kind {side['kind']!r}: a {self.head} head is {kind!r}")
        side["kind"] = kind
        if self.head == "sigmoid":
            cutoff = float(side["cutoff"])
            if not 0.0 < cutoff <= 1.0:
                raise ValueError(f"cutoff {cutoff} must be a probability between 0 and 1")
            cutoff_u8 = int(side.get("cutoff_u8", round(cutoff * 255)))
            if not 1 <= cutoff_u8 <= 255:
                raise ValueError(f"cutoff_u8 {cutoff_u8} must be 1..255")
            if int(side["window"]) < 1 or int(side["cooloff"]) < 0:
                raise ValueError("window must be >= 1 and cooloff >= 0 model steps")
            side.update(
                cutoff_u8=cutoff_u8, window=int(side["window"]), cooloff=int(side["cooloff"])
            )
        labels = side.get("labels")
        if labels is not None and (
            len(labels) != self.layers[-1].out_ch or not all(isinstance(x, str) for x in labels)
        ):
            raise ValueError(f"labels must be {self.layers[-1].out_ch} strings (one per output)")
        side.update(
            format=FORMAT_VERSION,
            version=str(side.get("version", "0")),
            input={
                "scale": float(self.input_scale),
                "zero_point": int(self.input_zp),
                "n_mels": self.n_in,
            },
            stride=self.stride,
            model_crc32=struct.unpack("<I", data[-4:])[0],
            model_bytes=len(data),
            heap_bytes=self.heap_bytes(),
            macs_per_step=self.macs_per_step,
            layers=[_layer_summary(L) for L in self.layers],
        )
        path = Path(path)
        if path.suffix != ".vnm":
            path = path.with_suffix(".vnm")
        path.write_bytes(data)
        path.with_suffix(".json").write_text(json.dumps(side, indent=1, sort_keys=True) + "\n")
        self.sidecar = side
        self.file_crc32 = side["model_crc32"]
        return side

    @classmethod
    def load(cls, path, head: str = "sigmoid") -> QuantModel:
        """Read ``<path>.vnm`` and its sidecar (if present) and check both.

        Args:
            path: the ``.vnm`` path.
            head: ``"sigmoid"`` (a wake-word model, the default) or ``"logits"`` (sidecar
                kind ``"phones"``), as ``voicenode.nn.model.load(path, head=...)`` on the chip.

        Raises:
            ModelFormatError: with a clear message for any corrupt or inconsistent file,
                or a model of the other head.
        """
        if head not in HEADS:
            raise ModelFormatError(f"{path}: unknown head {head!r} (one of {sorted(HEADS)})")
        path = Path(path)
        if path.suffix != ".vnm":
            path = path.with_suffix(".vnm")
        side_path = path.with_suffix(".json")
        side = None
        if side_path.exists():
            try:
                side = json.loads(side_path.read_text())
            except ValueError as e:
                raise ModelFormatError(f"{side_path}: not JSON ({e})") from None
            if isinstance(side, dict):
                _check_kind(side, head, str(side_path))
        model = cls.from_bytes(path.read_bytes(), where=str(path), head=head)
        if side is not None:
            check_sidecar(side, model, where=str(side_path))
            model.sidecar = side
            model.input_scale = float(side["input"]["scale"])
        return model


def _blocks(n: int) -> int:
    return (n + 15) // 16 * 16


def _layer_summary(L: QuantLayer) -> str:
    kind = {v: k for k, v in KINDS.items()}[L.kind]
    act = {v: k for k, v in ACTS.items()}[L.act]
    return f"{kind} {L.in_ch}->{L.out_ch} k{L.k} s{L.stride} d{L.dilation} {act}"


def check_sidecar(
    side: dict, model: QuantModel, where: str = "sidecar", frontend: dict | None = None
):
    """Check a sidecar against its model (and, if given, the front-end parameters).

    Raises:
        ModelFormatError: naming the first field that is missing or does not match.
    """
    if not isinstance(side, dict):
        raise ModelFormatError(f"{where}: not a JSON object")
    _check_kind(side, model.head, where)
    if model.head == "sigmoid":
        keys = REQUIRED_SIDECAR + ("format", "cutoff_u8", "input", "model_crc32")
    else:
        keys = REQUIRED_PHONES_SIDECAR + ("format", "input", "model_crc32")
    for key in keys:
        if key not in side:
            raise ModelFormatError(f"{where}: missing {key!r}")
    labels = side.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or len(labels) != model.layers[-1].out_ch
    ):
        raise ModelFormatError(f"{where}: 'labels' must name each of the model's outputs")
    if side["format"] != FORMAT_VERSION:
        raise ModelFormatError(f"{where}: format {side['format']}, expected {FORMAT_VERSION}")
    crc = model.file_crc32 if model.file_crc32 is not None else zlib.crc32(model.to_bytes()[:-4])
    if side["model_crc32"] != crc:
        raise ModelFormatError(f"{where}: written for another model file (checksum differs)")
    if (
        side["input"].get("zero_point") != model.input_zp
        or side["input"].get("n_mels") != model.n_in
    ):
        raise ModelFormatError(f"{where}: input zero point / n_mels do not match the model")
    if frontend is not None:
        check_frontend(side["frontend"], frontend, where)


def _check_kind(side: dict, head: str, where: str) -> None:
    # The same messages as the chip: a wake loader refuses a phones model and back.
    kind = side.get("kind", "wake")
    if head == "sigmoid" and kind != "wake":
        raise ModelFormatError(
            f"{where}: sidecar kind {kind!r} is not a wake-word model (load it with head='logits')"
        )
    if head == "logits" and kind != "phones":
        raise ModelFormatError(
            f"{where}: sidecar kind {kind!r}: a logits head needs a 'phones' model, "
            "not a wake-word model"
        )


def check_frontend(trained: dict, current: dict, where: str = "sidecar") -> None:
    """Raise :class:`ModelFormatError` if a must-match front-end parameter differs."""
    for key in sorted(set(trained) | set(current)):
        if key not in trained:
            raise ModelFormatError(f"{where}: front-end parameter {key} not recorded in the model")
        if key not in current:
            raise ModelFormatError(
                f"{where}: model trained with {key}={trained[key]!r}, unknown here"
            )
        if not _same(trained[key], current[key]):
            raise ModelFormatError(
                f"{where}: front-end parameter {key}: model trained with {trained[key]!r}, "
                f"firmware has {current[key]!r}"
            )


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return a == b


def frontend_params() -> dict:
    """The must-match front-end parameters of ``firmware/voicenode/dsp/params.py``.

    If the params module defines ``MUST_MATCH`` (a tuple of names) those are taken, otherwise
    every upper-case constant of the file (the chip compares the same set).
    """
    from voicenode_tools.reference import params  # the firmware's own file, imported by the host

    names = getattr(params, "MUST_MATCH", None)
    if names is None and isinstance(getattr(params, "PARAMS", None), dict):
        names = sorted(params.PARAMS)
    if names is None:
        names = [
            n
            for n in dir(params)
            if n.isupper()
            and not n.startswith("_")
            and isinstance(getattr(params, n), (int, float, str, tuple, list))
        ]
    out = {}
    for n in names:
        v = getattr(params, n)
        out[n] = list(v) if isinstance(v, tuple) else v
    return out


# --------------------------------------------------------------------------------------------
# Quantisation


def quantize(
    layers: list[FloatLayer],
    calibration: np.ndarray | list[np.ndarray],
    input_scale: float = 1.0 / 255.0,
    input_zp: int = 0,
) -> QuantModel:
    """Post-training quantisation of a float network to the chip's int8 form.

    Args:
        layers: the trained network as :class:`FloatLayer` objects (last: one channel,
            ``activation="sigmoid"`` for a wake-word model, or two or more channels and
            ``activation="none"`` for a logits head; the head follows from it).
        calibration: uint8 feature sequences ``(steps, n_mels)`` (one array or a list) that
            set the activation ranges; a few hundred steps of speech and noise suffice.
        input_scale, input_zp: the float value the network was trained on is
            ``(uint8_feature - input_zp) * input_scale``.

    Returns:
        The :class:`QuantModel` (weights int8 per output channel, symmetric; activations
        uint8 per tensor, asymmetric, zero point 0 after a ReLU).
    """
    seqs = (
        [calibration]
        if isinstance(calibration, np.ndarray) and calibration.ndim == 2
        else list(calibration)
    )
    if not seqs:
        raise ValueError("quantize needs calibration features")
    last = layers[-1]
    if last.activation == "sigmoid" and last.out_ch == 1:
        head = "sigmoid"
    elif last.activation == "none" and last.out_ch >= 2:
        head = "logits"
    else:
        raise ValueError(
            "the last layer must have one output channel and activation 'sigmoid' (wake word)"
            " or two or more channels and activation 'none' (logits head)"
        )
    # Float activations of every layer (pre-sigmoid for the last) over the calibration set.
    ranges = [[np.inf, -np.inf] for _ in layers]
    for q in seqs:
        q = np.asarray(q)
        h = (q.astype(np.float64) - input_zp) * input_scale
        for i, layer in enumerate(layers):
            h = float_layer_forward(layer, h)
            ranges[i][0] = min(ranges[i][0], float(h.min()) if h.size else 0.0)
            ranges[i][1] = max(ranges[i][1], float(h.max()) if h.size else 0.0)
    out = []
    in_scale, in_zp = float(input_scale), int(input_zp)
    for i, layer in enumerate(layers):
        w = layer.w
        axes = tuple(range(1, w.ndim))
        w_scale = np.max(np.abs(w), axis=axes) / 127.0
        # A channel of zero weights takes a typical scale (its bias still needs a unit).
        typical = float(np.mean(w_scale[w_scale > 0])) if np.any(w_scale > 0) else 1.0 / 127.0
        w_scale = np.where(w_scale > 0, w_scale, typical)
        shape = (-1,) + (1,) * (w.ndim - 1)
        wq = np.clip(np.round(w / w_scale.reshape(shape)), -127, 127).astype(np.int8)
        bq = np.round(layer.b / (in_scale * w_scale)).astype(np.int64)
        lo, hi = ranges[i]
        if layer.activation == "relu":
            lo = 0.0
        out_scale, out_zp = choose_qparams(lo, hi)
        if layer.activation == "relu":
            out_zp = 0
        # The multiplier must stay below 0.5: widen the output range if a channel needs it.
        out_scale = max(out_scale, float(np.max(in_scale * w_scale)) * 2.0001)
        mult, shift = zip(
            *(quantize_multiplier(in_scale * ws / out_scale) for ws in w_scale), strict=True
        )
        kind = KINDS[layer.kind]
        weights = wq if kind == KIND_DWCONV else wq.reshape(layer.out_ch, layer.k, layer.in_ch)
        qlayer = QuantLayer(
            kind=kind,
            act=ACTS[layer.activation],
            k=layer.k,
            stride=layer.stride,
            dilation=layer.dilation,
            in_ch=layer.in_ch,
            out_ch=layer.out_ch,
            in_zp=in_zp,
            out_zp=out_zp,
            weights=weights,
            bias=np.clip(bq, -(1 << 28), (1 << 28) - 1).astype(np.int32),
            mult=np.array(mult, np.int32),
            shift=np.array(shift, np.int32),
            table=logistic_table(out_scale, out_zp) if layer.activation == "sigmoid" else None,
            out_scale=out_scale,
        )
        qlayer.check(f"layer {i}: ")
        out.append(qlayer)
        in_scale, in_zp = out_scale, out_zp
    model = QuantModel(out, input_scale=float(input_scale), input_zp=int(input_zp), head=head)
    model.check()
    return model


def random_model(
    rng: np.random.Generator,
    n_mels: int = 40,
    spec: list[tuple] | None = None,
    input_zp: int = 0,
    logit_gain: float = 20.0,
) -> QuantModel:
    """A random but well-scaled quantised model, for tests and benchmarks.

    Args:
        rng: the random generator (seed it).
        n_mels: input channels.
        spec: ``(kind, out_ch, k, stride, dilation, activation)`` per layer; default a
            microWakeWord-sized network (see :data:`BENCH_SPEC`).
        input_zp: input zero point.
        logit_gain: scale of the last layer's weights (spreads the probabilities).
    """
    layers = random_float_layers(rng, n_mels, spec, logit_gain)
    calib = rng.integers(0, 256, size=(300, n_mels), dtype=np.uint8)
    return quantize(layers, calib, input_zp=input_zp)


def random_float_layers(
    rng: np.random.Generator,
    n_mels: int = 40,
    spec: list[tuple] | None = None,
    logit_gain: float = 20.0,
) -> list[FloatLayer]:
    """Random, well-scaled float layers of a spec (see `random_model`), to quantise with a
    calibration of one's own (tests calibrate on real speech features)."""
    spec = BENCH_SPEC if spec is None else spec
    layers = []
    in_ch = n_mels
    for kind, out_ch, k, stride, dil, act in spec:
        if kind == "dwconv":
            out_ch = in_ch
            w = rng.normal(size=(out_ch, 1, k)) / math.sqrt(k)
        elif kind == "conv":
            w = rng.normal(size=(out_ch, in_ch, k)) / math.sqrt(k * in_ch)
        else:
            w = rng.normal(size=(out_ch, in_ch)) / math.sqrt(in_ch)
        if act == "sigmoid":
            w = w * logit_gain  # spread the logits so that the probabilities use the table
        layers.append(FloatLayer(kind, w, rng.normal(size=out_ch) * 0.1, stride, dil, act))
        in_ch = out_ch
    return layers


#: A microWakeWord-sized streaming network (~25k MACs per 30 ms model step, 40 mels):
#: ``(kind, out_ch, k, stride, dilation, activation)``.
BENCH_SPEC = [
    ("conv", 32, 3, 3, 1, "relu"),
    ("dwconv", 0, 5, 1, 1, "relu"),
    ("dense", 64, 1, 1, 1, "relu"),
    ("dwconv", 0, 5, 1, 2, "relu"),
    ("dense", 64, 1, 1, 1, "relu"),
    ("dwconv", 0, 9, 1, 4, "relu"),
    ("dense", 64, 1, 1, 1, "relu"),
    ("dwconv", 0, 9, 1, 1, "relu"),
    ("dense", 96, 1, 1, 1, "relu"),
    ("conv", 1, 6, 1, 1, "sigmoid"),
]
