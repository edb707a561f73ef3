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
        scores: also return one {"event": "score", ...} per model step (uint8 probability / 255).
        microphone: `pcm` is what the microphone hears: pass it through the Microphone's DC
            high-pass first, as `main()` on a board does (False: `pcm` goes straight to
            `Node.feed`, as the HIL test input does).
        commands: a command model (`reference.commands.load`) or None: as the node with config
            "commands", every wake opens a listening window (from the next frame; a wake inside
            the window opens a new one) that ends in one "intent" event.

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
    dets = det.run(feats)
    out = [
        {
            "event": "wake",
            "word": d.word,
            "score": round(d.score / 255, 3),
            "at": event_time(d.frame),
        }
        for d in dets
    ]
    if commands is not None:
        out += intent_events(feats, sorted({d.frame for d in dets}), commands)
        out.sort(key=lambda e: (e["at"], e["event"] != "wake"))
    if scores:
        for m in det.models:
            probs = m.stream(feats)
            for step, p in enumerate(probs.tolist()):
                frame = (step + 1) * m.stride - 1
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


def intent_events(feats: np.ndarray, wake_frames: list[int], model) -> list[dict]:
    """The node's intent events: one listening window after each wake (as `Node._command`)."""
    from . import commands as rc

    out = []
    for i, f in enumerate(wake_frames):
        nxt = wake_frames[i + 1] if i + 1 < len(wake_frames) else len(feats)
        r = rc.recognize(model, feats[f + 1 : nxt])  # a new wake cuts the window short
        if r is None:
            continue  # no decision before the next wake (or the end of the recording)
        ev = {"event": "intent", "at": event_time(f + r["frames"])}
        ev.update({k: r[k] for k in ("intent", "slots", "score", "reason") if k in r})
        out.append(ev)
    return out
