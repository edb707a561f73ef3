"""Host twin of the on-chip node (`firmware/voicenode/node.py`): samples in, events out.

Same front end, same models, same post-processing and the same event fields as the firmware,
so `voicenode listen FILE.wav` and `voicenode listen --sim FILE.wav` print the same events::

    for ev in events(pcm, ["models/hey_jarvis.vnm"], default="models/hey_jarvis.vnm"):
        print(ev)       # {"event": "wake", "word": "hey_jarvis", "score": 0.97, "at": 3.42}
"""

from __future__ import annotations

import numpy as np

from . import frontend, mic, nn, wake
from .params import SAMPLE_RATE, STEP, WINDOW


def event_time(frame: int) -> float:
    """Audio time of feature frame `frame`: the end of its window, in seconds (3 decimals)."""
    return round((frame * STEP + WINDOW) / SAMPLE_RATE, 3)


def events(
    pcm: np.ndarray,
    models,
    default=None,
    cutoffs: dict[str, float] | None = None,
    scores: bool = False,
    microphone: bool = False,
    commands=None,
) -> list[dict]:
    """The node's wake (and intent) events for a recording.

    Args:
        pcm: int16 mono samples at SAMPLE_RATE.
        models: `.vnm` paths (each with its `.json` sidecar).
        default: the fallback model for models that fail to load (as on the chip).
        cutoffs: per-model-name cutoff overrides in 0..1, as in the node's config.
        scores: also return one {"event": "score", ...} per model step (uint8 probability / 255),
            where the node runs its wake words (with commands: not in listening windows).
        microphone: `pcm` is what the microphone hears: pass it through the Microphone's DC
            high-pass first, as `main()` on a board does (False: `pcm` goes straight to
            `Node.feed`, as the HIL test input does).
        commands: a command model (`reference.commands.load`) or None: as the node with config
            "commands", every wake opens a listening window (from the next frame) that ends in
            one "intent" event; the wake words do not run while it is open (the node lends
            their memory to the command network) and start again from a reset after it.

    Returns:
        Events in time order, like the firmware prints them, without the boot clock "t".
    """
    pcm = np.asarray(pcm, np.int16)
    if microphone:
        pcm, _ = mic.highpass(pcm)
    feats = frontend.features(pcm)
    u8 = {k: int(v * 255 + 0.5) for k, v in (cutoffs or {}).items()}
    det = wake.Detector(models, default=default, frontend=nn.frontend_params(), cutoffs=u8)
    if det.errors:
        raise nn.ModelFormatError("; ".join(det.errors))
    if commands is None:
        out = [_wake_event(d, 0) for d in det.run(feats)]
        spans = [(0, len(feats))]
    else:
        out, spans = _with_commands(det, feats, commands)
    if scores:  # the wake words' steps where the node runs them, each span from a reset
        for m in det.models:
            for a, b in spans:
                for step, p in enumerate(m.stream(feats[a:b]).tolist()):
                    frame = a + (step + 1) * m.stride - 1
                    out.append(
                        {
                            "event": "score",
                            "word": m.sidecar["name"],
                            "score": round(p / 255, 3),
                            "at": event_time(frame),
                        }
                    )
        out.sort(key=lambda e: (e["at"], e["event"] != "score"))
    return out


def _wake_event(d, offset: int) -> dict:
    return {
        "event": "wake",
        "word": d.word,
        "score": round(d.score / 255, 3),
        "at": event_time(d.frame + offset),
    }


def _with_commands(det, feats: np.ndarray, model) -> tuple[list[dict], list[tuple[int, int]]]:
    """The node's wake and intent events with a command model (as `Node._wake`, `_listen`,
    `_command` and `_wait_for_wake`): the wake words run from a reset until one fires, the
    listening window opens on the next frame, and after its intent the wake words start
    over from a reset on the frame after it. Also returns the spans of frames [a, b) in
    which the wake words ran."""
    from . import commands as rc

    out = []
    spans = []
    start = 0
    while start < len(feats):
        dets = _first_wakes(det, feats, start)
        if not dets:
            spans.append((start, len(feats)))
            break
        first = dets[0].frame
        out += [_wake_event(d, start) for d in dets if d.frame == first]
        f = start + first
        spans.append((start, f + 1))
        r = rc.recognize(model, feats[f + 1 :])
        if r is None:
            break  # no decision before the end of the recording
        ev = {"event": "intent", "at": event_time(f + r["frames"])}
        ev.update({k: r[k] for k in ("intent", "slots", "score", "reason") if k in r})
        out.append(ev)
        start = f + r["frames"] + 1
    return out, spans


def _first_wakes(det, feats: np.ndarray, start: int, first_look: int = 3000) -> list:
    """The detections of the wake words run from a reset at frame `start` (frames counted
    from there), up to the first of them: a prefix of 30 s and doubling until one fires or
    the frames end. Streaming is causal, so a prefix gives the same detections as the whole
    rest, and a long recording with many wakes is not run again from each one to its end."""
    n = first_look
    while True:
        dets = det.run(feats[start : start + n])
        if dets or start + n >= len(feats):
            return dets
        n *= 2
