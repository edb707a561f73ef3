"""GPIO outputs (relays, LEDs) driven by intents, from a small mapping in the node's config.

    "outputs": {
        "light.on":  {"pin": "RELAY1", "value": 1},
        "light.off": {"pin": "RELAY1", "value": 0},
        "door.open": {"pin": "RELAY2", "value": 1, "pulse_ms": 800},
        "fan.on":    [{"pin": "RELAY3", "value": 1, "slots": {"room": "kitchen"}},
                      {"pin": "RELAY4", "value": 1, "slots": {"room": "hall"}}]
    }

An intent name maps to one action or a list of them. An action sets the output named `pin`
to `value`; with `slots` it only runs when the intent carries those slot values; with
`pulse_ms` the output goes back to the opposite value after that long (a door opener), timed
by `poll()` from the node's loop, never by a sleep.

Pins are NAMES: the board module (boards/<BOARD>/board.py, reached only through
voicenode.hal) says which GPIO each name is. A name the board does not define is reported as
an "error" event when the mapping is loaded and that action is left out (the node keeps
running, a safe state): never a guessed pin number.
"""

import time

import voicenode


def _hal_pin(name):
    """The output machine.Pin (or Signal) for a board pin name, through voicenode.hal.

    A HAL that provides `output(name)` is asked directly; otherwise the board module's
    `OUTPUTS` table ({name: gpio} or {name: (gpio, active_low)}) is read through the HAL.
    """
    from voicenode import hal

    make = getattr(hal, "output", None)
    if make is not None:
        return make(name)
    table = getattr(hal.board, "OUTPUTS", None) or {}
    spec = table.get(name)
    if spec is None:
        raise ValueError("board %s has no output named %r" % (hal.board_name(), name))
    num, active_low = (spec, False) if isinstance(spec, int) else (spec[0], spec[1])
    return _Output(hal._pins.output_pin(num, 1 if active_low else 0), active_low)


class _Output:
    """An output pin whose logical 1 may be the electrical low level (active-low relays)."""

    def __init__(self, pin, active_low):
        self.pin = pin
        self.active_low = active_low

    def value(self, v=None):
        if v is None:
            return self.pin.value() ^ (1 if self.active_low else 0)
        self.pin.value((1 if v else 0) ^ (1 if self.active_low else 0))


class Outputs:
    """The intent -> output mapping, with its pins made once.

    Args:
        mapping: {intent: action or [actions]} (see the module docstring).
        pin: name -> object with value(v); default: the board's pins through voicenode.hal.
        log: called with an error message for a bad entry (default: an "error" event).
    """

    def __init__(self, mapping, pin=_hal_pin, log=None):
        self.pins = {}  # type: dict
        self.actions = {}  # type: dict
        # pulses running: pin name -> (deadline ms, value to restore)
        self.pulses = {}
        self.log = log or _log_error
        for intent, spec in (mapping or {}).items():
            for a in spec if isinstance(spec, list) else [spec]:
                err = self._check(a)
                if err is None and a["pin"] not in self.pins:
                    try:
                        p = pin(a["pin"])
                        self.pins[a["pin"]] = p
                    except (ValueError, AttributeError) as e:
                        err = str(e)
                if err is not None:
                    self.log("outputs[%r]: %s" % (intent, err))
                    continue
                self.actions.setdefault(intent, []).append(a)

    @staticmethod
    def _check(a):
        if not isinstance(a, dict) or not isinstance(a.get("pin"), str):
            return "an action needs a pin name"
        if a.get("value", 1) not in (0, 1):
            return "value must be 0 or 1"
        if not isinstance(a.get("slots", {}), dict):
            return "slots must be an object"
        if not isinstance(a.get("pulse_ms", 0), int) or a.get("pulse_ms", 0) < 0:
            return "pulse_ms must be a positive integer"
        return None

    def handle(self, intent, slots=None):
        """Run the actions for `intent`; returns how many outputs were set."""
        done = 0
        for a in self.actions.get(intent, ()):
            want = a.get("slots")
            if want:
                have = slots or {}
                if any(have.get(k) != v for k, v in want.items()):
                    continue
            v = a.get("value", 1)
            self.pins[a["pin"]].value(v)
            pulse = a.get("pulse_ms", 0)
            if pulse:
                self.pulses[a["pin"]] = (time.ticks_add(time.ticks_ms(), pulse), 1 - v)
            else:
                self.pulses.pop(a["pin"], None)
            done += 1
            voicenode.count("outputs_set")
        return done

    def poll(self):
        """End the pulses that are due (call it from the node's loop)."""
        if not self.pulses:
            return
        now = time.ticks_ms()
        for name in list(self.pulses):
            deadline, restore = self.pulses[name]
            if time.ticks_diff(now, deadline) >= 0:
                self.pins[name].value(restore)
                del self.pulses[name]

    def value(self, name):
        return self.pins[name].value()


def _log_error(msg):
    voicenode.count("config_errors")
    from voicenode.actions import eventlog

    eventlog.emit("error", where="outputs", msg=msg)
