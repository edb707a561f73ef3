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


def to_float_layers(net: StreamNet):
    """Export to `reference.nn.FloatLayer`s, folding each BatchNorm into its convolution."""
    from voicenode_tools.reference import nn as ref

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
