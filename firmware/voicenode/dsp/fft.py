"""Viper kernels of the front end: window, block-floating-point shift, radix-4 FFT, power and
mel filterbank, log and noise floor.

Every kernel has a plain-Python twin in `twins.py`; tests on the Unix port check they agree,
and the host's numpy reference (`voicenode_tools.reference.frontend`) checks the whole chain.

Integer rules (so that the x64 Unix port and the 32-bit ESP32-S3 give the same bits):
- `ptr16` loads are unsigned: samples and FFT values are sign-extended by `(v ^ 0x8000) - 0x8000`.
- `ptr32` is only used for values that are never negative (energies, noise floors), because
  an x64 load zero-extends.
- Every intermediate stays below 2**31 (bounds in the comments).
"""

import micropython

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
    STEP,
    TWIDDLE_BITS,
    WINDOW,
    WINDOW_BITS,
)


@micropython.viper
def copy_in(ring, pos: int, src, off: int, n: int):
    """ring[pos:pos+n] = src[off:off+n] (int16; the caller keeps pos+n within the ring)."""
    d = ptr16(ring)
    s = ptr16(src)
    i = 0
    while i < n:
        d[pos + i] = s[off + i]
        i += 1


@micropython.viper
def window(ring, pos: int, wtab, out) -> int:
    """out[0:WINDOW] = ring (oldest sample at pos) * Hann in Q15, rounded; out[WINDOW:] = 0.

    Returns the peak absolute windowed value (at most 32767).
    """
    r = ptr16(ring)
    w = ptr16(wtab)
    o = ptr16(out)
    nw = int(WINDOW)
    nfft = int(FFT_SIZE)
    wb = int(WINDOW_BITS)
    rnd = 1 << (wb - 1)
    peak = 0
    i = 0
    j = pos
    while i < nw:
        x = (r[j] ^ 0x8000) - 0x8000
        v = (x * w[i] + rnd) >> wb  # |x * w| < 2**30
        o[i] = v
        if v < 0:
            v = 0 - v
        if v > peak:
            peak = v
        i += 1
        j += 1
        if j == nw:
            j = 0
    while i < nfft:
        o[i] = 0
        i += 1
    return peak


@micropython.viper
def norm_shift(peak: int) -> int:
    """The left shift that moves the top bit of peak to NORM_BIT (negative: right shift)."""
    if peak == 0:
        return 0
    m = 0
    if peak >> 8:
        peak >>= 8
        m += 8
    if peak >> 4:
        peak >>= 4
        m += 4
    if peak >> 2:
        peak >>= 2
        m += 2
    if peak >> 1:
        m += 1
    return int(NORM_BIT) - m


@micropython.viper
def normalise(buf, s: int):
    """buf <<= s in place (s < 0: rounded right shift). Afterwards |buf| <= 2**(NORM_BIT+1)."""
    p = ptr16(buf)
    n = int(FFT_SIZE)
    i = 0
    if s >= 0:
        while i < n:
            p[i] = (((p[i] ^ 0x8000) - 0x8000)) << s
            i += 1
    else:
        s = 0 - s
        h = 1 << (s - 1)
        while i < n:
            p[i] = (((p[i] ^ 0x8000) - 0x8000) + h) >> s
            i += 1


@micropython.viper
def fft256(buf, tw):
    """In-place 256-point complex FFT of interleaved int16 (re, im), radix-4 decimation in
    frequency, each stage scaled by 1/4 with rounding. Output in base-4 digit-reversed order.

    tw holds the twiddles W^j, W^2j, W^3j (Q15 re, im) for j = 1..L-1 of each stage in the
    order used here. Bounds: inputs |z| <= 2**12.5, so a 4-point sum stays below 2**15 and a
    product with a Q15 twiddle below 2**30.
    """
    p = ptr16(buf)
    t = ptr16(tw)
    tb = int(TWIDDLE_BITS) + 2
    rnd = 1 << (tb - 1)
    n = int(FFT_SIZE)  # int16 units: 256 complex values
    q2 = n >> 2  # quarter length in int16 units (64 complex)
    ti = 0
    while q2 >= 2:
        step = q2 << 2
        j = 0
        w1r = 0
        w1i = 0
        w2r = 0
        w2i = 0
        w3r = 0
        w3i = 0
        while j < q2:
            if j:
                w1r = (t[ti] ^ 0x8000) - 0x8000
                w1i = (t[ti + 1] ^ 0x8000) - 0x8000
                w2r = (t[ti + 2] ^ 0x8000) - 0x8000
                w2i = (t[ti + 3] ^ 0x8000) - 0x8000
                w3r = (t[ti + 4] ^ 0x8000) - 0x8000
                w3i = (t[ti + 5] ^ 0x8000) - 0x8000
                ti += 6
            g = j
            while g < n:
                ib = g + q2
                ic = ib + q2
                id = ic + q2
                ar = (p[g] ^ 0x8000) - 0x8000
                ai = (p[g + 1] ^ 0x8000) - 0x8000
                br = (p[ib] ^ 0x8000) - 0x8000
                bi = (p[ib + 1] ^ 0x8000) - 0x8000
                cr = (p[ic] ^ 0x8000) - 0x8000
                ci = (p[ic + 1] ^ 0x8000) - 0x8000
                dr = (p[id] ^ 0x8000) - 0x8000
                di = (p[id + 1] ^ 0x8000) - 0x8000
                t0r = ar + cr
                t0i = ai + ci
                t1r = ar - cr
                t1i = ai - ci
                t2r = br + dr
                t2i = bi + di
                t3r = br - dr
                t3i = bi - di
                p[g] = (t0r + t2r + 2) >> 2
                p[g + 1] = (t0i + t2i + 2) >> 2
                y1r = t1r + t3i
                y1i = t1i - t3r
                y2r = t0r - t2r
                y2i = t0i - t2i
                y3r = t1r - t3i
                y3i = t1i + t3r
                if j:
                    p[ib] = (y1r * w1r - y1i * w1i + rnd) >> tb
                    p[ib + 1] = (y1r * w1i + y1i * w1r + rnd) >> tb
                    p[ic] = (y2r * w2r - y2i * w2i + rnd) >> tb
                    p[ic + 1] = (y2r * w2i + y2i * w2r + rnd) >> tb
                    p[id] = (y3r * w3r - y3i * w3i + rnd) >> tb
                    p[id + 1] = (y3r * w3i + y3i * w3r + rnd) >> tb
                else:
                    p[ib] = (y1r + 2) >> 2
                    p[ib + 1] = (y1i + 2) >> 2
                    p[ic] = (y2r + 2) >> 2
                    p[ic + 1] = (y2i + 2) >> 2
                    p[id] = (y3r + 2) >> 2
                    p[id + 1] = (y3i + 2) >> 2
                g += step
            j += 2
        q2 >>= 2


