"""Viper kernels of the int8 streaming layers, each with its plain-Python twin.

One call of `layer_step(x, st, cw, cfg)` feeds one input vector to one layer: it writes the
vector into the layer's ring, advances the stride counter and, when the layer emits, gathers
the taps and computes every output channel (dot product, fixed-point requantisation, clamp,
optional logistic table) into the layer's output bytes. It returns 1 if it emitted, else 0.
Nothing is allocated: all buffers are made once by the loader (`voicenode.nn.model`).

Buffers of one layer (offsets in `cfg`):
  st   bytearray  [out: out_ch][ring: span*in_ch][window: k*in_ch]   (state, mutable)
  cw   bytearray  [channels: out_ch * 3 int32][weights: int8 ^ 0x80][table: 256]  (constant)
  cfg  array("i") the integers below (wpos and phase change as the layer runs)

Arithmetic (docs/MODEL_FORMAT.md), every intermediate within signed 32 bits so that the
64-bit Unix port and the 32-bit ESP32-S3 give the same bytes:
  weights are stored as w ^ 0x80 = w + 128 (unsigned), so the inner loop multiplies two
  unsigned bytes (no sign extension) and the kernel subtracts 128 * sum(x) once per channel
  (once per layer for conv/dense); the channel record holds (bias - x_zp * sum(w)) + 2**29
  (non-negative: a ptr32 load is zero-extended on the 64-bit port), m and s.
"""

import micropython
from micropython import const

# cfg indices
CFG_KIND = const(0)  # 1 conv, 2 dwconv, 3 dense
CFG_ACT = const(1)  # 0 none, 1 relu, 2 sigmoid (table)
CFG_K = const(2)
CFG_STRIDE = const(3)
CFG_DIL = const(4)
CFG_IN = const(5)
CFG_OUT = const(6)
CFG_SPAN = const(7)  # (k - 1) * dilation + 1 input vectors kept in the ring
CFG_WPOS = const(8)  # ring slot of the next input
CFG_PHASE = const(9)  # inputs since the last emission
CFG_ZO = const(10)  # output zero point
CFG_LO = const(11)  # lower clamp (zo after ReLU, else 0)
CFG_RING = const(12)  # offset of the ring in st
CFG_WIN = const(13)  # offset of the window in st
CFG_W = const(14)  # offset of the weights in cw
CFG_TAB = const(15)  # offset of the table in cw (0: no table)
CFG_ZI = const(16)  # input zero point (ring fill on reset)
CFG_LEN = const(17)

BIAS_OFFSET = const(0x20000000)  # 2**29, a small int on the chip
_DWCONV = const(2)


@micropython.viper
def layer_step(x, st, cw, cfg) -> int:
    c = ptr32(cfg)
    px = ptr8(x)
    sbase = int(ptr8(st))
    cbase = int(ptr8(cw))
    k = int(c[CFG_K])
    nin = int(c[CFG_IN])
    # 1. the new input into the ring (kernels of one tap read the input directly)
    newest = 0
    ring = sbase + int(c[CFG_RING])
    span = int(c[CFG_SPAN])
    if k > 1:
        newest = int(c[CFG_WPOS])
        dst = ptr8(ring + newest * nin)
        i = 0
        while i < nin:
            dst[i] = px[i]
            i += 1
        wpos = newest + 1
        if wpos == span:
            wpos = 0
        c[CFG_WPOS] = wpos
    # 2. stride: emit on every stride-th input
    phase = int(c[CFG_PHASE]) + 1
    if phase < int(c[CFG_STRIDE]):
        c[CFG_PHASE] = phase
        return 0
    c[CFG_PHASE] = 0
    # 3. the taps, oldest first, side by side in the window
    xa = int(px)
    if k > 1:
        d = int(c[CFG_DIL])
        xa = sbase + int(c[CFG_WIN])
        j = 0
        while j < k:
            f = newest - (k - 1 - j) * d
            if f < 0:
                f += span
            src = ptr8(ring + f * nin)
            dst = ptr8(xa + j * nin)
            i = 0
            while i < nin:
                dst[i] = src[i]
                i += 1
            j += 1
    nout = int(c[CFG_OUT])
    zo = int(c[CFG_ZO])
    lo = int(c[CFG_LO])
    tab = int(c[CFG_TAB])
    ptab = ptr8(cbase + tab)
    po = ptr8(sbase)
    wbase = cbase + int(c[CFG_W])
    pxa = ptr8(xa)
    if int(c[CFG_KIND]) == _DWCONV:
        o = 0
        while o < nout:
            pp = ptr32(cbase + o * 12)
            acc = int(pp[0]) - BIAS_OFFSET
            pw = ptr8(wbase + o * k)
            sx = 0
            xi = o
            j = 0
            while j < k:
                xv = pxa[xi]
                acc += pw[j] * xv
                sx += xv
                xi += nin
                j += 1
            acc -= sx << 7
            m = int(pp[1])
            s = int(pp[2])
            t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
            v = zo + ((t + ((1 << s) >> 1)) >> s)
            if v < lo:
                v = lo
            if v > 255:
                v = 255
            if tab:
                v = ptab[v]
            po[o] = v
            o += 1
        return 1
    # conv / dense: one contiguous dot product of n = k * in_ch terms per output channel
    n = k * nin
    sx = 0
    i = 0
    while i < n:
        sx += pxa[i]
        i += 1
    sx128 = sx << 7
    n4 = n - (n & 3)
    o = 0
    wa = wbase
    while o < nout:
        pp = ptr32(cbase + o * 12)
        acc = int(pp[0]) - BIAS_OFFSET - sx128
        xp = xa
        wend = wa + n4
        while wa < wend:
            a = ptr8(wa)
            b = ptr8(xp)
            acc += a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
            wa += 4
            xp += 4
        wend += n & 3
        while wa < wend:
            a = ptr8(wa)
            b = ptr8(xp)
            acc += a[0] * b[0]
            wa += 1
            xp += 1
        m = int(pp[1])
        s = int(pp[2])
        t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
        v = zo + ((t + ((1 << s) >> 1)) >> s)
        if v < lo:
            v = lo
        if v > 255:
            v = 255
        if tab:
            v = ptab[v]
        po[o] = v
        o += 1
    return 1


