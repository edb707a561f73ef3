"""The command grammar on the chip: load a `.vcg` file and decode a costgram with it.

    >>> from voicenode import grammar
    >>> g = grammar.load("/app/x/models/commands_home.vcg")
    >>> g.decode(cost, row0, row1)     # cost: rows x n_classes bytes (max logit - logit)
    (pattern, cost, token, second)

A grammar is one small graph of phone classes per intent (a *pattern*), compiled on the host
by `voicenode_tools.grammar` (format in its docstring). The phone network gives one cost row
per model step (0 for the most likely class); `decode` finds, for every pattern, the cheapest
path through its graph CTC style: a node is entered on a frame of its class (from one of its
predecessors, or from the blank-only prefix if it may start the pattern) and may then stay
on frames of its class or of the blank. Slot values ride along the path as one int32 token
(every node may add a constant: byte k of the token is slot k of the intent).

Why this shape: the host compiles, the chip only runs one tight loop. The decode is a viper
kernel over the whole file kept as one bytearray (tables addressed by offset), two int32
arrays S (cost) and K (token) the size of the largest pattern, in place: nodes are visited in
reverse order each frame, so a node's predecessors (earlier nodes) still hold the previous
frame's values. All values stay within signed 32 bits (costs <= 255 per frame, unreachable
nodes start at 2**28), so the ESP32-S3 and the 64-bit Unix port give the same integers, and
they equal the host twin `voicenode_tools.grammar.decode` (same ties: the first predecessor
wins a tie, staying wins over entering, the first cheapest final node wins).

The decode allocates nothing per frame; `decode` (once per command) builds its result tuple.
"""

import array
import struct

import micropython
from micropython import const

MAGIC = b"VNCG"
VERSION = const(1)
START = const(1)  # node flag: may start its pattern
FINAL = const(2)  # node flag: may end it
INF = const(0x10000000)  # cost of a node not reached yet (1 << 28)
# Above anything reachable. The host's is 1 << 30; here the largest small int of a 32-bit port
# (a viper constant must fit one): no cost comes near either, so the results are the same.
SENTINEL = const(0x3FFFFFFF)
_HEAD = "<4sHHHHHBBI"
_HEAD_LEN = const(20)

# cfg (array "i") of the kernel: offsets of the tables in the file, sizes, then per call
_G_ADDS = const(0)
_G_PSTART = const(1)
_G_PREDS = const(2)
_G_PH = const(3)
_G_FLAGS = const(4)
_G_ADDIDX = const(5)
_G_NCLS = const(6)
_G_BLANK = const(7)
_G_BIG = const(8)  # nodes of the largest pattern (K starts there in the S/K array)
_G_FIRST = const(9)  # the pattern decoded by this call: first node, node count
_G_COUNT = const(10)
_G_ROW0 = const(11)  # rows [row0, row1) of the costgram
_G_ROW1 = const(12)
_G_COST = const(13)  # out: the best final node's cost and token (SENTINEL if none)
_G_TOKEN = const(14)
_G_LEN = const(15)

try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without it: a bitwise CRC-32 (slow, load time only)

    def _crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF


class GrammarError(ValueError):
    """A grammar file that cannot be used; the message names the file and the problem."""


# --- the kernel -----------------------------------------------------------------------------


@micropython.viper
def viterbi(cost: ptr8, blob: ptr8, sk: ptr32, cfg: ptr32) -> int:
    """Viterbi of one pattern over costgram rows [row0, row1); returns the best final cost.

    `cost` holds rows of n_classes bytes, `blob` the whole grammar file, `sk` the S (cost)
    and K (token) arrays (K from index cfg[_G_BIG]); the pattern and rows are in `cfg`, and
    the best final node's cost and token go to cfg[_G_COST], cfg[_G_TOKEN] (strict <: the
    first cheapest final node).
    """
    c = cfg
    base = int(blob)
    adds = ptr32(base + int(c[_G_ADDS]))
    pstart = ptr16(base + int(c[_G_PSTART]))
    preds = ptr16(base + int(c[_G_PREDS]))
    ph = ptr8(base + int(c[_G_PH]))
    flags = ptr8(base + int(c[_G_FLAGS]))
    addidx = ptr8(base + int(c[_G_ADDIDX]))
    ncls = int(c[_G_NCLS])
    blank = int(c[_G_BLANK])
    first = int(c[_G_FIRST])
    count = int(c[_G_COUNT])
    r = int(c[_G_ROW0])
    r1 = int(c[_G_ROW1])
    s = sk
    k = ptr32(int(sk) + 4 * int(c[_G_BIG]))
    i = 0
    while i < count:
        s[i] = INF
        k[i] = 0
        i += 1
    b = 0  # cost of the blank-only prefix up to the previous frame
    while r < r1:
        row = ptr8(int(cost) + r * ncls)
        cb = int(row[blank])
        i = count - 1
        while i >= 0:
            n = first + i
            best = SENTINEL
            tok = 0
            j = int(pstart[n])
            je = int(pstart[n + 1])
            while j < je:
                p = int(preds[j]) - first
                v = int(s[p])
                if v < best:
                    best = v
                    tok = int(k[p])
                j += 1
            if int(flags[n]) & START:
                if b < best:
                    best = b
                    tok = 0
            cp = int(row[ph[n]])
            enter = best + cp
            if cb < cp:
                stay = int(s[i]) + cb
            else:
                stay = int(s[i]) + cp
            if stay <= enter:
                s[i] = stay
            else:
                s[i] = enter
                k[i] = tok + int(adds[addidx[n]])
            i -= 1
        b += cb
        r += 1
    best = SENTINEL
    tok = 0
    i = 0
    while i < count:
        if int(flags[first + i]) & FINAL:
            v = int(s[i])
            if v < best:
                best = v
                tok = int(k[i])
        i += 1
    c[_G_COST] = best
    c[_G_TOKEN] = tok
    return best


