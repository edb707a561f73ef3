"""Wake-word detector: several models on the same feature frames, integer post-processing.

    >>> from voicenode.wake import Detector
    >>> det = Detector(["/models/hey_node.vnm"], default="/models/default.vnm")
    >>> n = det.step(frame)            # after every feature frame (10 ms)
    >>> for i in range(n): name, score = det.hits[i]      # the model name, e.g. "hey_node"

Post-processing as ESPHome's micro_wake_word does it, in integers: every model step's uint8
probability goes into a ring of `window` bytes; when the ring's sum reaches
`cutoff_u8 * window` (and no cool-off runs) the word is detected with score `sum // window`,
the ring is cleared and the next `cooloff` model steps cannot detect.

A model that cannot be loaded (corrupt, truncated, trained for other front-end parameters...)
is logged (`voicenode.count("model_errors")`, an event with the reason) and replaced by the
built-in default model the caller names; if that is broken too the detector runs without it
and says so. `step` allocates nothing: `hits` holds preallocated [name, score] pairs that are
overwritten by the next step.
"""

import array

import micropython
from micropython import const

import voicenode
from voicenode.nn import model as _model

_ST = const(6)  # words of state per model in Detector._st


def _log(kind, msg):
    voicenode.count("model_errors")
    try:
        from voicenode.actions import eventlog

        eventlog.emit(kind, error=msg)
    except ImportError:
        print("wake:", kind, msg)


def _try_load(path, frontend, shared=False):
    # A model file must never stop the node: any failure becomes a message. Shared: checked
    # and sized only (`Detector.place` gives it memory).
    try:
        if shared:
            return _model.prepare(path, frontend), None
        return _model.load(path, frontend), None
    except _model.ModelError as e:
        return None, str(e)
    except Exception as e:  # a read error, a malformed sidecar the checks did not foresee...
        return None, "%s: %s: %s" % (path, type(e).__name__, e)


class Detector:
    """Runs wake-word models side by side on one stream of feature frames.

    Args:
        models: paths of `.vnm` files, or loaded `voicenode.nn.model.Model` objects.
        default: path of the built-in default model, loaded in place of any model that fails
            (once, however many fail). None: no fallback.
        frontend: front-end parameters to check the sidecars against (None: dsp.params).
        shared: only check and size the models (`voicenode.nn.model.prepare`); the owner
            binds them (`voicenode.nn.model.share`, or `place` for memory of their own) and
            reads them in with `fill`.

    Attributes:
        models: the models that run. errors: the messages of the models refused.
        hits: [name, score] pairs (the model's name, e.g. "hey_jarvis"), the first n valid
            after `step` returned n (reused).
        frame: index of the next frame (counts from 0, wraps at 2**30).
    """

    def __init__(self, models, default=None, frontend=None, shared=False):
        self.models = []
        self.errors = []
        failed = False
        for spec in models:
            if isinstance(spec, str):
                m, err = _try_load(spec, frontend, shared)
                if m is None:
                    failed = True
                    self._refuse("model_error", "%s; falling back to the default model" % err)
                else:
                    self.models.append(m)
            else:
                self.models.append(spec)
        if (failed or not self.models) and default is not None:
            m, err = _try_load(default, frontend, shared)
            if m is None:
                self._refuse("default_model_error", "%s; the detector runs without it" % err)
            elif not any(x.path == m.path for x in self.models):
                self.models.append(m)
        self._setup(None)

    def _setup(self, thresholds):
        # The post-processing state of self.models (thresholds: each model's, or None for
        # its own cutoff); made here and when a model is dropped, never per step.
        n = len(self.models)
        self._rings = [bytearray(m.window) for m in self.models]
        # per model (_ST words): ring position, ring sum, cool-off steps left, threshold
        # (cutoff_u8 * window), window, cooloff
        self._st = array.array("i", bytes(4 * _ST * n))
        for i in range(n):
            m = self.models[i]
            self._st[_ST * i + 3] = thresholds[i] if thresholds else m.cutoff_u8 * m.window
            self._st[_ST * i + 4] = m.window
            self._st[_ST * i + 5] = m.cooloff
        self.hits = [[m.name, 0] for m in self.models]
        self._ctx = [self.models, self._rings, self._st, self.hits, [m.name for m in self.models]]
        self.frame = 0
        self._n = n

    def place(self):
        """Give each model (made with shared=True) memory of its own and read its weights."""
        self._each(lambda m: m.bind())
        self.fill()

    def fill(self):
        """Read every model's weights back into its memory (after another model used it,
        see `voicenode.nn.model.share`) and reset. A model that fails (its file changed or
        went bad since it was checked) is dropped with a "model_error" event; the others run
        on."""
        self._each(lambda m: m.fill())
        self.reset()

    def _each(self, fn):
        # fn(model) for every model; the models it fails for are dropped (logged).
        bad = []
        for i in range(self._n):
            try:
                fn(self.models[i])
            except _model.ModelError as e:
                bad.append(i)
                self._refuse("model_error", "%s; the detector runs without it" % e)
        if bad:
            keep = [i for i in range(self._n) if i not in bad]
            thresholds = [self._st[_ST * i + 3] for i in keep]
            self.models = [self.models[i] for i in keep]
            self._setup(thresholds)

    def set_cutoff(self, i, cutoff_u8):
        """Override model i's cutoff (0..255 on the window mean of uint8 probabilities)."""
        if not 0 < cutoff_u8 <= 255:
            raise ValueError("cutoff_u8 must be in 1..255")
        self._st[_ST * i + 3] = cutoff_u8 * self.models[i].window

    def _refuse(self, kind, msg):
        self.errors.append(msg)
        _log(kind, msg)

    def reset(self):
        """Forget all history: networks, rings, cool-offs (the frame counter keeps going)."""
        for i in range(self._n):
            self.models[i].reset()
            ring = self._rings[i]
            for j in range(len(ring)):
                ring[j] = 0
            for j in range(3):
                self._st[_ST * i + j] = 0

    def step(self, frame):
        """Feed one feature frame to every model; return the number of detections.

        The detections are `hits[0:n]` ([model name, score], score = mean uint8 probability of the
        window); they stay valid until the next call. Allocates nothing.
        """
        n = detect(frame, self._ctx)
        self.frame = (self.frame + 1) & 0x3FFFFFFF
        return n


