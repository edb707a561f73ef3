"""What the on-board LED says: listening, understood, not understood, muted.

    fb = Feedback()              # the board's LED (voicenode.hal.led); None: no LED, no-op
    fb.show(feedback.LISTENING)  # after a wake word
    fb.show(feedback.UNDERSTOOD) # an intent was recognised
    fb.muted(True)               # the mute switch: shown until unmuted, nothing overrides it
    fb.poll()                    # from the node's loop, once per audio block

Every state is a pattern of on/off segments (in ms) and a colour for a pixel LED (a plain
GPIO LED just blinks the pattern). `poll()` moves through the segments by the clock, so the
LED is never timed with a sleep and the audio loop never waits. A pattern that does not
repeat falls back to IDLE (or MUTED while muted). `poll()` allocates nothing: the patterns
and colours are constant tuples, and an unchanged LED is not touched.
"""

import time

from micropython import const

IDLE = const(0)
LISTENING = const(1)
UNDERSTOOD = const(2)
NOT_UNDERSTOOD = const(3)
MUTED = const(4)
NAMES = ("idle", "listening", "understood", "not_understood", "muted")

# state: (colour, segments in ms starting "on", repeat). A segment of 0 ms lasts forever.
_PATTERNS = (
    ((0, 0, 0), (0,), False),  # idle: off (one "on" segment of black)
    # listening: blue for the command window (3 s of frames) and a margin; an intent (or
    # "not understood") replaces it sooner. Never stuck on if no result comes.
    ((0, 0, 32), (4000,), False),
    ((0, 40, 0), (800,), False),  # understood: green for 0.8 s
    ((48, 0, 0), (150, 150, 150, 150, 150, 150), False),  # not understood: 3 red blinks
    ((24, 0, 0), (100, 1900), True),  # muted: a short red blink every 2 s
)


class Feedback:
    """LED feedback driven by `poll()`.

    Args:
        led: an object with on(colour) and off() (voicenode.hal.led); default the board's.
            None (a board without an LED) makes every call a no-op.
        clock: a function returning milliseconds (time.ticks_ms).
    """

    def __init__(self, led=False, clock=time.ticks_ms):
        if led is False:
            try:
                from voicenode import hal

                led = hal.led
            except ImportError:
                led = None
        self.led = led
        self.clock = clock
        self.state = IDLE
        self.is_muted = False
        self._seg = 0
        self._t0 = clock()
        self._lit = None  # what the LED shows now: None (unknown), False (off) or a colour
        self._apply()

    def show(self, state):
        """Show `state` from now on (ignored while muted, except MUTED itself)."""
        if self.is_muted and state != MUTED:
            return
        self.state = state
        self._seg = 0
        self._t0 = self.clock()
        self._apply()

    def muted(self, flag):
        """Follow the mute input: MUTED while it is on, IDLE when it goes off."""
        if flag == self.is_muted:
            return
        self.is_muted = flag
        if flag:
            self.show(MUTED)
        else:
            self.show(IDLE)

    def poll(self):
        """Advance the pattern by the clock; touches the LED only when it changes."""
        segs = _PATTERNS[self.state][1]
        d = segs[self._seg]
        if not d:
            return
        now = self.clock()
        if time.ticks_diff(now, self._t0) < d:
            return
        self._t0 = time.ticks_add(self._t0, d)
        self._seg += 1
        if self._seg >= len(segs):
            if _PATTERNS[self.state][2]:
                self._seg = 0
            else:
                self.show(MUTED if self.is_muted else IDLE)
                return
        self._apply()

    def name(self):
        return NAMES[self.state]

    def _apply(self):
        led = self.led
        if led is None:
            return
        lit = False  # type: object
        if self.state != IDLE and not self._seg & 1:
            lit = _PATTERNS[self.state][0]
        if lit is self._lit:  # the colours are constant tuples: identity is enough
            return
        self._lit = lit
        if lit:
            led.on(lit)
        else:
            led.off()
