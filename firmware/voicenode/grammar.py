"""The command grammar on the chip: load a `.vcg` file and decode a costgram with it.

    >>> from voicenode import grammar
    >>> g = grammar.load("/app/x/models/commands_home.vcg")
    >>> g.decode(cost, row0, row1)     # cost: rows x n_classes bytes (max logit - logit)
    (pattern, cost, token, second)
    >>> g.begin(); g.advance(cost, row0, row1); ...; g.finish(rows)   # the same, streaming

A grammar is one small graph of phone classes per intent (a *pattern*), compiled on the host
by `voicenode_tools.grammar` (format in its docstring). The phone network gives one cost row
per model step (0 for the most likely class); `decode` finds, for every pattern, the cheapest
path through its graph CTC style: a node is entered on a frame of its class (from one of its
predecessors, or from the blank-only prefix if it may start the pattern) and may then stay
on frames of its class or of the blank. Slot values ride along the path as one int32 token
(every node may add a constant: byte k of the token is slot k of the intent).

Why this shape: the host compiles, the chip only runs one tight loop. The decode is a viper
kernel over the whole file kept as one bytearray (tables addressed by offset) and two int32
arrays S (cost) and K (token) of every node, in place: nodes are visited in reverse order
each row, so a node's predecessors (earlier nodes of its pattern) still hold the previous
row's values. All patterns advance together, one row at a time, so the recogniser decodes
each row as the network gives it (`advance`), spread over the command, and its decision
(`finish`: the final nodes of each pattern) costs next to nothing: decoding 100 rows at
once would stall the audio loop for longer than the microphone's DMA buffer holds. All
values stay within signed 32 bits (costs <= 255 per frame, a word bonus <= 255 per row,
unreachable nodes start at 2**28), so the ESP32-S3 and the 64-bit Unix port give the same
integers, and they equal the host twin `voicenode_tools.grammar.decode` (same ties: the
first predecessor wins a tie, staying wins over entering, the first cheapest final node wins).

`begin` and `advance` allocate nothing; `finish` (once per command) builds its result tuple.
"""

import array
import struct

import micropython
from micropython import const

from voicenode.crc import crc32 as _crc32

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

# cfg (array "i") of the kernels: offsets of the tables in the file, sizes, decoder state
_G_ADDS = const(0)
_G_PSTART = const(1)
_G_PREDS = const(2)
_G_PH = const(3)
_G_FLAGS = const(4)
_G_ADDIDX = const(5)
_G_NCLS = const(6)
_G_BLANK = const(7)
_G_NODES = const(8)  # K starts there in the S/K array
_G_ROW0 = const(9)  # next costgram row to decode (NOT_STARTED before the first `advance`)
_G_ROW1 = const(10)  # rows available: [row0, row1) are decoded by the next `advance`
_G_B = const(11)  # cost of the blank-only prefix up to the previous row
_G_FIRST = const(12)  # `best_final`: the pattern's first node and node count
_G_COUNT = const(13)
_G_COST = const(14)  # out of `best_final`: the best final node's cost and token
_G_TOKEN = const(15)
_G_RING = const(16)  # rows the cost buffer holds, row r at r % ring (0: row r at r)
_G_BONUS = const(17)  # word bonus: what a row costs a path that stays (`word_bonus`)
_G_LEN = const(18)
# row0 of a decoder that has not decoded yet: a large positive value, because ptr32 loads
# are zero-extended on 64-bit ports (a -1 would read as 4294967295 there, not on the chip)
NOT_STARTED = const(0x3FFFFFFF)


class GrammarError(ValueError):
    """A grammar file that cannot be used; the message names the file and the problem."""


# --- the kernels -----------------------------------------------------------------------------


@micropython.viper
def begin(sk: ptr32, cfg: ptr32) -> int:
    """Every node unreached (S = INF, K = 0), an empty blank prefix, no row decoded yet."""
    n = int(cfg[_G_NODES])
    k = ptr32(int(sk) + 4 * n)
    i = 0
    while i < n:
        sk[i] = INF
        k[i] = 0
        i += 1
    cfg[_G_B] = 0
    cfg[_G_ROW0] = NOT_STARTED
    return n


