"""The detection rule of MODEL_FORMAT.md is implemented once per side: the host twin of the
chip's detector (`reference.wake.postprocess`) and the training's vectorised scorer
(`train.evaluate.detections`) must fire at the same model steps."""

import numpy as np
import pytest

from voicenode_tools.reference import wake
from voicenode_tools.train import evaluate


@pytest.mark.parametrize("window,cooloff", [(1, 0), (3, 0), (3, 1), (5, 2), (5, 12), (8, 30)])
def test_training_scorer_fires_where_the_detector_does(window, cooloff):
    rng = np.random.default_rng(window * 100 + cooloff)
    # bursty probabilities: mostly low, with runs of high values of random length
    p = np.clip(rng.normal(40, 30, 4000), 0, 255)
    for start in rng.integers(0, 3990, 120):
        p[start : start + rng.integers(1, 12)] = rng.integers(150, 256)
    p = p.astype(np.uint8)
    for cutoff in (100, 160, 220):
        want = [s for s, _ in wake.postprocess(p, cutoff, window, cooloff)]
        assert len(want) > 5
        assert evaluate.detections(p, cutoff, window, cooloff) == want
