"""The wake phrase and then a spoken command, injected: the node answers with an intent.

With a command model in its config the node runs the wake words and the command network in
turns in the same memory (the wake words are read back from the flash after each command).
Two rounds of "<wake phrase> ... <command>" must give two wakes and two intents, exactly the
host twin's (`reference.node.events` with the same command model), each intent within the
listening window after its wake.
"""

import json

import numpy as np

from voicenode_tools.hil import clips

COMMANDS = "commands_home"
SAID = ("turn on the kitchen lights", "set a timer for five minutes")


def _round(phrase, command, sr, seed):
    rng = np.random.default_rng(seed)
    speech = np.concatenate([
        clips.say(phrase, sample_rate=sr),
        np.zeros(int(0.3 * sr), np.int16),
        clips.say(command, sample_rate=sr),
    ])  # fmt: skip
    pcm, _, _ = clips.place(speech, sr, rng, before=1.0, after=1.5)
    return pcm


def test_wake_then_command_gives_the_twins_intents(node, inject, hil_target, wake_phrase):
    from voicenode_tools.reference import commands as rc
    from voicenode_tools.reference.node import events

    sr = clips.rate()
    pcm = np.concatenate([_round(wake_phrase, c, sr, i) for i, c in enumerate(SAID)])
    node.write_file("/config.json", json.dumps({"commands": COMMANDS}).encode())
    try:
        node.hard_reset()
        boot = node.events()
        errors = [e for e in boot if e.get("event") in ("error", "model_error")]
        assert not errors, f"the node could not load the command model: {errors}"
        res = inject(pcm)
    finally:
        node.exec("import os\nos.remove('/config.json')")
    got = [
        {k: e[k] for k in ("event", "word", "score", "at", "intent", "slots", "reason") if k in e}
        for _, e in res.events
        if e.get("event") in ("wake", "intent")
    ]
    kinds = [e["event"] for e in got]
    assert kinds == ["wake", "intent", "wake", "intent"], got
    for wake, intent in zip(got[::2], got[1::2], strict=True):
        assert 0 < intent["at"] - wake["at"] <= 3.5, (wake, intent)
    if not hil_target.acoustic:
        model = str(clips.default_model())
        want = events(pcm, [model], default=model,
                      commands=rc.load(clips.default_model().parent / COMMANDS))  # fmt: skip
        assert got == want, "the node and its host twin disagree"
