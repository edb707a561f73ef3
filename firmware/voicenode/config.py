"""The node's settings: defaults, overridden by /config.json on the flash.

    {"wake_words": ["hey_jarvis"], "cutoffs": {"hey_jarvis": 0.6}, "status_every_s": 60}

A config that cannot be read or parsed, or holds a value of the wrong type, is never fatal:
the node logs an "error" event naming the problem, counts `config_errors`, and runs on the
defaults (a safe state). The user fixes the file with `mpremote fs cp`.
"""

import json

import voicenode

PATH = "/config.json"

DEFAULTS = {
    # wake-word models to run, by name (models/<name>.vnm in the app); the first is the
    # built-in default that any model that fails to load falls back to.
    "wake_words": ["hey_jarvis"],
    # per-word cutoff overrides (0..1); absent: the model's own cutoff.
    "cutoffs": {},
    # a status event this often (seconds of audio); 0: never.
    "status_every_s": 60,
    # intents that drive outputs named by the board, see voicenode.actions.gpio
    "outputs": {},
    # the command model listening after the wake word (models/<name>.json + .vcg + network),
    # or "" for none.
    # Off by default: the shipped command model is not accurate enough yet (docs/COMMANDS.md).
    "commands": "",
}


def _error(msg):
    voicenode.count("config_errors")
    try:
        from voicenode.actions import eventlog

        eventlog.emit("error", where="config", msg=msg)
    except ImportError:
        print("config:", msg)


def validate(cfg):
    """Return an error message for a bad config dict, or None."""
    if not isinstance(cfg, dict):
        return "top level must be a JSON object"
    for key, value in cfg.items():
        if key not in DEFAULTS:
            return "unknown key %r" % key
        if type(value) is not type(DEFAULTS[key]):
            return "%r must be a %s" % (key, type(DEFAULTS[key]).__name__)
    for w in cfg.get("wake_words", ()):
        if not isinstance(w, str) or not w or "/" in w:
            return "wake_words holds a bad name %r" % (w,)
    for w, c in cfg.get("cutoffs", {}).items():
        if not isinstance(c, (int, float)) or not 0 < c <= 1:
            return "cutoff for %r must be a number in (0, 1]" % w
    return None


def load(path=PATH):
    """The settings: DEFAULTS updated from the file at `path` (if it exists and is valid)."""
    cfg = dict(DEFAULTS)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return cfg  # no file: defaults, not an error
    try:
        user = json.loads(raw.decode())
    except (ValueError, UnicodeError):  # garbage bytes, not only bad JSON
        _error("%s is not valid JSON; using the defaults" % path)
        return cfg
    err = validate(user)
    if err is not None:
        _error("%s: %s; using the defaults" % (path, err))
        return cfg
    cfg.update(user)
    return cfg