@micropython.viper
def detect(frame, ctx) -> int:
    """One frame through every model and its post-processing; returns the detections.

    ctx = [models, rings, st, hits, names] (see Detector). Viper, so that no call frame is
    taken from the heap (see voicenode.nn.kernels.run_layers).
    """
    models = ctx[0]
    rings = ctx[1]
    st = ptr32(ctx[2])
    hits = ctx[3]
    names = ctx[4]
    n = int(len(models))
    n_hits = 0
    i = 0
    while i < n:
        p = int(models[i].step(frame))
        if p >= 0:
            ring = ptr8(rings[i])
            b = i * _ST
            w = int(st[b + 4])
            pos = int(st[b])
            total = int(st[b + 1]) - ring[pos] + p
            ring[pos] = p
            pos += 1
            if pos == w:
                pos = 0
            st[b] = pos
            st[b + 1] = total
            cool = int(st[b + 2])
            if cool > 0:
                st[b + 2] = cool - 1
            elif total >= int(st[b + 3]):
                j = 0
                while j < w:
                    ring[j] = 0
                    j += 1
                st[b] = 0
                st[b + 1] = 0
                st[b + 2] = st[b + 5]
                hit = hits[n_hits]
                hit[0] = names[i]
                hit[1] = total // w
                n_hits += 1
        i += 1
    return n_hits


def detect_py(frame, ctx):
    """Plain-Python twin of `detect`."""
    models, rings, st, hits, names = ctx
    n_hits = 0
    for i in range(len(models)):
        p = models[i].step(frame)
        if p < 0:
            continue
        ring = rings[i]
        b = i * _ST
        w = st[b + 4]
        total = st[b + 1] - ring[st[b]] + p
        ring[st[b]] = p
        st[b] = (st[b] + 1) % w
        st[b + 1] = total
        if st[b + 2] > 0:
            st[b + 2] -= 1
        elif total >= st[b + 3]:
            for j in range(w):
                ring[j] = 0
            st[b] = st[b + 1] = 0
            st[b + 2] = st[b + 5]
            hits[n_hits][0] = names[i]
            hits[n_hits][1] = total // w
            n_hits += 1
    return n_hits