@micropython.viper
def advance(n: int, j: int, best: int, bufs) -> int:
    """Viterbi over costgram rows [row0, row1) for all nodes; then row0 = row1.

    Per row, nodes in reverse order (a node's predecessors are earlier nodes of its pattern,
    so they still hold the previous row's values): best = the first cheapest predecessor (or
    the blank prefix B for a start node, if strictly cheaper); enter = best + c[class];
    stay = S + min(c[class], c[blank]) + bonus; staying wins ties; entering adds the node's
    token increment. Then B += c[blank] + bonus. `bufs` = (cost: rows of n_classes bytes, the
    grammar file, S then K, cfg). Returns the rows decoded.

    The first three locals live in registers (the others on the stack), so the hottest ones
    are the arguments: call it as advance(0, 0, 0, bufs). 160 x64 instructions per node and
    row instead of 205 with the buffers as the first arguments.
    """
    cost = ptr8(bufs[0])
    s = ptr32(bufs[2])
    c = ptr32(bufs[3])
    base = int(ptr8(bufs[1]))
    adds = ptr32(base + int(c[_G_ADDS]))
    pstart = ptr16(base + int(c[_G_PSTART]))
    preds = ptr16(base + int(c[_G_PREDS]))
    ph = ptr8(base + int(c[_G_PH]))
    flags = ptr8(base + int(c[_G_FLAGS]))
    addidx = ptr8(base + int(c[_G_ADDIDX]))
    ncls = int(c[_G_NCLS])
    blank = int(c[_G_BLANK])
    nodes = int(c[_G_NODES])
    r0 = int(c[_G_ROW0])
    r = r0
    r1 = int(c[_G_ROW1])
    b = int(c[_G_B])
    ring = int(c[_G_RING])
    bonus = int(c[_G_BONUS])
    k = ptr32(int(s) + 4 * nodes)
    while r < r1:
        if ring:
            row = ptr8(int(cost) + (r % ring) * ncls)
        else:
            row = ptr8(int(cost) + r * ncls)
        cb = int(row[blank])
        n = nodes - 1
        je = int(pstart[nodes])  # node n's predecessors end where node n + 1's begin
        while n >= 0:
            j = int(pstart[n])
            jn = j
            if j < je:  # the first predecessor is the best so far
                p = int(preds[j])
                best = int(s[p])
                tok = int(k[p])
                j += 1
                while j < je:
                    p = int(preds[j])
                    v = int(s[p])
                    if v < best:
                        best = v
                        tok = int(k[p])
                    j += 1
            else:
                best = SENTINEL
                tok = 0
            je = jn
            if int(flags[n]) & START:
                if b < best:
                    best = b
                    tok = 0
            cp = int(row[ph[n]])
            enter = best + cp
            if cb < cp:
                cp = cb
            stay = int(s[n]) + cp + bonus
            if stay <= enter:
                s[n] = stay
            else:
                s[n] = enter
                k[n] = tok + int(adds[addidx[n]])
            n -= 1
        b += cb + bonus
        r += 1
    c[_G_B] = b
    c[_G_ROW0] = r
    return r - r0


@micropython.viper
def best_final(blob: ptr8, sk: ptr32, cfg: ptr32) -> int:
    """The first cheapest final node of the pattern [first, first + count): its cost (also
    in cfg[_G_COST]) and token (cfg[_G_TOKEN]); SENTINEL if the pattern has none."""
    c = cfg
    flags = ptr8(int(blob) + int(c[_G_FLAGS]))
    k = ptr32(int(sk) + 4 * int(c[_G_NODES]))
    n = int(c[_G_FIRST])
    end = n + int(c[_G_COUNT])
    best = SENTINEL
    tok = 0
    while n < end:
        if int(flags[n]) & FINAL:
            v = int(sk[n])
            if v < best:
                best = v
                tok = int(k[n])
        n += 1
    c[_G_COST] = best
    c[_G_TOKEN] = tok
    return best


def advance_py(n, j, best, bufs):
    """Plain-Python twin of `advance` (same buffers, same integers)."""
    cost, blob, sk, cfg = bufs
    u16 = lambda o: blob[o] | blob[o + 1] << 8  # noqa: E731
    nodes, ncls, blank = cfg[_G_NODES], cfg[_G_NCLS], cfg[_G_BLANK]
    b = cfg[_G_B]
    bonus = cfg[_G_BONUS]
    r0 = cfg[_G_ROW0]
    for r in range(r0, cfg[_G_ROW1]):
        row = (r % cfg[_G_RING] if cfg[_G_RING] else r) * ncls
        cb = cost[row + blank]
        for n in range(nodes - 1, -1, -1):
            best, tok = SENTINEL, 0
            for j in range(u16(cfg[_G_PSTART] + 2 * n), u16(cfg[_G_PSTART] + 2 * n + 2)):
                p = u16(cfg[_G_PREDS] + 2 * j)
                if sk[p] < best:
                    best, tok = sk[p], sk[nodes + p]
            if blob[cfg[_G_FLAGS] + n] & START and b < best:
                best, tok = b, 0
            cp = cost[row + blob[cfg[_G_PH] + n]]
            enter = best + cp
            stay = sk[n] + min(cp, cb) + bonus
            if stay <= enter:
                sk[n] = stay
            else:
                a = struct.unpack_from("<i", blob, cfg[_G_ADDS] + 4 * blob[cfg[_G_ADDIDX] + n])
                sk[n] = enter
                sk[nodes + n] = tok + a[0]
        b += cb + bonus
    cfg[_G_B] = b
    cfg[_G_ROW0] = max(r0, cfg[_G_ROW1])
    return cfg[_G_ROW0] - r0


