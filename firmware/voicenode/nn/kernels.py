"""Viper kernels of the int8 streaming layers, each with its plain-Python twin.

One call of `layer_step(x, buf, 0, cfg)` feeds one input vector `x` to one layer: it writes
the vector into the layer's ring, advances the stride counter and, when the layer emits,
computes every output channel (dot product, fixed-point requantisation, clamp, optional
logistic table) into the layer's output bytes. It returns 1 if it emitted, else 0.
Nothing is allocated: all buffers are made once by the loader (`voicenode.nn.model`).

One bytearray per layer holds everything (offsets in `cfg`, an array("i")):
  [channels: out_ch * 2 int32 (bias + 2**29, m << 8 | s)][weights: int8 ^ 0x80 (dwconv: int8)]
  [table: 256]
  [out: out_ch][ring: span * in_ch, k > 1 only][window: k * in_ch, dilated conv only]
The channel records come first so that they are 4-byte aligned (the ESP32-S3 faults on
unaligned 32-bit loads); both words are non-negative (m < 2**15, s <= 30). The ring holds
the last span = (k-1)*d + 1 inputs once: input n goes to row n % span, and after a write
row p = CFG_WPOS is the oldest (tap 0). Tap j is row (p + j*d) % span: a depthwise layer
walks each channel's taps d rows apart and steps back span rows once where they pass the
end; a conv with d == 1 reads the ring in place as two contiguous pieces (rows p..span-1,
then 0..p-1); a dilated conv gathers its k taps into the window first.

Arithmetic (docs/MODEL_FORMAT.md), every intermediate within signed 32 bits so that the
64-bit Unix port and the 32-bit ESP32-S3 give the same bytes: weights are stored as
w ^ 0x80 = w + 128 (unsigned), so the inner loop multiplies two unsigned bytes (no sign
extension) and the kernel subtracts 128 * sum(x) once per layer (depthwise layers, with k
terms per channel, keep signed weights and fix the sign per tap instead); the channel record holds (bias - x_zp * sum(w)) + 2**29, non-negative because a
ptr32 load is zero-extended on the 64-bit port.

Speed: viper keeps only the first three locals of a function in machine registers, and the
arguments come first. So the hot loops walk the argument pointers `x` (inputs) and `w`
(weights) and sum into the argument `acc` (the caller passes 0); everything else lives on the
stack and is touched once per channel, not once per multiply.
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
CFG_SPAN = const(7)  # (k - 1) * dilation + 1 inputs kept in the ring
CFG_WPOS = const(8)  # ring row of the next input (0 .. span-1), the oldest once written
CFG_PHASE = const(9)  # inputs since the last emission
CFG_ZO = const(10)  # output zero point
CFG_LO = const(11)  # lower clamp (zo after ReLU, else 0)
CFG_RING = const(12)  # offset of the ring in buf
CFG_WIN = const(13)  # offset of the gather window in buf (0: taps read in place)
CFG_W = const(14)  # offset of the weights in buf
CFG_TAB = const(15)  # offset of the table in buf (0: no table)
CFG_ZI = const(16)  # input zero point (ring fill on reset)
CFG_OUTOFF = const(17)  # offset of the output bytes in buf
CFG_LEN = const(18)

BIAS_OFFSET = const(0x20000000)  # 2**29, a small int on the chip
_DWCONV = const(2)


@micropython.viper
def layer_step(x: ptr8, w: ptr8, acc: int, cfg: ptr32) -> int:
    c = cfg
    base = int(w)
    k = int(c[CFG_K])
    n_in = int(c[CFG_IN])
    d = int(c[CFG_DIL])
    # 1. the new input into the ring (one-tap layers read the input directly)
    xa = int(x)
    span = 1
    p = 0
    ring = 0
    if k > 1:
        span = int(c[CFG_SPAN])
        p = int(c[CFG_WPOS])
        ring = base + int(c[CFG_RING])
        dst = ptr8(ring + p * n_in)
        i = 0
        while i < n_in:
            dst[i] = x[i]
            i += 1
        p += 1
        if p == span:
            p = 0
        c[CFG_WPOS] = p
        xa = ring + p * n_in  # row p: the oldest of the last `span` inputs (tap 0)
    # 2. stride: emit on every stride-th input
    phase = int(c[CFG_PHASE]) + 1
    if phase < int(c[CFG_STRIDE]):
        c[CFG_PHASE] = phase
        return 0
    c[CFG_PHASE] = 0
    nout = int(c[CFG_OUT])
    zo = int(c[CFG_ZO])
    lo = int(c[CFG_LO])
    tab = int(c[CFG_TAB])
    ptab = ptr8(base + tab)
    po = ptr8(base + int(c[CFG_OUTOFF]))
    wbase = base + int(c[CFG_W])
    if int(c[CFG_KIND]) == _DWCONV:
        # depthwise: channel o's taps are rows p, p + d, ... of the ring, d * in_ch bytes
        # apart, until they pass the ring's end; the remaining taps continue span rows back
        # (one wrap at most: tap k-1 is row p + (k-1)*d < 2 * span). j1 taps before the wrap.
        # Weights stay signed int8 (k terms: a sign fix per tap is cheaper than a sum per
        # channel).
        step = d * n_in
        back = span * n_in
        j1 = 0
        r = p
        while j1 < k and r < span:
            r += d
            j1 += 1
        j2 = k - j1  # taps after the wrap
        o = 0
        while o < nout:
            pp = ptr32(base + (o << 3))
            acc = int(pp[0]) - BIAS_OFFSET
            x = ptr8(xa + o)
            w = ptr8(wbase + o * k)
            wend = int(w) + j1
            while int(w) < wend:
                acc += ((w[0] ^ 0x80) - 0x80) * x[0]
                x = ptr8(int(x) + step)
                w = ptr8(int(w) + 1)
            x = ptr8(int(x) - back)
            wend = int(w) + j2
            while int(w) < wend:
                acc += ((w[0] ^ 0x80) - 0x80) * x[0]
                x = ptr8(int(x) + step)
                w = ptr8(int(w) + 1)
            ms = int(pp[1])
            m = ms >> 8
            s = ms & 0xFF
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
    # 3. conv / dense: a dot product of k * in_ch terms per output channel over at most two
    # contiguous pieces of input: [xa, xa + na) then [xb, xb + nb), the weights contiguous.
    # A dense layer reads its input; a conv with d == 1 reads its ring in place, oldest row
    # first: rows p .. span-1, then rows 0 .. p-1 (nothing when it emits at p == 0, as a conv
    # whose stride equals its span does); a dilated conv gathers its k taps into the window.
    na = k * n_in
    xb = xa
    nb = 0
    if k > 1:
        if d == 1:
            na = (span - p) * n_in
            xb = ring
            nb = p * n_in
        else:
            win = base + int(c[CFG_WIN])
            j = 0
            r = p
            while j < k:
                src = ptr8(ring + r * n_in)
                dst = ptr8(win + j * n_in)
                i = 0
                while i < n_in:
                    dst[i] = src[i]
                    i += 1
                r += d
                if r >= span:
                    r -= span
                j += 1
            xa = win
    na4 = na - (na & 3)
    nb4 = nb - (nb & 3)
    # sum of the inputs (for the 128 * sum(x) correction), in the registers
    x = ptr8(xa)
    end = xa + na4
    acc = 0
    while int(x) < end:
        acc += x[0] + x[1] + x[2] + x[3]
        x = ptr8(int(x) + 4)
    end = xa + na
    while int(x) < end:
        acc += x[0]
        x = ptr8(int(x) + 1)
    x = ptr8(xb)
    end = xb + nb
    while int(x) < end:
        acc += x[0]
        x = ptr8(int(x) + 1)
    sx128 = acc << 7
    w = ptr8(wbase)
    o = 0
    while o < nout:
        pp = ptr32(base + (o << 3))
        acc = int(pp[0]) - BIAS_OFFSET - sx128
        x = ptr8(xa)
        end = xa + na4
        while int(x) < end:
            acc += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]
            x = ptr8(int(x) + 4)
            w = ptr8(int(w) + 4)
        end = xa + na
        while int(x) < end:
            acc += x[0] * w[0]
            x = ptr8(int(x) + 1)
            w = ptr8(int(w) + 1)
        if nb:
            x = ptr8(xb)
            end = xb + nb4
            while int(x) < end:
                acc += x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + x[3] * w[3]
                x = ptr8(int(x) + 4)
                w = ptr8(int(w) + 4)
            end = xb + nb
            while int(x) < end:
                acc += x[0] * w[0]
                x = ptr8(int(x) + 1)
                w = ptr8(int(w) + 1)
        ms = int(pp[1])
        m = ms >> 8
        s = ms & 0xFF
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


def layer_step_py(x, buf, acc, cfg):
    """Plain-Python twin of `layer_step` (same buffers, same integers; slow)."""
    k = cfg[CFG_K]
    n_in = cfg[CFG_IN]
    d = cfg[CFG_DIL]
    span = cfg[CFG_SPAN]
    p = 0
    ring = cfg[CFG_RING]
    if k > 1:
        p = cfg[CFG_WPOS]
        for i in range(n_in):
            buf[ring + p * n_in + i] = x[i]
        p = (p + 1) % span
        cfg[CFG_WPOS] = p
    phase = cfg[CFG_PHASE] + 1
    if phase < cfg[CFG_STRIDE]:
        cfg[CFG_PHASE] = phase
        return 0
    cfg[CFG_PHASE] = 0

    def tap(j, i):  # input i of tap j (0: the oldest), wherever the layout keeps it
        if k == 1:
            return x[i]
        return buf[ring + ((p + j * d) % span) * n_in + i]

    if cfg[CFG_KIND] != _DWCONV and k > 1 and d > 1:  # the gather window, as the kernel
        win = cfg[CFG_WIN]
        for j in range(k):
            for i in range(n_in):
                buf[win + j * n_in + i] = tap(j, i)
    wb = cfg[CFG_W]
    tab = cfg[CFG_TAB]
    out = cfg[CFG_OUTOFF]
    for o in range(cfg[CFG_OUT]):
        acc = _u32(buf, o * 8) - BIAS_OFFSET
        ms = _u32(buf, o * 8 + 4)
        m, s = ms >> 8, ms & 0xFF
        if cfg[CFG_KIND] == _DWCONV:
            for j in range(k):
                acc += ((buf[wb + o * k + j] ^ 0x80) - 0x80) * tap(j, o)
        else:
            for j in range(k):
                for i in range(n_in):
                    acc += (buf[wb + (o * k + j) * n_in + i] - 128) * tap(j, i)
        t = (acc >> 16) * m + (((acc & 0xFFFF) * m) >> 16)
        v = cfg[CFG_ZO] + ((t + ((1 << s) >> 1)) >> s)
        v = min(max(v, cfg[CFG_LO]), 255)
        if tab:
            v = buf[tab + v]
        buf[out + o] = v
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


# `records` errors, (error << 16) | channel
REC_BIAS = const(1)  # the folded bias is out of +-2**29 (or the file's out of [-2**30, 2**30))
REC_TERMS = const(2)  # k * in_ch terms could overflow the 32-bit accumulator
REC_REQUANT = const(3)  # m >= 2**15 or s > 30
_MAX_PER = const(33024)  # 65025 * per stays below 2**31


@micropython.viper
def records(buf, chan, cfg) -> int:
    """A layer's channel records as the kernel reads them, from the file's.

    `chan` holds out_ch file records (int32 bias, uint16 m, uint8 s, pad); the layer's
    weights are in `buf` at cfg[CFG_W], stored as w + 128. Writes record o at buf[8 * o]:
    (bias - x_zp * sum(w) + 2**29, m << 8 | s), both non-negative. Returns 0, or
    (REC_* << 16) | channel for the first channel the 32-bit kernels could not run exactly.
    """
    c = ptr32(cfg)
    base = int(ptr8(buf))
    src = int(ptr8(chan))
    n = int(c[CFG_OUT])
    zi = int(c[CFG_ZI])
    woff = base + int(c[CFG_W])
    per = int(c[CFG_K])
    if int(c[CFG_KIND]) != _DWCONV:
        per = per * int(c[CFG_IN])
    if per > _MAX_PER:
        return REC_TERMS << 16
    # 65025 * per + |bias| must stay below 2**31: tested as terms - 2**30 + |bias| > 2**30 - 1,
    # because 2**30 and 2**31 - 1 are not small ints on the chip (nor constants viper takes)
    terms = 65025 * per - BIAS_OFFSET - BIAS_OFFSET
    o = 0
    while o < n:
        r = ptr8(src + (o << 3))
        b = int(r[0]) | (int(r[1]) << 8) | (int(r[2]) << 16) | (((int(r[3]) ^ 0x80) - 0x80) << 24)
        m = int(r[4]) | (int(r[5]) << 8)
        sh = int(r[6])
        w = ptr8(woff + o * per)
        sw = 0
        i = 0
        while i < per:
            sw += w[i]
            i += 1
        sw -= per << 7
        hi = int(r[3]) & 0xC0
        if hi != 0 and hi != 0xC0:  # the file's bias must fit 31 bits: -2**30 <= b < 2**30
            return (REC_BIAS << 16) | o
        fb = b - zi * sw
        if fb <= -BIAS_OFFSET or fb >= BIAS_OFFSET:
            return (REC_BIAS << 16) | o
        a = fb
        if a < 0:
            a = 0 - a
        if terms + a > 0x3FFFFFFF:
            return (REC_TERMS << 16) | o
        if m >= 0x8000 or sh > 30:
            return (REC_REQUANT << 16) | o
        d = ptr32(base + (o << 3))
        d[0] = fb + BIAS_OFFSET
        d[1] = (m << 8) | sh
        o += 1
    return 0


def records_py(buf, chan, cfg):
    """Plain-Python twin of `records`."""
    import struct

    n, zi, woff = cfg[CFG_OUT], cfg[CFG_ZI], cfg[CFG_W]
    per = cfg[CFG_K] * (1 if cfg[CFG_KIND] == _DWCONV else cfg[CFG_IN])
    if per > _MAX_PER:
        return REC_TERMS << 16
    for o in range(n):
        b, m, sh, _ = struct.unpack_from("<iHBB", chan, 8 * o)
        sw = sum(buf[woff + o * per : woff + (o + 1) * per]) - 128 * per
        fb = b - zi * sw
        if not -0x40000000 <= b < 0x40000000 or not -BIAS_OFFSET < fb < BIAS_OFFSET:
            return (REC_BIAS << 16) | o
        if abs(fb) + 65025 * per >= 0x80000000:
            return (REC_TERMS << 16) | o
        if m >= 0x8000 or sh > 30:
            return (REC_REQUANT << 16) | o
        struct.pack_into("<II", buf, 8 * o, fb + BIAS_OFFSET, (m << 8) | sh)
    return 0


@micropython.viper
def fill_u8(buf, start: int, n: int, v: int):
    """Set n bytes from start to v."""
    p = ptr8(int(ptr8(buf)) + start)
    i = 0
    while i < n:
        p[i] = v
        i += 1


def fill_u8_py(buf, start, n, v):
    for i in range(start, start + n):
        buf[i] = v


@micropython.viper
def run_layers(x, bufs, cfgs, outs) -> int:
    """Feed x through the layers while they emit; the last layer's first output byte, or -1.

    Viper rather than bytecode on purpose: a bytecode function whose frame exceeds 11 words
    takes its frame from the heap on every call (and frees it; `heap_lock` hides that because
    the VM then falls back to the C stack), a native function never does.
    """
    n = int(len(bufs))
    i = 0
    while i < n:
        if int(layer_step(x, bufs[i], 0, cfgs[i])) == 0:
            return -1
        x = outs[i]
        i += 1
    return int(ptr8(x)[0])


def run_layers_py(x, bufs, cfgs, outs):
    for i in range(len(bufs)):
        if not layer_step_py(x, bufs[i], 0, cfgs[i]):
            return -1
        x = outs[i]
    return x[0]