def viterbi_py(cost, blob, sk, cfg):
    """Plain-Python twin of `viterbi` (same buffers, same integers)."""
    u16 = lambda o: blob[o] | blob[o + 1] << 8  # noqa: E731
    big, first, count = cfg[_G_BIG], cfg[_G_FIRST], cfg[_G_COUNT]
    ncls, blank = cfg[_G_NCLS], cfg[_G_BLANK]
    for i in range(count):
        sk[i] = INF
        sk[big + i] = 0
    b = 0
    for r in range(cfg[_G_ROW0], cfg[_G_ROW1]):
        row = r * ncls
        cb = cost[row + blank]
        for i in range(count - 1, -1, -1):
            n = first + i
            best, tok = SENTINEL, 0
            for j in range(u16(cfg[_G_PSTART] + 2 * n), u16(cfg[_G_PSTART] + 2 * n + 2)):
                p = u16(cfg[_G_PREDS] + 2 * j) - first
                if sk[p] < best:
                    best, tok = sk[p], sk[big + p]
            if blob[cfg[_G_FLAGS] + n] & START and b < best:
                best, tok = b, 0
            cp = cost[row + blob[cfg[_G_PH] + n]]
            enter = best + cp
            stay = sk[i] + min(cp, cb)
            if stay <= enter:
                sk[i] = stay
            else:
                a = struct.unpack_from("<i", blob, cfg[_G_ADDS] + 4 * blob[cfg[_G_ADDIDX] + n])
                sk[i] = enter
                sk[big + i] = tok + a[0]
        b += cb
    best, tok = SENTINEL, 0
    for i in range(count):
        if blob[cfg[_G_FLAGS] + first + i] & FINAL and sk[i] < best:
            best, tok = sk[i], sk[big + i]
    cfg[_G_COST] = best
    cfg[_G_TOKEN] = tok
    return best


# --- the grammar ----------------------------------------------------------------------------