# --- the grammar ----------------------------------------------------------------------------


class Grammar:
    """A loaded `.vcg` grammar (`load(path)`).

    Attributes: `n_nodes`, `n_classes`, `blank`, `patterns` (list of (first node, nodes,
    intent index, slots)), `sk` (S then K of every node after a decode), `crc32` (the file's checksum: the CRC-32 of everything before it,
    as stored in its last 4 bytes and recorded by the sidecar; the CRC-32 of the whole file
    would be the same constant, 0x2144DF1C, for every intact file),
    `path`.
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
        g[_G_NODES] = n
        g[_G_ROW0] = NOT_STARTED
        self.cfg = g
        self.sk = array.array("i", bytes(8 * n))  # S (cost) then K (token) of every node

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
            # (3 slot bytes, and byte 3 counts words: a path of at most 63 words stays < 2**30)
            if not 0 <= struct.unpack_from("<i", blob, g[_G_ADDS] + 4 * j)[0] < 0x2000000:
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

    # Decoding: `begin()`, then `advance(cost, row0, row1)` as rows arrive (or all at
    # once), then `finish(rows)`; `decode` does the three. Only `finish` allocates.

    def begin(self):
        """A new command: every node unreached, no row decoded."""
        begin(self.sk, self.cfg)

    def ring(self, rows):
        """Read the costgram as a ring of `rows` rows (row r at r % rows; 0: row r at r, the
        default); returns the previous setting."""
        old = self.cfg[_G_RING]
        self.cfg[_G_RING] = rows
        return old

    def word_bonus(self, bonus):
        """Make every row a path stays on a node (or in the blank-only prefix) cost `bonus`
        more (0..255; 0, the default, decodes as before): a path of T rows through W nodes
        pays bonus * (T - W), a bonus per word with costs that stay >= 0, so a long command
        heard poorly is not beaten by a one-word one. Returns the previous setting."""
        old = self.cfg[_G_BONUS]
        self.cfg[_G_BONUS] = bonus
        return old

    def advance(self, cost, row0, row1):
        """Decode costgram rows [row0, row1) (`cost`: rows x n_classes bytes, or a ring of
        them, `ring`); the next call continues from row1 whatever its row0 says (rows are
        decoded once, in order)."""
        g = self.cfg
        if g[_G_ROW0] == NOT_STARTED:
            g[_G_ROW0] = row0
        g[_G_ROW1] = row1
        return advance(0, 0, 0, (cost, self.blob, self.sk, g))

    def finish(self, rows):
        """The cheapest pattern after `rows` decoded rows.

        Returns (pattern, cost, token, second): `second` is the best cost of any other
        intent (None if there is none); None when no row was decoded. Every node's final
        cost and token stay in `sk` (S[:n_nodes], K[n_nodes:]) until `begin`.
        """
        if rows <= 0:
            return None
        g = self.cfg
        best, best_cost, best_tok = -1, SENTINEL, 0
        per_intent = {}  # type: dict
        for pi in range(len(self.patterns)):
            first, count, intent, _ = self.patterns[pi]
            g[_G_FIRST] = first
            g[_G_COUNT] = count
            v = best_final(self.blob, self.sk, g)
            if v < best_cost:
                best, best_cost, best_tok = pi, v, g[_G_TOKEN]
            if v < per_intent.get(intent, SENTINEL):
                per_intent[intent] = v
        intent = self.patterns[best][2]
        second = None
        for i in per_intent:
            if i != intent and (second is None or per_intent[i] < second):
                second = per_intent[i]
        return best, best_cost, best_tok, second

    def decode(self, cost, row0, row1):
        """The cheapest pattern over costgram rows [row0, row1), as `finish`."""
        self.begin()
        if row1 <= row0:
            return None
        self.advance(cost, row0, row1)
        return self.finish(row1 - row0)


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
