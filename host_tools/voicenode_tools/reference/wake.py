"""Numpy twin of the on-chip wake-word detector (`firmware/voicenode/wake.py`).

Same models, same integer post-processing, same detections at the same feature-frame indices::

    det = Detector(["models/hey_node.vnm"], default="models/default.vnm")
    for d in det.run(features_u8):        # (steps, N_MELS) from reference.frontend.features
        print(d.frame, d.word, d.score)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .nn import ModelFormatError, QuantModel, check_sidecar


@dataclass(frozen=True)
class Detection:
    """One detection: the feature frame (from 0) that completed the model step, the model's
    name (e.g. "hey_jarvis"), and the score (mean uint8 probability of the window)."""

    frame: int
    word: str
    score: int


def postprocess(
    probs: np.ndarray, cutoff_u8: int, window: int, cooloff: int
) -> list[tuple[int, int]]:
    """ESPHome-style integer post-processing of one model's uint8 probabilities.

    Args:
        probs: uint8 probability per model step.
        cutoff_u8: threshold on the window mean (0..255).
        window: sliding-window length in model steps.
        cooloff: model steps after a detection that cannot detect.

    Returns:
        ``[(model_step, score), ...]`` in order.
    """
    ring = np.zeros(window, np.int64)
    pos = total = cool = 0
    threshold = cutoff_u8 * window
    out = []
    for step, p in enumerate(np.asarray(probs, np.int64).tolist()):
        total += p - int(ring[pos])
        ring[pos] = p
        pos = (pos + 1) % window
        if cool > 0:
            cool -= 1
            continue
        if total >= threshold:
            out.append((step, total // window))
            ring[:] = 0
            pos = total = 0
            cool = cooloff
    return out


def _load(path, frontend):
    model = QuantModel.load(path)
    side_path = Path(path).with_suffix(".json")
    if not model.sidecar:
        raise ModelFormatError(f"{side_path}: sidecar missing (a model needs its .json)")
    if frontend is not None:
        check_sidecar(model.sidecar, model, str(side_path), frontend)
    return model


def _vnm(path) -> str:
    s = str(path)
    return s if s.endswith(".vnm") else s + ".vnm"


class Detector:
    """Host twin of ``voicenode.wake.Detector``.

    Args:
        models: ``.vnm`` paths or :class:`QuantModel` objects (with their ``sidecar``).
        default: path of the default model that replaces any model that fails to load.
        frontend: front-end parameters the sidecars must match (None: not checked; pass
            :func:`voicenode_tools.reference.nn.frontend_params` to check like the chip).

    Attributes:
        models: the models that run; errors: messages of the models refused.
    """

    def __init__(self, models, default=None, frontend=None, cutoffs=None):
        self.cutoffs: dict[str, int] = dict(cutoffs or {})  # name -> cutoff_u8 override
        self.models: list[QuantModel] = []
        self.errors: list[str] = []
        failed = False
        paths = []
        for spec in models:
            if isinstance(spec, QuantModel):
                self.models.append(spec)
                continue
            try:
                self.models.append(_load(spec, frontend))
                paths.append(_vnm(spec))
            except (ModelFormatError, OSError) as e:
                failed = True
                self.errors.append(f"{e}; falling back to the default model")
        if (failed or not self.models) and default is not None:
            try:
                m = _load(default, frontend)
                if _vnm(default) not in paths:
                    self.models.append(m)
            except (ModelFormatError, OSError) as e:
                self.errors.append(f"{e}; the detector runs without it")

    def run(self, features: np.ndarray) -> list[Detection]:
        """Detections over a whole feature sequence, from a reset state, in chip order."""
        hits = []
        for i, m in enumerate(self.models):
            side = m.sidecar
            probs = m.stream(features)
            cutoff = self.cutoffs.get(side["name"], side["cutoff_u8"])
            for step, score in postprocess(probs, cutoff, side["window"], side["cooloff"]):
                frame = (step + 1) * m.stride - 1
                hits.append((frame, i, Detection(frame, side["name"], score)))
        hits.sort(key=lambda h: (h[0], h[1]))
        return [h[2] for h in hits]
