"""Viper kernels of the front end: copy with block peaks, window with block-floating-point
shift, radix-4 FFT, power and mel filterbank, log and noise floor.

All state and tables live in one arena (an `array("i")` made by `new_arena()`), passed to
every kernel as a `ptr16`/`ptr32` argument; everything is at fixed offsets. That is for
speed: the x64 viper emitter (MicroPython 1.29) keeps only the first two locals, arguments
included, in registers (rbx, r12; every other local lives in the stack frame, and each
operation costs 4-8 instructions), and `ptr[constant]` on a register pointer is a single
load or store. So the hot loops walk pointers held in those two locals (`p = ptr16(uint(p)
+ 8)`) and reach everything else at constant offsets from them: the FFT's four butterfly
inputs, the window table next to the FFT buffer, a band's floor next to its energy.

Every kernel has a plain-Python twin in `twins.py` (the same arithmetic on the same arena);
tests on the Unix port check they agree, and the host's numpy reference
(`voicenode_tools.reference.frontend`) checks the whole chain bit for bit.

Integer rules (so that the x64 Unix port and the 32-bit ESP32-S3 give the same bits):
- `ptr16` loads are unsigned. Samples and twiddles are sign-extended by
  `(v ^ 0x8000) - 0x8000`. The FFT buffer holds v + BIAS (8192; |v| < 5800 always), so a
  butterfly needs no sign extension: biases cancel in differences and fold into the rounding
  constants of sums and products.
- `ptr32` is only used for values that are never negative (header, energies, noise floors),
  because an x64 load zero-extends.
- Every intermediate stays below 2**31 (bounds in the comments), and no literal reaches
  2**30 (a bigger literal is no small int on the chip: it is built at run time instead).
"""

import micropython
from micropython import const

from . import tables as T
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

# Arena layout, in bytes. The kernels are written for WINDOW 480 = 3 * STEP, FFT_SIZE 512,
# Q15 window and twiddles, Q7 mel weights (checked in new_arena()).
HDR = const(0)  # int32 words, see _H_*
WORK = const(32)  # 256 complex int16 + BIAS: the FFT buffer
RING = const(1056)  # 480 int16 ^ 0x8000 (= + 32768): the last WINDOW samples
WIN = const(2016)  # 480 uint16: Hann window, Q15
FTW = const(2976)  # 486 int16 + 32768: radix-4 twiddles, in the order fft() walks them
# The split's table, 8 bytes per bin k = 1..128 (power() walks it): int16 indices in the
# arena of FFT outputs k and 256 - k (digit reversal), then the twiddle e^{-2 pi i k / 512}
# (re, im) + 32768.
PTAB = const(3948)
ENERGY = const(4972)  # N_MELS + 2 uint32 slots
FLOOR = const(5140)  # N_MELS uint32: noise floor, Q(LOG_FRAC_BITS + 8)
MSB = const(5300)  # 256 uint8: MSB[v] = floor(log2(v)) (v >= 1), then one spare byte
MW = const(5557)  # 257 uint8, indexed by bin: weight of the upper slot (Q7)
LOGT = const(5814)  # 128 uint8: log2 mantissa table
PWR = const(5944)  # 256 uint32: power of bin k (bins MEL_K_LO..MEL_K_HI are used)
RUNS = const(6968)  # N_MELS + 3 uint8: first bin of each mel slot's run, then the end
SIZE = const(7012)

# Header words (int32).
H_POS = const(0)  # ring write position = oldest sample of the next window
H_SHIFT = const(1)  # the frame's shift + 64
H_FIRST = const(2)  # 1: the next frame seeds the noise floor
H_PEAK = const(3)  # 3 words: per STEP block of the ring, max << 16 | min of sample ^ 0x8000
H_OFF = const(6)  # copy_in's source offset
H_N = const(7)  # and sample count

