"""The node: microphone -> front end -> wake-word detector -> commands -> event log.

Data flows one way. `Node.feed(samples)` takes int16 samples at 16 kHz from any source (the
microphone in `main()`, the HIL test input, a test) and runs them through the front end; the
front end calls back for every 10 ms feature frame, the detector runs every wake-word model on
it, and a detection becomes a "wake" event on the serial event log; after it, the command
recogniser (when the config names a command model) listens for up to 3 s and its result
becomes an "intent" event. The wake words and the command network take turns in the same
memory (`voicenode.nn.model.share`), so the wake words pause while a command is heard.
Nothing but events leaves the node: no samples, no features.

    >>> import voicenode.node as node
    >>> n = node.Node()                 # models from the app's models/ folder, /config.json
    >>> n.feed(samples)                 # any length; events are printed as JSON lines

`main()` (started by /main.py) reads the board's microphone forever. The node it runs is
`current()`, so the REPL and the HIL test input reach the same warm pipeline.

Event times: "t" is seconds since boot (the event log's clock); "at" is the audio time of the
detection in seconds since this node started listening: the end of the feature window that
fired, counted in samples, so it is exact and does not depend on how the audio was chunked.
"""

import gc

from micropython import const

import voicenode
from voicenode import config
from voicenode.actions import eventlog
from voicenode.dsp.frontend import Frontend
from voicenode.dsp.params import SAMPLE_RATE, STEP, WINDOW
from voicenode.nn.model import ModelError, share
from voicenode.wake import Detector

DEFAULT_WORD = "hey_jarvis"  # the built-in wake word, and the fallback model
_U8 = const(255)

_current = None


def app_dir():
    """The folder the firmware runs from (on the board: /app/<id>)."""
    f = voicenode.__file__
    for _ in range(2):  # .../voicenode/__init__.mpy -> ...
        i = f.rfind("/")
        f = f[:i] if i > 0 else ("/" if i == 0 else ".")
    return f


def models_dir():
    return app_dir() + "/models"


