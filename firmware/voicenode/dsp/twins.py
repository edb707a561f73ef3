"""Plain-Python twins of the viper kernels in fft.py (same arguments, same results).

Slow and readable: the tests run both on the Unix port and compare. Never imported by the
node at run time.
"""

from array import array

from .params import (
    FFT_SIZE,
    LOG_FRAC_BITS,
    LOG_OFFSET,
    LOG_TABLE_BITS,
    MEL_WEIGHT_BITS,
    N_MELS,
    NOISE_FALL_SHIFT,
    NOISE_MIN,
    NOISE_RISE_SHIFT,
    NORM_BIT,
    OUT_GAIN,
    OUT_OFFSET,
    TWIDDLE_BITS,
    WINDOW,
    WINDOW_BITS,
)


def _h(buf):
    """Signed int16 view of a buffer (a copy for bytes tables, the array itself otherwise)."""
    return buf if isinstance(buf, array) and buf.typecode == "h" else array("h", bytes(buf))


def copy_in(ring, pos, src, off, n):
    for i in range(n):
        ring[pos + i] = src[off + i]


def window(ring, pos, wtab, out):
    w = array("H", bytes(wtab))
    peak = 0
    for i in range(WINDOW):
        v = (ring[(pos + i) % WINDOW] * w[i] + (1 << (WINDOW_BITS - 1))) >> WINDOW_BITS
        out[i] = v
        peak = max(peak, abs(v))
    for i in range(WINDOW, FFT_SIZE):
        out[i] = 0
    return peak


def norm_shift(peak):
    if peak == 0:
        return 0
    m = 0
    while peak >> (m + 1):
        m += 1
    return NORM_BIT - m


def normalise(buf, s):
    for i in range(FFT_SIZE):
        buf[i] = buf[i] << s if s >= 0 else (buf[i] + (1 << (-s - 1))) >> -s


def fft256(buf, tw):
    t = _h(tw)
    tb = TWIDDLE_BITS + 2
    rnd = 1 << (tb - 1)
    n = FFT_SIZE // 2  # complex points
    q = n // 4
    ti = 0
    while q >= 1:
        for j in range(q):
            if j:
                w = [(t[ti + 2 * k], t[ti + 2 * k + 1]) for k in range(3)]
                ti += 6
            for g in range(j, n, 4 * q):
                z = [(buf[2 * (g + k * q)], buf[2 * (g + k * q) + 1]) for k in range(4)]
                (ar, ai), (br, bi), (cr, ci), (dr, di) = z
                t0r, t0i, t1r, t1i = ar + cr, ai + ci, ar - cr, ai - ci
                t2r, t2i, t3r, t3i = br + dr, bi + di, br - dr, bi - di
                ys = [(t0r + t2r, t0i + t2i), (t1r + t3i, t1i - t3r),
                      (t0r - t2r, t0i - t2i), (t1r - t3i, t1i + t3r)]
                for k, (yr, yi) in enumerate(ys):
                    if k == 0 or j == 0:
                        re, im = (yr + 2) >> 2, (yi + 2) >> 2
                    else:
                        wr, wi = w[k - 1]
                        re = (yr * wr - yi * wi + rnd) >> tb
                        im = (yr * wi + yi * wr + rnd) >> tb
                    buf[2 * (g + k * q)] = re
                    buf[2 * (g + k * q) + 1] = im
        q //= 4


def power_mel(buf, rev, ptw, slot, wts, energy, klo, khi):
    t = _h(ptw)
    tb = TWIDDLE_BITS
    sh = tb + 2
    rnd = 1 << (sh - 1)
    half = FFT_SIZE // 2
    for i in range(N_MELS + 2):
        energy[i] = 0

    def add(k, re, im):
        if klo <= k <= khi:
            pw = re * re + im * im
            s, w = slot[k - klo], wts[k - klo]
            energy[s] += pw * ((1 << MEL_WEIGHT_BITS) - w)
            energy[s + 1] += pw * w

    for k in range(1, half // 2 + 1):
        m = half - k
        a, b = buf[2 * rev[k]], buf[2 * rev[k] + 1]
        c, d = buf[2 * rev[m]], buf[2 * rev[m] + 1]
        wr, wi = t[2 * (k - 1)], t[2 * (k - 1) + 1]
        xr, xi = (a + c) << tb, (b - d) << tb
        br, bi = a - c, b + d
        pp = wi * br + wr * bi
        qq = wi * bi - wr * br
        add(k, (xr + pp + rnd) >> sh, (xi + qq + rnd) >> sh)
        if m != k:
            add(m, (xr - pp + rnd) >> sh, (qq - xi + rnd) >> sh)


def finish(energy, logtab, shift, floor, out, ring, roff, first):
    tbits = LOG_TABLE_BITS
    for c in range(N_MELS):
        x = energy[c + 1]
        lg = 0
        if x:
            m = 0
            while x >> (m + 1):
                m += 1
            f = (x >> (m - tbits) if m >= tbits else x << (tbits - m)) & ((1 << tbits) - 1)
            lg = max(0, (m << LOG_FRAC_BITS) + logtab[f] + LOG_OFFSET - (2 << LOG_FRAC_BITS) * shift)
        if first:
            n = lg << 8
        else:
            n = floor[c]
            d = (lg << 8) - n
            n += d >> NOISE_RISE_SHIFT if d > 0 else d >> NOISE_FALL_SHIFT
        n = max(n, NOISE_MIN << 8)
        floor[c] = n
        y = min(255, max(0, OUT_OFFSET + (((lg - (n >> 8)) * OUT_GAIN) >> 8)))
        out[c] = y
        ring[roff + c] = y