BIAS = const(8192)
_WORK_H = const(16)  # the offsets in int16 units
_RING_H = const(528)
_WIN_H = const(1008)
_FTW_H = const(1488)
_SHIFT_BIAS = const(64)
# Parameters the kernels use as immediates (an imported name is a global lookup at run
# time); new_arena() checks them against params.py and tables.py.
_K_LO = const(4)  # T.MEL_K_LO
_K_HI = const(239)  # T.MEL_K_HI
_N_MELS = const(40)
_NORM_BIT = const(11)
_LFB = const(6)  # LOG_FRAC_BITS
_LTB = const(7)  # LOG_TABLE_BITS
_LOG_OFFSET = const(384)
_NOISE_MIN = const(448)
_RISE = const(9)  # NOISE_RISE_SHIFT
_FALL = const(3)  # NOISE_FALL_SHIFT
_GAIN = const(32)  # OUT_GAIN
_OUT_OFFSET = const(16)
_FLOOR_OFF = const(42)  # (FLOOR - ENERGY) // 4: a band's floor word after its energy word


@micropython.viper
def _put(d: ptr8, off: int, s: ptr8, n: int):
    i = 0
    while i < n:
        d[off + i] = s[i]
        i += 1


def new_arena():
    """The arena with the tables copied in and the state cleared (SIZE = 7012 bytes)."""
    from array import array

    assert WINDOW == 480 and STEP == 160 and FFT_SIZE == 512 and WINDOW_BITS == 15
    assert TWIDDLE_BITS == 15 and MEL_WEIGHT_BITS == 7 and N_MELS + 2 <= 42
    assert 1 <= T.MEL_K_LO and T.MEL_K_HI <= 255 and NORM_BIT <= 11
    assert (T.MEL_K_LO, T.MEL_K_HI, N_MELS, NORM_BIT, LOG_FRAC_BITS, LOG_TABLE_BITS) == (
        _K_LO,
        _K_HI,
        _N_MELS,
        _NORM_BIT,
        _LFB,
        _LTB,
    ), "fft.py's parameter constants differ from params.py/tables.py"
    assert (LOG_OFFSET, NOISE_MIN, NOISE_RISE_SHIFT, NOISE_FALL_SHIFT, OUT_GAIN, OUT_OFFSET) == (
        _LOG_OFFSET,
        _NOISE_MIN,
        _RISE,
        _FALL,
        _GAIN,
        _OUT_OFFSET,
    ), "fft.py's parameter constants differ from params.py"
    a = array("i", bytes(SIZE))
    for off, tab in (
        (WIN, T.WINDOW_TAB),
        (FTW, T.FFT_TW),
        (LOGT, T.LOG_TAB),
        (MW + T.MEL_K_LO, T.MEL_W),
    ):
        _put(a, off, tab, len(tab))
    _bias(a, FTW + 1, len(T.FFT_TW) // 2)  # twiddles + 32768: one op to sign them
    _ptab(a, T.DIGITREV, T.POST_TW)
    _put(a, MSB, bytes(bytearray(len(bin(v)) - 3 if v else 0 for v in range(256))), 256)
    # Bins are sorted by slot: slot s takes bins RUNS[s] .. RUNS[s + 1] - 1.
    b = bytearray(N_MELS + 3)
    for s in range(N_MELS + 2):
        n = 0
        while n < len(T.MEL_SLOT) and T.MEL_SLOT[n] < s:
            n += 1
        b[s] = T.MEL_K_LO + n
    b[N_MELS + 2] = T.MEL_K_HI + 1
    _put(a, RUNS, b, len(b))
    a[H_FIRST] = 1
    return a


@micropython.viper
def _bias(d: ptr8, off: int, n: int):
    i = 0
    while i < n:
        d[off + 2 * i] ^= 0x80
        i += 1


@micropython.viper
def _ptab(d: ptr16, rev: ptr8, tw: ptr16):
    k = 1
    while k <= 128:
        i = (PTAB >> 1) + 4 * (k - 1)
        d[i] = _WORK_H + (rev[k] << 1)
        d[i + 1] = _WORK_H + (rev[256 - k] << 1)
        d[i + 2] = tw[2 * (k - 1)] ^ 0x8000
        d[i + 3] = tw[2 * (k - 1) + 1] ^ 0x8000
        k += 1


@micropython.viper
def copy_in(d: ptr16, s: ptr16):
    """Append samples to the ring and track each STEP block's peak.

    d is the arena. Header words H_OFF, H_N: copy s[off:off+n]; the caller keeps n within the
    current block (n <= STEP), so nothing wraps inside. d and s (the two register locals)
    then walk the ring and the source, four samples a turn.
    """
    h = ptr32(d)
    i = int(h[6])
    n = int(h[7])
    pos = int(h[0])
    b = 0
    if pos >= 160:
        b = 1
        if pos >= 320:
            b = 2
    mx = 0
    mn = 65535
    if pos != b * 160:  # within a block: go on from its peak so far
        mx = (int(h[3 + b]) >> 16) & 0xFFFF
        mn = int(h[3 + b]) & 0xFFFF
    d = ptr16(uint(h) + RING + 2 * pos)
    s = ptr16(uint(s) + 2 * i)
    e = uint(s) + 2 * n
    pos += n
    while uint(s) + 6 < e:
        v = s[0] ^ 0x8000  # order-preserving unsigned
        d[0] = v
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        v = s[1] ^ 0x8000
        d[1] = v
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        v = s[2] ^ 0x8000
        d[2] = v
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        v = s[3] ^ 0x8000
        d[3] = v
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        s = ptr16(uint(s) + 8)
        d = ptr16(uint(d) + 8)
    while uint(s) < e:
        v = s[0] ^ 0x8000
        d[0] = v
        if v > mx:
            mx = v
        if v < mn:
            mn = v
        s = ptr16(uint(s) + 2)
        d = ptr16(uint(d) + 2)
    h[3 + b] = (mx << 16) | mn
    if pos == 480:
        pos = 0
    h[0] = pos


@micropython.viper
def window(p: ptr16):
    """WORK = ring (oldest first) * Hann, normalised by the frame's shift, plus BIAS.

    The shift s puts the top bit of the window's peak |sample| (from the block peaks) at
    NORM_BIT; s = 0 for silence. Windowed value = (x * w + 2**(14 - s)) >> (15 - s), and
    15 - s >= 4, so |value| <= 4096. s is stored in the header for finish().

    p (the argument) and r are the two register locals: p walks WORK (the window is at the
    constant offset _WIN_H - _WORK_H from it), r walks the ring, four samples a turn.
    """
    r = ptr16(p)
    h = ptr32(p)
    base = uint(p)
    pos = int(h[0])
    peak = 0
    j = 0
    while j < 3:
        v = int(h[3 + j])
        if ((v >> 16) & 0xFFFF) - 32768 > peak:
            peak = ((v >> 16) & 0xFFFF) - 32768
        if 32768 - (v & 0xFFFF) > peak:
            peak = 32768 - (v & 0xFFFF)
        j += 1
    s = 0
    if peak > 0:
        m = 0
        v = peak
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
        s = _NORM_BIT - m
    h[1] = s + _SHIFT_BIAS
    rs = 15 - s
    rnd = 1 << (rs - 1)
    bias = BIAS
    if rs <= 16:
        # Fold the bias into the rounding: |x * w| + (BIAS << 16) < 2**31.
        rnd += BIAS << rs
        bias = 0
    p = ptr16(base + WORK)
    seg = 0
    while seg < 3:
        j = pos + seg * 160
        if j >= 480:
            j -= 480
        r = ptr16(base + RING + 2 * j)
        e = uint(p) + 320
        if bias:
            while uint(p) < e:
                p[0] = (((r[0] - 32768) * p[_WIN_H - _WORK_H] + rnd) >> rs) + BIAS
                p[1] = (((r[1] - 32768) * p[_WIN_H - _WORK_H + 1] + rnd) >> rs) + BIAS
                p[2] = (((r[2] - 32768) * p[_WIN_H - _WORK_H + 2] + rnd) >> rs) + BIAS
                p[3] = (((r[3] - 32768) * p[_WIN_H - _WORK_H + 3] + rnd) >> rs) + BIAS
                p = ptr16(uint(p) + 8)
                r = ptr16(uint(r) + 8)
        else:
            while uint(p) < e:
                p[0] = ((r[0] - 32768) * p[_WIN_H - _WORK_H] + rnd) >> rs
                p[1] = ((r[1] - 32768) * p[_WIN_H - _WORK_H + 1] + rnd) >> rs
                p[2] = ((r[2] - 32768) * p[_WIN_H - _WORK_H + 2] + rnd) >> rs
                p[3] = ((r[3] - 32768) * p[_WIN_H - _WORK_H + 3] + rnd) >> rs
                p = ptr16(uint(p) + 8)
                r = ptr16(uint(r) + 8)
        seg += 1
    e = uint(p) + 64  # zero padding (biased): the FFT overwrites it
    while uint(p) < e:
        p[0] = BIAS
        p[1] = BIAS
        p[2] = BIAS
        p[3] = BIAS
        p = ptr16(uint(p) + 8)


@micropython.viper
def fft(p: ptr16):
    """In-place 256-point complex FFT of WORK (interleaved re, im, + BIAS), radix-4
    decimation in frequency, each stage scaled by 1/4 with rounding; output in base-4
    digit-reversed order, + BIAS.

    Bounds: |z| <= 4096 * sqrt(2) < 5800 at every stage, so a 4-point sum |y| < 2**15 and
    a twiddle product plus rb = 2**30 + 2**16 (rounding and bias) stays in 0..2**31.
    """
    # p (the argument) and rb are the two locals the x64 emitter keeps in registers: p walks
    # the data, so every access is one load or store at a constant offset, and rb is the
    # most used operand. t walks the twiddles.
    rb = 1
    rb <<= 30  # BIAS << 17, built at run time (2**30 is no small int on the chip)
    rb += 65536
    t = ptr16(uint(p) + FTW)
    base = uint(p)
    e = base
    # BEGIN GENERATED fft stages (python -m voicenode_tools.reference.frontend --write-fft)
    # Stage 1: quarter 64, one group. j = 0 has no twiddle; z[240:256] is zero padding, so
    # the fourth input is zero (biased) from j = 48 on.
    p = ptr16(base + 32)
    ar = p[0]
    ai = p[1]
    cr = p[256]
    ci = p[257]
    t0r = ar + cr
    t0i = ai + ci
    t1r = ar - cr
    t1i = ai - ci
    br = p[128]
    bi = p[129]
    dr = p[384]
    di = p[385]
    t2r = br + dr
    t2i = bi + di
    t3r = br - dr
    t3i = bi - di
    p[0] = (t0r + t2r + 2) >> 2
    p[1] = (t0i + t2i + 2) >> 2
    p[128] = (t1r + t3i + 32770) >> 2
    p[129] = (t1i - t3r + 32770) >> 2
    p[256] = (t0r - t2r + 32770) >> 2
    p[257] = (t0i - t2i + 32770) >> 2
    p[384] = (t1r - t3i + 32770) >> 2
    p[385] = (t1i + t3r + 32770) >> 2
    p = ptr16(uint(p) + 4)
    e = base + 224
    while uint(p) < e:
        w1r = t[0] - 32768
        w1i = t[1] - 32768
        w2r = t[2] - 32768
        w2i = t[3] - 32768
        w3r = t[4] - 32768
        w3i = t[5] - 32768
        t = ptr16(uint(t) + 12)
        ar = p[0]
        ai = p[1]
        cr = p[256]
        ci = p[257]
        t0r = ar + cr
        t0i = ai + ci
        t1r = ar - cr
        t1i = ai - ci
        br = p[128]
        bi = p[129]
        dr = p[384]
        di = p[385]
        t2r = br + dr
        t2i = bi + di
        t3r = br - dr
        t3i = bi - di
        p[0] = (t0r + t2r + 2) >> 2
        p[1] = (t0i + t2i + 2) >> 2
        yr = t1r + t3i
        yi = t1i - t3r
        p[128] = (yr * w1r - yi * w1i + rb) >> 17
        p[129] = (yr * w1i + yi * w1r + rb) >> 17
        yr = t0r - t2r
        yi = t0i - t2i
        p[256] = (yr * w2r - yi * w2i + rb) >> 17
        p[257] = (yr * w2i + yi * w2r + rb) >> 17
        yr = t1r - t3i
        yi = t1i + t3r
        p[384] = (yr * w3r - yi * w3i + rb) >> 17
        p[385] = (yr * w3i + yi * w3r + rb) >> 17
        p = ptr16(uint(p) + 4)
    e = base + 288
    while uint(p) < e:
        w1r = t[0] - 32768
        w1i = t[1] - 32768
        w2r = t[2] - 32768
        w2i = t[3] - 32768
        w3r = t[4] - 32768
        w3i = t[5] - 32768
        t = ptr16(uint(t) + 12)
        ar = p[0]
        ai = p[1]
        cr = p[256]
        ci = p[257]
        t0r = ar + cr
        t0i = ai + ci
        t1r = ar - cr
        t1i = ai - ci
        br = p[128]
        bi = p[129]
        t2r = br + 8192
        t2i = bi + 8192
        t3r = br - 8192
        t3i = bi - 8192
        p[0] = (t0r + t2r + 2) >> 2
        p[1] = (t0i + t2i + 2) >> 2
        yr = t1r + t3i
        yi = t1i - t3r
        p[128] = (yr * w1r - yi * w1i + rb) >> 17
        p[129] = (yr * w1i + yi * w1r + rb) >> 17
        yr = t0r - t2r
        yi = t0i - t2i
        p[256] = (yr * w2r - yi * w2i + rb) >> 17
        p[257] = (yr * w2i + yi * w2r + rb) >> 17
        yr = t1r - t3i
        yi = t1i + t3r
        p[384] = (yr * w3r - yi * w3i + rb) >> 17
        p[385] = (yr * w3i + yi * w3r + rb) >> 17
        p = ptr16(uint(p) + 4)
    # Stage 2: quarter 16, four groups (256 bytes apart) per twiddle.
    p = ptr16(base + 32)
    e = base + 1056
    while uint(p) < e:
        ar = p[0]
        ai = p[1]
        cr = p[64]
        ci = p[65]
        t0r = ar + cr
        t0i = ai + ci
        t1r = ar - cr
        t1i = ai - ci
        br = p[32]
        bi = p[33]
        dr = p[96]
        di = p[97]
        t2r = br + dr
        t2i = bi + di
        t3r = br - dr
        t3i = bi - di
        p[0] = (t0r + t2r + 2) >> 2
        p[1] = (t0i + t2i + 2) >> 2
        p[32] = (t1r + t3i + 32770) >> 2
        p[33] = (t1i - t3r + 32770) >> 2
        p[64] = (t0r - t2r + 32770) >> 2
        p[65] = (t0i - t2i + 32770) >> 2
        p[96] = (t1r - t3i + 32770) >> 2
        p[97] = (t1i + t3r + 32770) >> 2
        p = ptr16(uint(p) + 256)
    j = 4
    while j < 64:
        w1r = t[0] - 32768
        w1i = t[1] - 32768
        w2r = t[2] - 32768
        w2i = t[3] - 32768
        w3r = t[4] - 32768
        w3i = t[5] - 32768
        t = ptr16(uint(t) + 12)
        p = ptr16(base + 32 + j)
        while uint(p) < e:
            ar = p[0]
            ai = p[1]
            cr = p[64]
            ci = p[65]
            t0r = ar + cr
            t0i = ai + ci
            t1r = ar - cr
            t1i = ai - ci
            br = p[32]
            bi = p[33]
            dr = p[96]
            di = p[97]
            t2r = br + dr
            t2i = bi + di
            t3r = br - dr
            t3i = bi - di
            p[0] = (t0r + t2r + 2) >> 2
            p[1] = (t0i + t2i + 2) >> 2
            yr = t1r + t3i
            yi = t1i - t3r
            p[32] = (yr * w1r - yi * w1i + rb) >> 17
            p[33] = (yr * w1i + yi * w1r + rb) >> 17
            yr = t0r - t2r
            yi = t0i - t2i
            p[64] = (yr * w2r - yi * w2i + rb) >> 17
            p[65] = (yr * w2i + yi * w2r + rb) >> 17
            yr = t1r - t3i
            yi = t1i + t3r
            p[96] = (yr * w3r - yi * w3i + rb) >> 17
            p[97] = (yr * w3i + yi * w3r + rb) >> 17
            p = ptr16(uint(p) + 256)
        j += 4
    # Stages 3 and 4 together: sixteen groups of 16 values kept in locals (quarter 4 with
    # twiddles W16^(q j), then quarter 1 without), one load and one store per value.
    v11r = t[0] - 32768
    v11i = t[1] - 32768
    v13r = t[4] - 32768
    v13i = t[5] - 32768
    v31r = t[12] - 32768
    v31i = t[13] - 32768
    v33r = t[16] - 32768
    v33i = t[17] - 32768
    p = ptr16(base + 32)
    while uint(p) < e:
        z0r = p[0]
        z0i = p[1]
        z1r = p[2]
        z1i = p[3]
        z2r = p[4]
        z2i = p[5]
        z3r = p[6]
        z3i = p[7]
        z4r = p[8]
        z4i = p[9]
        z5r = p[10]
        z5i = p[11]
        z6r = p[12]
        z6i = p[13]
        z7r = p[14]
        z7i = p[15]
        z8r = p[16]
        z8i = p[17]
        z9r = p[18]
        z9i = p[19]
        z10r = p[20]
        z10i = p[21]
        z11r = p[22]
        z11i = p[23]
        z12r = p[24]
        z12i = p[25]
        z13r = p[26]
        z13i = p[27]
        z14r = p[28]
        z14i = p[29]
        z15r = p[30]
        z15i = p[31]
        t0r = z0r + z8r
        t0i = z0i + z8i
        t1r = z0r - z8r
        t1i = z0i - z8i
        t2r = z4r + z12r
        t2i = z4i + z12i
        t3r = z4r - z12r
        t3i = z4i - z12i
        z0r = (t0r + t2r + 2) >> 2
        z0i = (t0i + t2i + 2) >> 2
        z4r = (t1r + t3i + 32770) >> 2
        z4i = (t1i - t3r + 32770) >> 2
        z8r = (t0r - t2r + 32770) >> 2
        z8i = (t0i - t2i + 32770) >> 2
        z12r = (t1r - t3i + 32770) >> 2
        z12i = (t1i + t3r + 32770) >> 2
        t0r = z1r + z9r
        t0i = z1i + z9i
        t1r = z1r - z9r
        t1i = z1i - z9i
        t2r = z5r + z13r
        t2i = z5i + z13i
        t3r = z5r - z13r
        t3i = z5i - z13i
        z1r = (t0r + t2r + 2) >> 2
        z1i = (t0i + t2i + 2) >> 2
        yr = t1r + t3i
        yi = t1i - t3r
        z5r = (yr * v11r - yi * v11i + rb) >> 17
        z5i = (yr * v11i + yi * v11r + rb) >> 17
        yr = t0r - t2r
        yi = t0i - t2i
        z9r = ((yr + yi) * 23170 + rb) >> 17
        z9i = ((yi - yr) * 23170 + rb) >> 17
        yr = t1r - t3i
        yi = t1i + t3r
        z13r = (yr * v13r - yi * v13i + rb) >> 17
        z13i = (yr * v13i + yi * v13r + rb) >> 17
        t0r = z2r + z10r
        t0i = z2i + z10i
        t1r = z2r - z10r
        t1i = z2i - z10i
        t2r = z6r + z14r
        t2i = z6i + z14i
        t3r = z6r - z14r
        t3i = z6i - z14i
        z2r = (t0r + t2r + 2) >> 2
        z2i = (t0i + t2i + 2) >> 2
        yr = t1r + t3i
        yi = t1i - t3r
        z6r = ((yr + yi) * 23170 + rb) >> 17
        z6i = ((yi - yr) * 23170 + rb) >> 17
        yr = t0r - t2r
        yi = t0i - t2i
        z10r = (yi * 32767 + rb) >> 17
        z10i = (rb - yr * 32767) >> 17
        yr = t1r - t3i
        yi = t1i + t3r
        z14r = ((yi - yr) * 23170 + rb) >> 17
        z14i = (rb - (yr + yi) * 23170) >> 17
        t0r = z3r + z11r
        t0i = z3i + z11i
        t1r = z3r - z11r
        t1i = z3i - z11i
        t2r = z7r + z15r
        t2i = z7i + z15i
        t3r = z7r - z15r
        t3i = z7i - z15i
        z3r = (t0r + t2r + 2) >> 2
        z3i = (t0i + t2i + 2) >> 2
        yr = t1r + t3i
        yi = t1i - t3r
        z7r = (yr * v31r - yi * v31i + rb) >> 17
        z7i = (yr * v31i + yi * v31r + rb) >> 17
        yr = t0r - t2r
        yi = t0i - t2i
        z11r = ((yi - yr) * 23170 + rb) >> 17
        z11i = (rb - (yr + yi) * 23170) >> 17
        yr = t1r - t3i
        yi = t1i + t3r
        z15r = (yr * v33r - yi * v33i + rb) >> 17
        z15i = (yr * v33i + yi * v33r + rb) >> 17
        t0r = z0r + z2r
        t0i = z0i + z2i
        t1r = z0r - z2r
        t1i = z0i - z2i
        t2r = z1r + z3r
        t2i = z1i + z3i
        t3r = z1r - z3r
        t3i = z1i - z3i
        p[0] = (t0r + t2r + 2) >> 2
        p[1] = (t0i + t2i + 2) >> 2
        p[2] = (t1r + t3i + 32770) >> 2
        p[3] = (t1i - t3r + 32770) >> 2
        p[4] = (t0r - t2r + 32770) >> 2
        p[5] = (t0i - t2i + 32770) >> 2
        p[6] = (t1r - t3i + 32770) >> 2
        p[7] = (t1i + t3r + 32770) >> 2
        t0r = z4r + z6r
        t0i = z4i + z6i
        t1r = z4r - z6r
        t1i = z4i - z6i
        t2r = z5r + z7r
        t2i = z5i + z7i
        t3r = z5r - z7r
        t3i = z5i - z7i
        p[8] = (t0r + t2r + 2) >> 2
        p[9] = (t0i + t2i + 2) >> 2
        p[10] = (t1r + t3i + 32770) >> 2
        p[11] = (t1i - t3r + 32770) >> 2
        p[12] = (t0r - t2r + 32770) >> 2
        p[13] = (t0i - t2i + 32770) >> 2
        p[14] = (t1r - t3i + 32770) >> 2
        p[15] = (t1i + t3r + 32770) >> 2
        t0r = z8r + z10r
        t0i = z8i + z10i
        t1r = z8r - z10r
        t1i = z8i - z10i
        t2r = z9r + z11r
        t2i = z9i + z11i
        t3r = z9r - z11r
        t3i = z9i - z11i
        p[16] = (t0r + t2r + 2) >> 2
        p[17] = (t0i + t2i + 2) >> 2
        p[18] = (t1r + t3i + 32770) >> 2
        p[19] = (t1i - t3r + 32770) >> 2
        p[20] = (t0r - t2r + 32770) >> 2
        p[21] = (t0i - t2i + 32770) >> 2
        p[22] = (t1r - t3i + 32770) >> 2
        p[23] = (t1i + t3r + 32770) >> 2
        t0r = z12r + z14r
        t0i = z12i + z14i
        t1r = z12r - z14r
        t1i = z12i - z14i
        t2r = z13r + z15r
        t2i = z13i + z15i
        t3r = z13r - z15r
        t3i = z13i - z15i
        p[24] = (t0r + t2r + 2) >> 2
        p[25] = (t0i + t2i + 2) >> 2
        p[26] = (t1r + t3i + 32770) >> 2
        p[27] = (t1i - t3r + 32770) >> 2
        p[28] = (t0r - t2r + 32770) >> 2
        p[29] = (t0i - t2i + 32770) >> 2
        p[30] = (t1r - t3i + 32770) >> 2
        p[31] = (t1i + t3r + 32770) >> 2
        p = ptr16(uint(p) + 64)
    # END GENERATED fft stages


@micropython.viper
def power(p: ptr16):
    """Split the 256-point complex FFT into the 512-point real spectrum scaled by 1/512:
    PWR[k] = re^2 + im^2 for bins MEL_K_LO..MEL_K_HI.

    Bins k and 256 - k come from the same pair of FFT outputs; bins above MEL_K_HI feed no
    band and are skipped. q walks PTAB (p and q are the two register locals). The rounding
    constant 2**16 of the four (.. + 2**16) >> 17 is folded into xr (as 2 << 15) and qq.
    Bound: the powers of a normalised frame sum to less than 2**24 (Parseval).
    """
    q = ptr16(uint(p) + PTAB + 8 * (_K_LO - 1))
    base = uint(p)
    pk = ptr32(base + PWR + 4 * _K_LO)
    pm = ptr32(base + PWR + 4 * (256 - _K_LO))
    e = base + PTAB + 8 * (255 - _K_HI)  # k < 256 - MEL_K_HI: bin 256 - k unused
    both = 0
    while both < 2:
        while uint(q) < e:
            ar = p[q[0]]
            ai = p[q[0] + 1]
            cr = p[q[1]]
            ci = p[q[1] + 1]
            wr = q[2] - 32768
            wi = q[3] - 32768
            xr = (ar + cr - (2 * BIAS - 2)) << 15
            xi = (ai - ci) << 15
            br = ar - cr
            bi = ai + ci - 2 * BIAS
            pp = wi * br + wr * bi
            qq = wi * bi - wr * br + 65536
            re = (xr + pp) >> 17
            im = (xi + qq) >> 17
            pk[0] = re * re + im * im
            if both:
                re = (xr - pp) >> 17
                im = (qq - xi) >> 17
                pm[0] = re * re + im * im  # k = 128: the same bin, the same value
            q = ptr16(uint(q) + 8)
            pk = ptr32(uint(pk) + 4)
            pm = ptr32(uint(pm) - 4)
        e = base + PTAB + 8 * 128
        both += 1


@micropython.viper
def mel(pw: ptr32):
    """ENERGY[s] = sum over bins of PWR * weight, Q7 triangles: a bin in slot s's run gives
    128 - w to slot s and w to slot s + 1. Per run: lo = 128 * sum(P) - hi, hi = sum(P * w).
    Every sum < 2**31: the powers sum to less than 2**24 (see power()).

    pw (the argument) walks the powers and w the weights: the two register locals."""
    w = ptr8(pw)
    base = uint(pw)
    b = ptr8(pw)
    e = ptr32(base + ENERGY)
    k = int(b[RUNS])
    pw = ptr32(base + PWR + 4 * k)
    w = ptr8(base + MW + k)
    prev = 0
    s = 0
    while s < 42:
        end = base + MW + b[RUNS + s + 1]
        tot = 0
        hi = 0
        while uint(w) + 1 < end:  # two bins a turn
            tot += pw[0] + pw[1]
            hi += pw[0] * w[0] + pw[1] * w[1]
            pw = ptr32(uint(pw) + 8)
            w = ptr8(uint(w) + 2)
        if uint(w) < end:
            tot += pw[0]
            hi += pw[0] * w[0]
            pw = ptr32(uint(pw) + 4)
            w = ptr8(uint(w) + 1)
        e[s] = (tot << 7) - hi + prev
        prev = hi
        s += 1


@micropython.viper
def finish(h: ptr32, o: ptr8, r: ptr8):
    """log2 of each band (Q6, undoing the frame's shift), noise floor update, output bytes.

    Writes N_MELS bytes to o[0:] and r[0:] (the caller passes the ring slot). Header word
    H_FIRST = 1 seeds the floor (and is cleared). h then walks the energies (the band's
    floor is at the constant offset FLOOR - ENERGY from them) and o the output: the two
    register locals. The top bit of an energy comes from the MSB byte table.
    """
    lt = ptr8(uint(h) + LOGT)
    mt = ptr8(uint(h) + MSB)
    shift = int(h[1]) - _SHIFT_BIAS
    first = int(h[2])
    h[2] = 0
    base = _LOG_OFFSET - ((2 << _LFB) * shift)
    e = uint(h) + ENERGY + 4 * _N_MELS
    h = ptr32(uint(h) + ENERGY)
    while uint(h) < e:
        x = int(h[1])  # band c's energy is slot c + 1
        lg = 0
        if x:
            if x >> 16:
                if x >> 24:
                    m = 24 + mt[x >> 24]
                else:
                    m = 16 + mt[x >> 16]
            elif x >> 8:
                m = 8 + mt[x >> 8]
            else:
                m = mt[x]
            if m >= _LTB:
                f = (x >> (m - _LTB)) & ((1 << _LTB) - 1)
            else:
                f = (x << (_LTB - m)) & ((1 << _LTB) - 1)
            lg = (m << _LFB) + lt[f] + base
            if lg < 0:
                lg = 0
        if first:
            n = lg << 8
        else:
            n = int(h[_FLOOR_OFF])
            d = (lg << 8) - n
            if d > 0:
                n += d >> _RISE
            else:
                n += d >> _FALL
        if n < (_NOISE_MIN << 8):
            n = _NOISE_MIN << 8
        h[_FLOOR_OFF] = n
        y = _OUT_OFFSET + (((lg - (n >> 8)) * _GAIN) >> 8)
        if y < 0:
            y = 0
        if y > 255:
            y = 255
        o[0] = y
        r[0] = y
        h = ptr32(uint(h) + 4)
        o = ptr8(uint(o) + 1)
        r = ptr8(uint(r) + 1)