class Grammar:
    """A loaded `.vcg` grammar (`load(path)`).

    Attributes: `n_nodes`, `n_classes`, `blank`, `patterns` (list of (first node, nodes,
    intent index, slots)), `crc32` (the file's checksum: the CRC-32 of everything before it,
    as stored in its last 4 bytes and recorded by the sidecar; the CRC-32 of the whole file
    would be the same constant, 0x2144DF1C, for every intact file),
    `big` (nodes of the largest pattern), `path`.
    """

    def __init__(self, path, data, head, crc):
        _, _, n, e, p, a, ncls, blank, _ = head
        self.path = path
        self.blob = data
        self.crc32 = crc
        self.n_nodes = n
        self.n_classes = ncls
        self.blank = blank
        o = _HEAD_LEN
        g = array.array("i", bytes(4 * _G_LEN))
        g[_G_ADDS] = o
        o += 4 * a
        pats = [struct.unpack_from("<HHHH", data, o + 8 * i) for i in range(p)]
        o += 8 * p
        g[_G_PSTART] = o
        o += 2 * (n + 1)
        g[_G_PREDS] = o
        o += 2 * e
        g[_G_PH] = o
        g[_G_FLAGS] = o + n
        g[_G_ADDIDX] = o + 2 * n
        g[_G_NCLS] = ncls
        g[_G_BLANK] = blank
        self.n_adds = a
        self.n_preds = e
        self.patterns = pats
        self.big = big = max(c for _, c, _, _ in pats) if pats else 0
        g[_G_BIG] = big
        self.cfg = g
        self.sk = array.array("i", bytes(8 * big))  # S then K

    def _u16(self, table, i):
        o = self.cfg[table] + 2 * i
        return self.blob[o] | self.blob[o + 1] << 8

    def check(self):
        """The table sanity checks of the host's `Grammar.check`; raises GrammarError."""
        where = self.path
        n = self.n_nodes
        g = self.cfg
        blob = self.blob
        if not self.patterns:
            raise GrammarError("%s: no patterns" % where)
        if self._u16(_G_PSTART, 0) != 0 or self._u16(_G_PSTART, n) != self.n_preds:
            raise GrammarError("%s: predecessor table does not add up" % where)
        prev = 0
        for i in range(n + 1):
            v = self._u16(_G_PSTART, i)
            if v < prev:
                raise GrammarError("%s: predecessor table goes backwards" % where)
            prev = v
        for i in range(n):
            c = blob[g[_G_PH] + i]
            if c >= self.n_classes or c == self.blank:
                raise GrammarError("%s: a node of an unknown class (or the blank)" % where)
            if blob[g[_G_ADDIDX] + i] >= self.n_adds:
                raise GrammarError("%s: bad token increments" % where)
        if self.n_adds == 0 or struct.unpack_from("<i", blob, g[_G_ADDS])[0] != 0:
            raise GrammarError("%s: bad token increments" % where)
        for j in range(self.n_adds):
            # tokens are sums of these along a path: keep them non-negative and small, so
            # 32-bit registers (and zero-extended loads on 64-bit ports) give the same sums
            if not 0 <= struct.unpack_from("<i", blob, g[_G_ADDS] + 4 * j)[0] < 0x1000000:
                raise GrammarError("%s: bad token increments" % where)
        covered = 0
        for first, count, _, _ in self.patterns:
            if first != covered or count == 0:
                raise GrammarError("%s: patterns must tile the nodes in order" % where)
            final = False
            for i in range(first, first + count):
                a, b = self._u16(_G_PSTART, i), self._u16(_G_PSTART, i + 1)
                for j in range(a, b):
                    p = self._u16(_G_PREDS, j)
                    if p >= i or p < first:
                        raise GrammarError(
                            "%s: node %d has a predecessor outside its past" % (where, i)
                        )
                fl = blob[g[_G_FLAGS] + i]
                if a == b and not fl & START:
                    raise GrammarError("%s: node %d cannot be reached" % (where, i))
                final = final or bool(fl & FINAL)
            if not final:
                raise GrammarError("%s: a pattern with no final node" % where)
            covered += count
        if covered != n:
            raise GrammarError("%s: patterns cover %d of %d nodes" % (where, covered, n))

    def run(self, cost, pattern, row0, row1):
        """Viterbi of one pattern over rows [row0, row1); the best final (cost, token).

        The nodes' final costs and tokens stay in `sk` (S[:nodes], K from index `big`)
        until the next call.
        """
        first, count, _, _ = self.patterns[pattern]
        g = self.cfg
        g[_G_FIRST] = first
        g[_G_COUNT] = count
        g[_G_ROW0] = row0
        g[_G_ROW1] = row1
        viterbi(cost, self.blob, self.sk, g)
        return g[_G_COST], g[_G_TOKEN]

    def decode(self, cost, row0, row1):
        """The cheapest pattern over costgram rows [row0, row1) (`cost`: rows x n_classes).

        Returns (pattern, cost, token, second): `second` is the best cost of any other
        intent (None if there is none); None when there are no rows.
        """
        if row1 <= row0:
            return None
        best, best_cost, best_tok = -1, SENTINEL, 0
        per_intent = {}  # type: dict
        for pi in range(len(self.patterns)):
            v, tok = self.run(cost, pi, row0, row1)
            if v < best_cost:
                best, best_cost, best_tok = pi, v, tok
            intent = self.patterns[pi][2]
            if v < per_intent.get(intent, SENTINEL):
                per_intent[intent] = v
        intent = self.patterns[best][2]
        second = None
        for i in per_intent:
            if i != intent and (second is None or per_intent[i] < second):
                second = per_intent[i]
        return best, best_cost, best_tok, second


def load(path):
    """Read and check a `.vcg` grammar file; returns a `Grammar`.

    Raises:
        GrammarError: missing, truncated or corrupt file, another format version, tables
            that do not hold together (the checks of the host's `Grammar.check`).
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise GrammarError("%s: cannot open (%s)" % (path, e)) from None
    with f:
        size = f.seek(0, 2)
        f.seek(0)
        if size < _HEAD_LEN + 4:
            raise GrammarError("%s: %d bytes is too short for a grammar" % (path, size))
        data = bytearray(size)
        f.readinto(data)
    head = struct.unpack_from(_HEAD, data)
    magic, ver, n, n_preds, p, a, ncls, blank, body_len = head
    if magic != MAGIC:
        raise GrammarError("%s: not a voicenode grammar (magic %r)" % (path, magic))
    if ver != VERSION:
        raise GrammarError("%s: format version %d, this firmware reads %d" % (path, ver, VERSION))
    if size != _HEAD_LEN + body_len + 4:
        raise GrammarError(
            "%s: %d bytes, the header says %d (truncated or padded)"
            % (path, size, _HEAD_LEN + body_len + 4)
        )
    mv = memoryview(data)
    crc = _crc32(mv[: size - 4]) & 0xFFFFFFFF
    if crc != struct.unpack_from("<I", data, size - 4)[0]:
        raise GrammarError("%s: checksum mismatch (corrupt file)" % path)
    need = 4 * a + 8 * p + 2 * (n + 1) + 2 * n_preds + 3 * n
    if need > body_len:
        raise GrammarError("%s: tables of %d bytes in a body of %d" % (path, need, body_len))
    g = Grammar(path, data, head, crc)
    g.check()
    return g