class Node:
    """One listening pipeline. Buffers and models are made here, once.

    Args:
        cfg: settings (see voicenode.config); default: config.load().
        models: folder of the `.vnm` models; default: the app's models/ folder.
    """

    def __init__(self, cfg=None, models=None):
        self.cfg = cfg = cfg if cfg is not None else config.load()
        folder = models if models is not None else models_dir()
        paths = [folder + "/" + w + ".vnm" for w in cfg["wake_words"]]
        # With a command model the wake words and the command network take turns in one
        # block of memory (`self.shared`): the wake words' weights while the node waits for
        # a wake word, the command network's while it listens for a command. So the two fit
        # the heap of the larger, and each turn reads its weights back from the flash.
        self.commands = rec = self._recognizer(folder, cfg.get("commands"))
        self.detector = Detector(
            paths, default=folder + "/" + DEFAULT_WORD + ".vnm", shared=rec is not None
        )
        self.shared = None
        if rec is not None:
            self._share(rec)
        cutoffs = cfg["cutoffs"]
        for i, m in enumerate(self.detector.models):
            if m.name in cutoffs:
                self.detector.set_cutoff(i, int(cutoffs[m.name] * _U8 + 0.5))
        # Bound once: a bound method made per frame would allocate.
        self.frontend = Frontend(callback=self._on_frame)
        self.samples = 0  # samples fed since the node started (or reset)
        self.wakes = 0

    @staticmethod
    def _recognizer(folder, name):
        # The command recogniser after the wake word (config "commands": a model name, or
        # None for wake words only), its network checked and sized but not yet in memory. A
        # model that cannot be loaded is logged, never fatal.
        if not name:
            return None
        from voicenode.commands import CommandModelError, Recognizer

        try:
            return Recognizer(folder + "/" + name, shared=True)
        except (OSError, CommandModelError, MemoryError) as e:
            _model_error(name, e)
            return None

    def _share(self, rec):
        # Memory for the larger of the two turns (`voicenode.nn.model.share`). The command
        # network is read in once here (its arithmetic is checked as it is read), then the
        # wake words take over.
        det = self.detector
        net = rec.net
        try:
            gc.collect()
            self.shared = share([det.models, [net]])
            net.fill()
        except (OSError, ModelError, MemoryError) as e:  # wake words only, in their own memory
            _model_error(self.cfg.get("commands"), e)
            self.commands = self.shared = None
            det.place()
            return
        det.fill()

    def reset(self):
        """Start over: a new recording (audio time back to 0, no history)."""
        self.frontend.reset()
        if self.commands is not None and self.commands.listening:
            self.commands.listening = False
            self._wait_for_wake()
        else:
            self.detector.reset()
        self.samples = 0

    def feed(self, samples):
        """Run int16 samples (any length) through the pipeline. Allocates nothing
        unless a word is detected (the event is formatted then)."""
        self.frontend.process(samples)
        self.samples += len(samples)

    def audio_time(self):
        """Seconds of audio fed so far."""
        return self.samples / SAMPLE_RATE

    def _on_frame(self, frame):
        # Kept tiny: a bytecode call whose frame (locals + stack) exceeds 11 words takes it
        # from the heap on every call, so detections and commands get methods of their own.
        # While a command is heard the wake words do not run (their memory is lent).
        if self.commands is not None and self.commands.listening:
            self._command(frame)
            return
        n = self.detector.step(frame)
        if n:
            self._wake(n)

    def _command(self, frame):
        r = self.commands.step(frame)  # None while listening, the result dict once
        if r is not None:
            voicenode.count("intents")
            end = (self.frontend.count - 1) * STEP + WINDOW
            eventlog.emit("intent", at=round(end / SAMPLE_RATE, 3), **r)
            self._wait_for_wake()

    def _wake(self, n):
        end = (self.frontend.count - 1) * STEP + WINDOW
        at = round(end / SAMPLE_RATE, 3)
        for i in range(n):
            word, score = self.detector.hits[i]
            self.wakes += 1
            voicenode.count("wakes")
            eventlog.emit("wake", word=word, score=round(score / _U8, 3), at=at)
        if self.commands is not None:
            self._listen()

    def _listen(self):
        # The command follows the wake word: the command network takes the shared memory
        # (a node with commands always shares, see _share).
        rec = self.commands
        try:
            rec.net.fill()
        except ModelError as e:  # its file went bad since boot: wake words only from now
            _model_error(self.cfg.get("commands"), e)
            self.commands = None
            self._wait_for_wake()
            return
        rec.reset()

    def _wait_for_wake(self):
        # The command is decided: the wake words take the shared memory back, from a reset.
        self.detector.fill()


def _model_error(name, e):
    voicenode.count("model_errors")
    eventlog.emit("error", where="commands", msg="%s: %s" % (name, e))


def current():
    """The node main() runs (made on first use)."""
    global _current
    if _current is None:
        _current = Node()
    return _current


def main():
    """Listen to the board's microphone forever (started by /main.py)."""
    from voicenode import actions, hal

    node = current()
    acts = actions.start(node.cfg)  # outputs, LED feedback, Wi-Fi + MQTT (hooks the event log)
    mic = hal.microphone()
    every = node.cfg["status_every_s"] * SAMPLE_RATE
    next_status = every
    was_muted = False
    gc.collect()
    eventlog.emit(
        "listening",
        words=[m.name for m in node.detector.models],
        board=hal.board_name(),
        heap_free=gc.mem_free(),
    )
    while True:
        block = mic.read()
        acts.poll()  # before the mute check: LED and MQTT keep running while muted
        muted = hal.muted()
        if muted != was_muted:
            was_muted = muted
            eventlog.emit("mute" if muted else "unmute")
            if not muted:
                node.reset()  # the audio before muting is gone
                next_status = every
        if muted:
            continue
        node.feed(block)
        if every and node.samples >= next_status:
            next_status += every
            gc.collect()
            eventlog.emit(
                "status",
                at=round(node.audio_time(), 3),
                heap_free=gc.mem_free(),
                counters=voicenode.counters,
            )