@micropython.viper
def power_mel(buf, rev, ptw, slot, wts, energy, klo: int, khi: int):
    """Split the 256-point complex FFT (digit-reversed in buf) into the 512-point real
    spectrum scaled by 1/512, and add each bin's power to its two mel slots.

    energy (uint32, N_MELS + 2 slots) is cleared first. Bins klo..khi only (1 <= klo,
    khi <= 255). Bound: the sum of all powers is below 2**24 (Parseval on a normalised
    frame), so each slot stays below 2**31 with Q7 weights.
    """
    p = ptr16(buf)
    rv = ptr8(rev)
    t = ptr16(ptw)
    sl = ptr8(slot)
    ww = ptr8(wts)
    e = ptr32(energy)
    tb = int(TWIDDLE_BITS)
    sh = tb + 2
    rnd = 1 << (sh - 1)
    wb = int(MEL_WEIGHT_BITS)
    half = int(FFT_SIZE) >> 1
    i = 0
    ns = int(N_MELS) + 2
    while i < ns:
        e[i] = 0
        i += 1
    k = 1
    ti = 0
    while k <= (half >> 1):
        m = half - k
        ia = rv[k] << 1
        ic = rv[m] << 1
        a = (p[ia] ^ 0x8000) - 0x8000
        b = (p[ia + 1] ^ 0x8000) - 0x8000
        c = (p[ic] ^ 0x8000) - 0x8000
        d = (p[ic + 1] ^ 0x8000) - 0x8000
        wr = (t[ti] ^ 0x8000) - 0x8000
        wi = (t[ti + 1] ^ 0x8000) - 0x8000
        ti += 2
        xr = (a + c) << tb
        xi = (b - d) << tb
        br = a - c
        bi = b + d
        pp = wi * br + wr * bi
        qq = wi * bi - wr * br
        if k >= klo and k <= khi:
            re = (xr + pp + rnd) >> sh
            im = (xi + qq + rnd) >> sh
            pw = re * re + im * im
            s = sl[k - klo]
            x = pw * ww[k - klo]
            e[s] += (pw << wb) - x
            e[s + 1] += x
        if m != k and m >= klo and m <= khi:
            re = (xr - pp + rnd) >> sh
            im = (qq - xi + rnd) >> sh
            pw = re * re + im * im
            s = sl[m - klo]
            x = pw * ww[m - klo]
            e[s] += (pw << wb) - x
            e[s + 1] += x
        k += 1


@micropython.viper
def finish(energy, logtab, shift: int, floor, out, ring, roff: int, first: int):
    """log2 of each band (Q6, undoing the frame's shift), noise floor update, output bytes.

    Writes N_MELS bytes to out[0:] and to ring[roff:]. first=1 seeds the floor.
    """
    e = ptr32(energy)
    lt = ptr8(logtab)
    fl = ptr32(floor)
    o = ptr8(out)
    r = ptr8(ring)
    nm = int(N_MELS)
    lfb = int(LOG_FRAC_BITS)
    ltb = int(LOG_TABLE_BITS)
    fmask = (1 << ltb) - 1
    base = int(LOG_OFFSET) - ((2 << lfb) * shift)
    fmin = int(NOISE_MIN) << 8
    rise = int(NOISE_RISE_SHIFT)
    fall = int(NOISE_FALL_SHIFT)
    gain = int(OUT_GAIN)
    ooff = int(OUT_OFFSET)
    c = 0
    while c < nm:
        x = e[c + 1]
        lg = 0
        if x:
            m = 0
            v = x
            if v >> 16:
                v >>= 16
                m += 16
            if v >> 8:
                v >>= 8
                m += 8
            if v >> 4:
                v >>= 4
                m += 4
            if v >> 2:
                v >>= 2
                m += 2
            if v >> 1:
                m += 1
            if m >= ltb:
                f = (x >> (m - ltb)) & fmask
            else:
                f = (x << (ltb - m)) & fmask
            lg = (m << lfb) + lt[f] + base
            if lg < 0:
                lg = 0
        if first:
            n = lg << 8
        else:
            n = fl[c]
            d = (lg << 8) - n
            if d > 0:
                n += d >> rise
            else:
                n += d >> fall
        if n < fmin:
            n = fmin
        fl[c] = n
        y = ooff + (((lg - (n >> 8)) * gain) >> 8)
        if y < 0:
            y = 0
        if y > 255:
            y = 255
        o[c] = y
        r[roff + c] = y
        c += 1
