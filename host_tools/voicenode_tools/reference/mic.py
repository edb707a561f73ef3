"""Numpy twin of the microphone capture (`firmware/voicenode/hal/mic.py`): the integer DC
high-pass that every sample passes before the front end.

    y, clipped = highpass(pcm)          # what the node's Microphone hands the front end

The filter is a one-pole integer high-pass with the DC estimate in Q(frac): exactly the
firmware's arithmetic (`_convert16`/`_convert32`), so host and chip see the same samples.
"""

from __future__ import annotations

import numpy as np

HP_SHIFT = 10  # Microphone(hp_shift=...) default: 2.5 Hz at 16 kHz
DC_FRAC = 12  # firmware _DC_FRAC


def dc_frac(slot_bits: int = 32, shift: int = 14) -> int:
    """Fraction bits of the DC estimate the firmware picks for a sample format."""
    return DC_FRAC if slot_bits == 16 else max(0, min(DC_FRAC, shift - 1))


def highpass(samples, hp_shift: int = HP_SHIFT, frac: int = DC_FRAC, dc: int = 0):
    """DC removal and saturation of integer samples, as the Microphone does it.

    Args:
        samples: integer samples after the slot shift (int16 range, or wider before saturation).
        hp_shift: the filter's shift (0: no filtering, only saturation).
        frac: fraction bits of the DC estimate (see `dc_frac`).
        dc: the initial DC estimate (0 after construction or reset_dc()).

    Returns:
        (int16 array, number of clipped samples).
    """
    x = np.asarray(samples, dtype=np.int64)
    if not hp_shift:
        y = np.clip(x, -32768, 32767)
        return y.astype(np.int16), int(np.count_nonzero(y != x))
    rnd = (1 << frac) >> 1
    out = np.empty(len(x), dtype=np.int64)
    for i, s in enumerate(x.tolist()):  # a recursive filter: sequential by nature
        dc += ((s << frac) - dc) >> hp_shift
        out[i] = s - ((dc + rnd) >> frac)
    y = np.clip(out, -32768, 32767)
    return y.astype(np.int16), int(np.count_nonzero(y != out))