def layer_step_py(x, st, cw, cfg):
    """Plain-Python twin of `layer_step` (same buffers, same integers; slow)."""
    k = cfg[CFG_K]
    nin = cfg[CFG_IN]
    ring = cfg[CFG_RING]
    span = cfg[CFG_SPAN]
    newest = 0
    if k > 1:
        newest = cfg[CFG_WPOS]
        for i in range(nin):
            st[ring + newest * nin + i] = x[i]
        cfg[CFG_WPOS] = (newest + 1) % span
    phase = cfg[CFG_PHASE] + 1
    if phase < cfg[CFG_STRIDE]:
        cfg[CFG_PHASE] = phase
        return 0
    cfg[CFG_PHASE] = 0
    if k > 1:
        d = cfg[CFG_DIL]
        win = cfg[CFG_WIN]
        for j in range(k):
            f = (newest - (k - 1 - j) * d) % span
            for i in range(nin):
                st[win + j * nin + i] = st[ring + f * nin + i]
        xs = st
        xo = win
    else:
        xs = x
        xo = 0
    nout = cfg[CFG_OUT]
    wb = cfg[CFG_W]
    tab = cfg[CFG_TAB]
    for o in range(nout):
        bias = _u32(cw, o * 12) - BIAS_OFFSET
        m = _u32(cw, o * 12 + 4)
        s = _u32(cw, o * 12 + 8)
        acc = bias
        if cfg[CFG_KIND] == _DWCONV:
            for j in range(k):
                xv = xs[xo + j * nin + o]
                acc += (cw[wb + o * k + j] - 128) * xv
        else:
            n = k * nin
            for i in range(n):
                acc += (cw[wb + o * n + i] - 128) * xs[xo + i]
        t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
        v = cfg[CFG_ZO] + ((t + ((1 << s) >> 1)) >> s)
        v = min(max(v, cfg[CFG_LO]), 255)
        if tab:
            v = cw[tab + v]
        st[o] = v
    return 1


def _u32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


@micropython.viper
def xor80(buf, start: int, n: int):
    """Flip the top bit of n bytes from start: int8 two's complement <-> w + 128."""
    p = ptr8(int(ptr8(buf)) + start)
    i = 0
    while i < n:
        p[i] = p[i] ^ 0x80
        i += 1


def xor80_py(buf, start, n):
    for i in range(start, start + n):
        buf[i] ^= 0x80


@micropython.viper
def sum_u8(buf, start: int, n: int) -> int:
    """Sum of n unsigned bytes from start."""
    p = ptr8(int(ptr8(buf)) + start)
    s = 0
    i = 0
    while i < n:
        s += p[i]
        i += 1
    return s


def sum_u8_py(buf, start, n):
    return sum(buf[start : start + n])
