"""The streaming convolutional network in PyTorch, with the layer set of `reference/nn.py`.

Layers are `conv` (Conv1d over time), `dwconv` (depthwise Conv1d) and `dense` (pointwise),
each causal with its own stride and dilation, with the chip's streaming semantics: output `m`
of a layer is emitted after input step `m*s + s - 1` (see docs/MODEL_FORMAT.md). Hidden
layers have a BatchNorm (folded into the weights on export) and a ReLU. The last layer has
one channel (the logit of the wake-word probability) or, for the command recogniser's phone
network (`logits=True`), one logit per phone class.

`to_float_layers` exports to `reference.nn.FloatLayer`s, which `reference.nn.quantize` turns
into the int8 model the chip runs.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from torch import nn

from . import recipe

#: Default network (the recipe's default spec): microWakeWord-sized, 30 ms model steps.
#: (kind, out_ch, k, stride, dilation); out_ch 0 for dwconv (keeps the channels); the last
#: entry is the one-channel head.
DEFAULT_SPEC = recipe.DEFAULTS["model"]["spec"]


class StreamLayer(nn.Module):
    """One causal layer: convolution, then (hidden layers) BatchNorm and ReLU."""

    def __init__(
        self, kind: str, in_ch: int, out_ch: int, k: int, stride: int, dilation: int, last: bool
    ):
        super().__init__()
        self.kind, self.k, self.stride, self.dilation, self.last = kind, k, stride, dilation, last
        groups = in_ch if kind == "dwconv" else 1
        if kind == "dwconv":
            out_ch = in_ch
        if kind == "dense" and k != 1:
            raise ValueError("dense layers have kernel 1")
        self.conv = nn.Conv1d(
            in_ch, out_ch, k, stride=stride, dilation=dilation, groups=groups, bias=last
        )
        self.bn = None if last else nn.BatchNorm1d(out_ch)
        self.out_ch = out_ch

    def forward(self, x):  # x: (batch, ch, time)
        p = (self.k - 1) * self.dilation - (self.stride - 1)
        x = nn.functional.pad(x, (p, 0)) if p >= 0 else x[:, :, -p:]
        y = self.conv(x)
        if self.bn is not None:
            y = torch.relu(self.bn(y))
        return y


class StreamNet(nn.Module):
    """A stack of `StreamLayer`s; input (batch, time, n_mels) floats, output logits
    (batch, steps), or (batch, classes, steps) with `logits=True`."""

    def __init__(self, n_in: int, spec=None, logits: bool = False):
        super().__init__()
        self.logits = logits
        spec = DEFAULT_SPEC if spec is None else spec
        layers = []
        ch = n_in
        for i, (kind, out_ch, k, stride, dil) in enumerate(spec):
            layer = StreamLayer(kind, ch, out_ch, k, stride, dil, last=i == len(spec) - 1)
            layers.append(layer)
            ch = layer.out_ch
        if (ch != 1) != logits:
            raise ValueError("the last layer must have one output channel (several: logits=True)")
        self.layers = nn.ModuleList(layers)
        self.spec = [list(s) for s in spec]

    def forward(self, x):
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h)
        return h if self.logits else h[:, 0, :]

    @property
    def stride(self) -> int:
        return int(np.prod([layer.stride for layer in self.layers]))

    def receptive_field(self) -> int:
        """Feature frames that one output sees."""
        rf, jump = 1, 1
        for layer in self.layers:
            rf += (layer.k - 1) * layer.dilation * jump
            jump *= layer.stride
        return rf


def to_float_layers(net: StreamNet, exact_root: bool = False):
    """Export to `reference.nn.FloatLayer`s, folding each BatchNorm into its convolution
    (with numpy's correctly rounded square root when ``exact_root``: `portable.bn_scale`)."""
    from voicenode_tools.reference import nn as ref

    from .portable import bn_scale

    out = []
    net = net.eval()
    for layer in net.layers:
        w = layer.conv.weight.detach().double().numpy()  # (out, in/groups, k)
        b = (
            layer.conv.bias.detach().double().numpy()
            if layer.conv.bias is not None
            else np.zeros(w.shape[0])
        )
        if layer.bn is not None:
            bn = layer.bn
            if exact_root:
                g = bn_scale(bn.weight, bn.running_var, bn.eps)
            else:
                g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
            b = (
                b - bn.running_mean.detach().double().numpy()
            ) * g + bn.bias.detach().double().numpy()
            w = w * g[:, None, None]
        if layer.kind == "dense":
            w = w[:, :, 0]
        act = ("none" if net.logits else "sigmoid") if layer.last else "relu"
        out.append(ref.FloatLayer(layer.kind, w, b, layer.stride, layer.dilation, act))
    return out


def quant_stream(qmodel, x) -> torch.Tensor:
    """`reference.nn.QuantModel.stream` of a batch of windows at once, with the same integers.

    The int8 layers run as float convolutions, which hold every accumulator exactly (float32
    while no sum of |products| can reach 2**24, else float64), and then the chip's
    requantisation in int64: what the chip (and the numpy twin) computes, for thousands of
    windows in seconds (the twin takes ~20 ms per 3 s window).

    Args:
        qmodel: the `QuantModel`.
        x: uint8 ``(batch, frames, n_mels)`` (numpy or tensor), each window from a reset state.

    Returns:
        int64 tensor ``(batch, frames // stride, out_ch)`` of uint8 values.
    """
    from voicenode_tools.reference import nn as ref

    h = torch.as_tensor(np.asarray(x)).to(torch.int64).transpose(1, 2)  # (B, ch, T)
    for L in qmodel.layers:
        k, d, s = int(L.k), int(L.dilation), int(L.stride)
        wi = np.asarray(L.weights, np.int64)
        # the largest |partial sum| of one output: 255 * sum |w| over its taps
        exact32 = 255 * int(np.abs(wi).reshape(wi.shape[0], -1).sum(1).max()) < 1 << 24
        ftype = torch.float32 if exact32 else torch.float64
        w = torch.from_numpy(wi).to(ftype)
        if L.kind == ref.KIND_DWCONV:  # (ch, k)
            w, groups = w[:, None, :], int(L.out_ch)
        else:  # conv and dense (out, k, in)
            w, groups = w.permute(0, 2, 1), 1
        xp = nn.functional.pad((h - int(L.in_zp)).to(ftype), ((k - 1) * d, 0))[:, :, s - 1 :]
        acc = nn.functional.conv1d(xp, w.contiguous(), stride=s, dilation=d, groups=groups)
        # `reference.nn.requantize` in float64, where every value is an integer below 2**53:
        # its (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16) is floor(acc * m / 2**16)
        acc = acc.double() + torch.from_numpy(L.bias.astype(np.float64))[:, None]
        m = torch.from_numpy(np.asarray(L.mult, np.float64)).reshape(-1, 1)
        sh = np.asarray(L.shift, np.int64)
        half = torch.from_numpy(((1 << sh) >> 1).astype(np.float64)).reshape(-1, 1)
        div = torch.from_numpy(np.ldexp(1.0, sh)).reshape(-1, 1)
        t = torch.floor(acc * m / 65536.0)
        v = int(L.out_zp) + torch.floor((t + half) / div)
        h = v.clamp(int(L.out_zp) if L.act == ref.ACT_RELU else 0, 255).to(torch.int64)
        if L.table is not None:
            h = torch.from_numpy(np.asarray(L.table, np.int64))[h]
    return h.transpose(1, 2)


def trained_on() -> dict:
    """What a training's floating point depended on, for the sidecar's `trained_on`.

    The same recipe and seed make the same data everywhere, but the network's bytes also
    depend on the CPU's vector unit and on the number of PyTorch threads (their reduction
    order; docs/TRAINING.md, "Shipped models"). A rebuild that differs from a shipped
    model can be told apart from a pipeline change by comparing these first.
    """
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "vector_unit": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
