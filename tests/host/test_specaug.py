"""On-the-fly feature augmentation shared by the wake-word and command trainers."""

import torch

from voicenode_tools.train import specaug


def _ramp(b=3, t=20, f=10):
    # every band holds its own index + 1, so shifts and masks are easy to read
    return (torch.arange(f, dtype=torch.float32) + 1).repeat(b, t, 1)


def test_shift_moves_bands_and_repeats_the_edge():
    x = _ramp(b=12)
    out = specaug.augment(x, torch.Generator().manual_seed(0), {"shift": 3})
    assert out.shape == x.shape
    assert torch.equal(x, _ramp(b=12))  # the input is left alone
    seen = set()
    for i in range(len(out)):
        row = out[i, 0]
        k = int(x[i, 0, 5] - row[5])  # bands moved up by k (down when negative)
        seen.add(k)
        assert -3 <= k <= 3
        if k > 0:  # the lowest band fills the bottom
            assert torch.all(row[:k] == 1) and torch.equal(row[k:], x[i, 0, :-k])
        elif k < 0:  # the top band fills the top
            assert torch.all(row[k:] == 10) and torch.equal(row[:k], x[i, 0, -k:])
        else:
            assert torch.equal(row, x[i, 0])
        assert torch.equal(out[i], row.repeat(20, 1))  # the same shift in every frame
    assert len(seen) > 1


def test_masks_blank_spans_and_are_repeatable():
    aug = {"freq_masks": 2, "freq_width": 3, "time_masks": 2, "time_width": 4}
    x = _ramp(b=16)
    a = specaug.augment(x, torch.Generator().manual_seed(5), aug)
    b = specaug.augment(x, torch.Generator().manual_seed(5), aug)
    assert torch.equal(a, b)
    changed = a != x
    assert torch.all(a[changed] == 0)  # masking only zeroes
    assert changed.any()
    for i in range(16):
        zero_bands = (a[i] == 0).all(dim=0).sum()
        zero_frames = (a[i] == 0).all(dim=1).sum()
        assert zero_bands <= 6 and zero_frames <= 8 + 10 * (zero_bands == 10)


def test_no_settings_is_a_copy():
    x = _ramp()
    assert torch.equal(specaug.augment(x, torch.Generator().manual_seed(1), {}), x)
