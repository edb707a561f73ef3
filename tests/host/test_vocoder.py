"""New training voices through the WORLD vocoder (`train.vocoder`)."""

import numpy as np
import pytest
import pyworld as pw

from voicenode_tools.train import synth, vocoder

RATE = 16000


def _median_f0(pcm):
    x = np.asarray(pcm, np.float64) / 32768.0
    f0, t = pw.dio(x, RATE, frame_period=5.0)
    f0 = pw.stonemask(x, f0, t, RATE)
    return float(np.median(f0[f0 > 0]))


@pytest.fixture(scope="module")
def speech():
    return synth.say("hey jarvis", synth.Voice("espeak", "en-us", "m1", speed=150, pitch=75))


@pytest.mark.parametrize("f0", [0.75, 1.6, 2.0])
def test_pitch_moves_by_its_factor(speech, f0):
    out = vocoder.convert(speech, RATE, vocoder.Conversion(f0=f0))
    assert out.dtype == np.int16 and len(out) == len(speech)
    ratio = _median_f0(out) / _median_f0(speech)
    assert abs(ratio / f0 - 1) < 0.08, ratio


def test_formants_move_up_the_spectrum(speech):
    def centroid(x):
        p = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / RATE)
        return float((p * f).sum() / p.sum())

    up = vocoder.convert(speech, RATE, vocoder.Conversion(formant=1.2))
    same = vocoder.convert(speech, RATE, vocoder.Conversion())
    assert centroid(up) > 1.1 * centroid(same)


def test_level_kept_and_silence_passes_through(speech):
    out = vocoder.convert(speech, RATE, vocoder.Conversion(f0=1.5, formant=1.1, smooth=5))
    assert abs(int(np.abs(out).max()) - int(np.abs(speech).max())) <= 2
    quiet = np.zeros(8000, np.int16)
    assert np.array_equal(vocoder.convert(quiet, RATE, vocoder.Conversion(f0=2.0)), quiet)


def test_draws_are_repeatable_and_within_bounds():
    spec = {"share": 1.0, "f0": [0.7, 2.3], "formant": [0.88, 1.22], "smooth": 5, "p_smooth": 0.5}
    a = [vocoder.draw(np.random.default_rng(3), spec) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(4)
    many = [vocoder.draw(rng, spec) for _ in range(300)]
    assert all(0.7 <= c.f0 <= 2.3 and 0.88 <= c.formant <= 1.22 for c in many)
    # a higher voice gets a shorter vocal tract, a lower one a longer
    assert all((c.formant >= 1.0) == (c.f0 >= 1.0) for c in many)
    assert {c.smooth for c in many} == {1, 5}


def test_a_recipe_share_of_training_clips_is_vocoded_and_validation_is_untouched():
    from voicenode_tools.train import data, recipe

    tiny = {"positives": 12, "confusables": 8, "speech_minutes": 0.1, "music_clips": 0,
            "val_positives": 4, "val_piper_positives": 0, "val_confusables": 4,
            "piper_fraction": 0.0, "val_speech_minutes": 0.1}  # fmt: skip
    plain = data.generate(recipe.make("alexa", seed=5, data=tiny), RATE, workers=1)
    spec = {"share": 0.5, "f0": [1.5, 2.0], "formant": [1.0, 1.2], "smooth": 1, "p_smooth": 0.0}
    voc = data.generate(recipe.make("alexa", seed=5, data={**tiny, "vocoder": spec}), RATE,
                        workers=1)  # fmt: skip
    for g in ("val_pos", "val_conf", "val_speech"):
        assert voc.info[g] == plain.info[g]
        assert all(np.array_equal(a, b) for a, b in zip(voc.groups[g], plain.groups[g], strict=True))
    changed = 0
    for g in ("train_pos", "train_conf", "train_speech"):
        pairs = zip(voc.groups[g], plain.groups[g], voc.info[g], plain.info[g], strict=True)
        for a, b, info, info0 in pairs:
            assert len(a) == len(b)  # the same voice and words, said again
            if ":voc" in info:
                changed += 1
                assert not np.array_equal(a, b) and info.split(":voc")[0] == info0.split("|")[0]
            else:
                assert np.array_equal(a, b) and info == info0
    n = sum(len(voc.groups[g]) for g in ("train_pos", "train_conf", "train_speech"))
    assert 0.2 * n < changed < 0.8 * n
