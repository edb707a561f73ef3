"""numpy twin of `firmware/voicenode/commands.py`: pooling, the int8 command network, decoding.

Host API::

    net = quantize(float_layers, calib_x_u8)          # [(W (out, in), b, "relu"|"none"), ...]
    out = net.forward(x_u8)                           # (N, outputs) uint8 == the chip
    net.save("models/commands_home.vcm", sidecar)     # writes .vcm + .json (crc, sizes)
    net = CommandNet.load("models/commands_home.vcm") # checks file and sidecar
    r = recognize(net, window_frames_u8)              # == Recognizer on the chip, frame by frame

Arithmetic as docs/MODEL_FORMAT.md (int8 weights per output channel, int32 bias, uint8
activations, fixed-point requantisation), with every intermediate within signed 32 bits.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import nn as ref_nn
from . import vad as ref_vad

MAGIC = b"VNCM"
FORMAT_VERSION = 1
BIAS_LIMIT = 1 << 29
UNKNOWN = "unknown"


class CommandModelError(ValueError):
    """A command model or its sidecar is unusable; the message names the file and problem."""


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
            "<4sHHHHI", MAGIC, FORMAT_VERSION, len(self.layers), self.n_in, 0, len(body)
        )
        data = head + bytes(body)
        return data + struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)

    def save(self, path, sidecar: dict) -> dict:
        """Write ``<name>.vcm`` and ``<name>.json``; returns the sidecar as written."""
        path = Path(path)
        data = self.to_bytes()
        side = dict(sidecar)
        side.update(
            format=FORMAT_VERSION,
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
        check_sidecar(side, str(path.with_suffix(".json")), self.n_out, self.n_in)
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
        if len(data) < 20 or data[:4] != MAGIC:
            raise CommandModelError(f"{where}: not a command model")
        magic, ver, n_layers, n_in, _, body_len = struct.unpack_from("<4sHHHHI", data)
        if ver != FORMAT_VERSION:
            raise CommandModelError(
                f"{where}: format version {ver}, this host reads {FORMAT_VERSION}"
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
        check_sidecar(side, str(side_path), net.n_out, net.n_in)
        return net


def check_sidecar(side: dict, where: str, n_out: int, n_in: int) -> None:
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


def recognize(
    net: CommandNet, frames: np.ndarray, side: dict | None = None, cutoff_u8: int | None = None
) -> dict:
    """What the chip's Recognizer answers for the frames of a listening window (from reset).

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
