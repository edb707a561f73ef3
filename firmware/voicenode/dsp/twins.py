"""Plain-Python twins of the viper kernels in fft.py: same arguments, same arena, same result.

They are written the textbook way (signed values, no bias tricks, no unrolling, digit
reversal from the table rather than the precomputed positions), so the tests that compare
them with the kernels on the Unix port check the tricks too. Slow; never imported by the
node at run time.
"""

from array import array

from . import fft as K
from . import tables as T
from .params import (
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
    STEP,
    TWIDDLE_BITS,
    WINDOW,
    WINDOW_BITS,
)


class _Arena:
    """Byte-level view of the arena (an array("i")) with int16/int32 accessors."""

    def __init__(self, a):
        self.a = a
        self.b = bytearray(a)

    def u16(self, off):
        return self.b[off] | (self.b[off + 1] << 8)

    def s16(self, off):
        v = self.u16(off)
        return v - 65536 if v >= 32768 else v

    def set16(self, off, v):
        v &= 0xFFFF
        self.b[off] = v & 255
        self.b[off + 1] = v >> 8

    def u32(self, off):
        return int.from_bytes(self.b[off : off + 4], "little")

    def set32(self, off, v):
        self.b[off : off + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")

    def done(self):
        new = array("i", bytes(self.b))
        for i in range(len(self.a)):
            self.a[i] = new[i]


def _msb(x):
    m = 0
    while x >> (m + 1):
        m += 1
    return m


def copy_in(h, s):
    z = _Arena(h)
    off, n = z.u32(K.HDR + 4 * K.H_OFF), z.u32(K.HDR + 4 * K.H_N)
    pos = z.u32(K.HDR)
    blk = pos // STEP
    hp = K.HDR + 4 * (K.H_PEAK + blk)
    if pos % STEP == 0:
        mx, mn = 0, 65535
    else:
        mx, mn = z.u32(hp) >> 16, z.u32(hp) & 0xFFFF
    for i in range(n):
        u = (s[off + i] + 32768) & 0xFFFF  # the sample + 32768: order-preserving unsigned
        z.set16(K.RING + 2 * (pos + i), u)
        mx, mn = max(mx, u), min(mn, u)
    z.set32(hp, (mx << 16) | mn)
    z.set32(K.HDR, (pos + n) % WINDOW)
    z.done()


def window(p):
    z = _Arena(p)
    peak = 0
    for blk in range(3):
        v = z.u32(K.HDR + 4 * (K.H_PEAK + blk))
        peak = max(peak, (v >> 16) - 32768, 32768 - (v & 0xFFFF))
    s = NORM_BIT - _msb(peak) if peak else 0
    z.set32(K.HDR + 4 * K.H_SHIFT, s + 64)
    rs = WINDOW_BITS - s
    pos = z.u32(K.HDR)
    for i in range(WINDOW):
        x = z.u16(K.RING + 2 * ((pos + i) % WINDOW)) - 32768
        w = z.u16(K.WIN + 2 * i)
        z.set16(K.WORK + 2 * i, ((x * w + (1 << (rs - 1))) >> rs) + K.BIAS)
    for i in range(WINDOW, 512):
        z.set16(K.WORK + 2 * i, K.BIAS)
    z.done()


def fft(p):
    z = _Arena(p)
    re = [z.u16(K.WORK + 4 * k) - K.BIAS for k in range(256)]
    im = [z.u16(K.WORK + 4 * k + 2) - K.BIAS for k in range(256)]
    tw = [T.FFT_TW[i] | (T.FFT_TW[i + 1] << 8) for i in range(0, len(T.FFT_TW), 2)]
    tw = [v - 65536 if v >= 32768 else v for v in tw]
    sh = TWIDDLE_BITS + 2
    rnd = 1 << (sh - 1)
    q = 64
    ti = 0
    while q >= 1:
        for j in range(q):
            if j:
                w = [(tw[ti + 2 * k], tw[ti + 2 * k + 1]) for k in range(3)]
                ti += 6
            for g in range(j, 256, 4 * q):
                idx = [g + k * q for k in range(4)]
                (ar, br, cr, dr) = [re[i] for i in idx]
                (ai, bi, ci, di) = [im[i] for i in idx]
                ys = [
                    (ar + br + cr + dr, ai + bi + ci + di),
                    (ar + bi - cr - di, ai - br - ci + dr),  # a - jb - c + jd
                    (ar - br + cr - dr, ai - bi + ci - di),
                    (ar - bi - cr + di, ai + br - ci - dr),
                ]  # a + jb - c - jd
                for k, (yr, yi) in enumerate(ys):
                    if k == 0 or j == 0:
                        re[idx[k]], im[idx[k]] = (yr + 2) >> 2, (yi + 2) >> 2
                    else:
                        wr, wi = w[k - 1]
                        re[idx[k]] = (yr * wr - yi * wi + rnd) >> sh
                        im[idx[k]] = (yr * wi + yi * wr + rnd) >> sh
        q //= 4
    for k in range(256):
        z.set16(K.WORK + 4 * k, re[k] + K.BIAS)
        z.set16(K.WORK + 4 * k + 2, im[k] + K.BIAS)
    z.done()


def power(p):
    z = _Arena(p)
    tb = TWIDDLE_BITS
    sh = tb + 2
    rnd = 1 << (sh - 1)

    def fft_out(k):
        off = K.WORK + 4 * T.DIGITREV[k]
        return z.u16(off) - K.BIAS, z.u16(off + 2) - K.BIAS

    for k in range(T.MEL_K_LO, 129):
        m = 256 - k
        a, b = fft_out(k)
        c, d = fft_out(m)
        t = 4 * (k - 1)
        wr = T.POST_TW[t] | (T.POST_TW[t + 1] << 8)
        wi = T.POST_TW[t + 2] | (T.POST_TW[t + 3] << 8)
        wr, wi = (wr - 65536 if wr >= 32768 else wr), (wi - 65536 if wi >= 32768 else wi)
        xr, xi = (a + c) << tb, (b - d) << tb
        br, bi = a - c, b + d
        pp = wi * br + wr * bi
        qq = wi * bi - wr * br
        re, im = (xr + pp + rnd) >> sh, (xi + qq + rnd) >> sh
        z.set32(K.PWR + 4 * k, re * re + im * im)
        if m <= T.MEL_K_HI:  # higher bins feed no band
            re, im = (xr - pp + rnd) >> sh, (qq - xi + rnd) >> sh
            z.set32(K.PWR + 4 * m, re * re + im * im)
    z.done()


def mel(p):
    z = _Arena(p)
    energy = [0] * (N_MELS + 2)
    for k in range(T.MEL_K_LO, T.MEL_K_HI + 1):
        pw = z.u32(K.PWR + 4 * k)
        s, w = T.MEL_SLOT[k - T.MEL_K_LO], T.MEL_W[k - T.MEL_K_LO]
        energy[s] += pw * ((1 << MEL_WEIGHT_BITS) - w)
        energy[s + 1] += pw * w
    for i, e in enumerate(energy):
        z.set32(K.ENERGY + 4 * i, e)
    z.done()


def finish(h, out, ring):
    z = _Arena(h)
    shift = z.u32(K.HDR + 4 * K.H_SHIFT) - 64
    first = z.u32(K.HDR + 4 * K.H_FIRST)
    tbits = LOG_TABLE_BITS
    for c in range(N_MELS):
        x = z.u32(K.ENERGY + 4 * (c + 1))
        lg = 0
        if x:
            m = _msb(x)
            f = (x >> (m - tbits) if m >= tbits else x << (tbits - m)) & ((1 << tbits) - 1)
            lg = (m << LOG_FRAC_BITS) + T.LOG_TAB[f] + LOG_OFFSET - (2 << LOG_FRAC_BITS) * shift
            lg = max(0, lg)
        if first:
            n = lg << 8
        else:
            n = z.u32(K.FLOOR + 4 * c)
            d = (lg << 8) - n
            n += d >> NOISE_RISE_SHIFT if d > 0 else d >> NOISE_FALL_SHIFT
        n = max(n, NOISE_MIN << 8)
        z.set32(K.FLOOR + 4 * c, n)
        y = min(255, max(0, OUT_OFFSET + (((lg - (n >> 8)) * OUT_GAIN) >> 8)))
        out[c] = y
        ring[c] = y
    z.set32(K.HDR + 4 * K.H_FIRST, 0)
    z.done()
