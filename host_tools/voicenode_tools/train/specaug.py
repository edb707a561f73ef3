"""Feature augmentation made on the fly while training: other voices and rooms for free.

Both trainers (`train.trainer` for wake words, `train.commands`) call `augment` on each batch
of float features (batch, frames, mel bands). Nothing here changes the cached data, so a
recipe's data hash and its validation audio stay the same whatever these settings are.
"""

from __future__ import annotations


def augment(x, g, aug: dict):
    """A copy of ``x`` with each item's mel bands shifted and some bands and frames blanked.

    Args:
        x: float tensor (batch, frames, bands).
        g: a seeded ``torch.Generator`` (the draws are repeatable).
        aug: ``shift`` (bands, both ways: a longer or shorter vocal tract), ``freq_masks``
            spans of at most ``freq_width`` bands and ``time_masks`` spans of at most
            ``time_width`` frames set to zero (SpecAugment). Missing keys mean none.
    """
    import torch

    b, t, f = x.shape
    out = x.clone()
    s = int(aug.get("shift", 0))
    if s:
        k = torch.randint(-s, s + 1, (b,), generator=g)
        for i in range(b):
            ki = int(k[i])
            if ki > 0:
                out[i, :, ki:] = x[i, :, :-ki]
                out[i, :, :ki] = x[i, :, :1]
            elif ki < 0:
                out[i, :, :ki] = x[i, :, -ki:]
                out[i, :, ki:] = x[i, :, -1:]
    for _ in range(int(aug.get("freq_masks", 0))):
        w = torch.randint(0, int(aug["freq_width"]) + 1, (b,), generator=g)
        f0 = torch.randint(0, f, (b,), generator=g)
        for i in range(b):
            out[i, :, int(f0[i]) : int(f0[i]) + int(w[i])] = 0
    for _ in range(int(aug.get("time_masks", 0))):
        w = torch.randint(0, int(aug["time_width"]) + 1, (b,), generator=g)
        t0 = torch.randint(0, t, (b,), generator=g)
        for i in range(b):
            out[i, int(t0[i]) : int(t0[i]) + int(w[i]), :] = 0
    return out
