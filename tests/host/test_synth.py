"""Training data synthesis and augmentation (espeak-ng, piper, sox-free numpy DSP)."""

import numpy as np
import pytest

from voicenode_tools.train import augment, synth

RATE = 16000


@pytest.mark.parametrize(
    "voice",
    [
        synth.Voice("espeak", "en-us", "m3", speed=160, pitch=50),
        synth.Voice("espeak", "de", "f2", speed=120, pitch=70, warp=1.08),
        synth.Voice("piper", "joe", speed=100, pitch=66, extra=80),
    ],
    ids=lambda v: v.label(),
)
def test_synthesis_rate_and_length(voice):
    pcm = synth.say("hey jarvis", voice, RATE)
    assert pcm.dtype == np.int16
    # Two words take between a third of a second and three seconds at any sane speed.
    assert 0.3 * RATE < len(pcm) < 3.0 * RATE
    assert augment.rms(pcm) > 300  # not silence


def test_slower_speech_is_longer():
    fast = synth.say("hey jarvis", synth.Voice("espeak", "en-us", speed=220), RATE)
    slow = synth.say("hey jarvis", synth.Voice("espeak", "en-us", speed=100), RATE)
    assert len(slow) > 1.5 * len(fast)


def test_warp_changes_length_by_its_factor():
    base = synth.say("alexa", synth.Voice("espeak", "en-gb"), RATE)
    warped = synth.say("alexa", synth.Voice("espeak", "en-gb", warp=1.25), RATE)
    assert abs(len(warped) * 1.25 / len(base) - 1) < 0.02


def test_resample_keeps_a_tone():
    t = np.arange(22050) / 22050
    x = 10000 * np.sin(2 * np.pi * 440 * t)
    y = synth.resample(x, 22050, RATE)
    assert len(y) == RATE
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 440) <= 1  # 1 Hz bins at one second
    assert abs(augment.rms(y) - augment.rms(x)) / augment.rms(x) < 0.02


def test_held_out_voices_never_drawn_for_training():
    rng = np.random.default_rng(0)
    train = [synth.random_espeak_voice(rng, held_out=False) for _ in range(300)]
    val = [synth.random_espeak_voice(rng, held_out=True) for _ in range(100)]
    assert not any(v.held_out() for v in train)
    assert all(v.held_out() for v in val)


def test_reserved_synthesizers_refused():
    with pytest.raises(ValueError, match="reserved"):
        synth.say("hey", synth.Voice("flite", "slt"))


def test_augment_keeps_length_and_range():
    rng = np.random.default_rng(1)
    clip = synth.say("hey jarvis", synth.Voice("espeak", "en-us"), RATE)
    music = augment.render_music(rng, RATE, 3.0)
    assert len(music) > 2 * RATE and augment.rms(music) > 100
    speech = [synth.say("the weather is nice today", synth.Voice("espeak", "en-gb"), RATE)]
    outs = [augment.augment(clip, RATE, rng, [music], speech) for _ in range(30)]
    for y in outs:
        assert y.dtype == np.int16 and len(y) == len(clip)
        # Peaks up to +1 dB above full scale: some clipping at most, never a saturated clip.
        assert np.mean(np.abs(y.astype(np.int32)) >= 32767) < 0.02
        assert augment.rms(y) > 0
    # Random levels: the RMS spans more than 15 dB across the draws.
    levels = [20 * np.log10(augment.rms(y) + 1) for y in outs]
    assert max(levels) - min(levels) > 15


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colours(kind, slope):
    x = augment.noise(1 << 16, np.random.default_rng(2), kind)
    assert abs(augment.rms(x) - 1) < 1e-3
    p = np.abs(np.fft.rfft(x)) ** 2
    lo, hi = p[100:200].mean(), p[10000:20000].mean()
    measured = np.log10(hi / lo) / np.log10(15000 / 150)
    assert abs(measured - slope) < 0.3


def test_mix_reaches_the_snr():
    rng = np.random.default_rng(3)
    s = augment.white(RATE, rng) * 1000
    b = augment.noise(RATE, rng, "pink")
    y = augment.mix(s, b, 10.0)
    snr = 20 * np.log10(augment.rms(s) / augment.rms(y - s))
    assert abs(snr - 10.0) < 0.01


def test_reverb_and_band_keep_length():
    rng = np.random.default_rng(4)
    x = augment.white(8000, rng)
    assert len(augment.reverb(x, RATE, rng)) == 8000
    y = augment.band_limit(x, RATE, 300, 3000)
    p = np.abs(np.fft.rfft(y)) ** 2
    assert p[int(6000 / 2) :].mean() < 0.1 * p[int(1000 / 2) : int(2000 / 2)].mean()


def test_wider_training_warp_leaves_validation_clips_alone(monkeypatch):
    """`train_warp_sd` changes only the training voices' warp: the validation voices and
    texts (and so the benchmark's audio) are drawn exactly as before."""
    from voicenode_tools.train import data, recipe

    monkeypatch.setattr(synth, "say", lambda text, voice, rate=None: np.zeros(800, np.int16))
    monkeypatch.setattr(synth, "piper_available", lambda: True)
    monkeypatch.setattr(augment, "render_music", lambda rng, rate, s: np.zeros(800, np.int16))
    small = {"positives": 40, "confusables": 20, "speech_minutes": 0.01, "music_clips": 1,
             "val_positives": 20, "val_piper_positives": 10, "val_confusables": 10,
             "val_speech_minutes": 0.01, "piper_fraction": 0.3}  # fmt: skip

    def infos(**extra):
        rec = recipe.make("hey jarvis", seed=4, data={**small, **extra})
        return data.generate(rec, 16000, workers=1).info

    a, b = infos(), infos(train_warp_sd=0.2)
    for group in ("val_pos", "val_piper", "val_conf", "val_speech"):
        assert a[group] == b[group] and a[group]
    warps = []
    for group in ("train_pos", "train_conf", "train_speech"):
        assert len(a[group]) == len(b[group])
        for x, y in zip(a[group], b[group], strict=True):
            # the same voice and text, another warp
            assert x.split(":w")[0] == y.split(":w")[0] and x.split("|")[1] == y.split("|")[1]
            warps.append([float(v.split(":w")[1].split("|")[0]) for v in (x, y)])
    wa, wb = np.log(np.array(warps)).T
    assert np.std(wb) > 2.5 * np.std(wa)


def test_piper_clips_repeat_after_a_reseed():
    """piper's sampling noise comes from its session: reseeding makes the same clips again."""
    v = synth.Voice("piper", "joe", speed=100, pitch=80, extra=80)

    def clips(seed):
        synth.reseed_piper(seed)
        return [synth.say(t, v) for t in ("hey jarvis", "alexa")]

    a, b, c = clips(3), clips(3), clips(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(len(x) == len(z) and np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_the_people_are_mbrola_voices_and_never_train():
    """espeak-ng's MBROLA voices are recorded people's diphones (Debian packages): reserved for
    evaluation, so the benchmarks' people are five of them and no training draw is one."""
    rng = np.random.default_rng(3)
    people = [synth.random_person(rng) for _ in range(100)]
    assert {v.name for v in people} == set(synth.MBROLA_HELD_OUT)
    assert all(v.synth == "espeak" and v.variant == "" and v.held_out() for v in people)
    # every MBROLA voice counts as held out, not only the five the benchmarks play
    assert all(synth.Voice("espeak", n).held_out() for n, _ in synth.MBROLA_VOICES)
    drawn = [synth.random_voice(rng, False, piper=0.25) for _ in range(2000)]
    assert not any(v.name.startswith("mb-") for v in drawn)


def test_no_recipe_trains_on_mbrola_voices(tmp_path):
    from voicenode_tools.train import commands as tc
    from voicenode_tools.train import data, recipe

    rec = recipe.make("hey jarvis", seed=1)
    rec["data"]["mbrola_fraction"] = 0.3
    with pytest.raises(ValueError, match="mbrola_fraction.*reserved for independent evaluation"):
        recipe.check(rec)
    path = tmp_path / "r.json"
    path.write_text('{"phrase": "hey jarvis", "data": {"mbrola_fraction": 0.3}}')
    with pytest.raises(ValueError, match=f"{path}: data.mbrola_fraction"):
        recipe.load(path)
    with pytest.raises(ValueError, match="mbrola_fraction"):  # the command model's recipe too
        tc.make_recipe(1, overrides={"data": {"mbrola_fraction": 0.3}})
    with pytest.raises(ValueError, match="mbrola_fraction"):  # nor a teacher's variant
        data.generate(rec, RATE)
    synth.refuse_mbrola(recipe.make("hey jarvis")["data"])  # without it: nothing to refuse


def test_missing_mbrola_packages_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(synth, "MBROLA_DIR", str(tmp_path))
    (tmp_path / "us1").mkdir()
    (tmp_path / "us1" / "us1").write_bytes(b"db")
    missing = synth.missing_mbrola()
    assert "mbrola-us1" not in missing and "mbrola-us2" in missing and "mbrola-sw2" in missing
    with pytest.raises(RuntimeError, match="apt-get install .*mbrola-us2"):
        synth.check_mbrola()


def test_the_training_mix_draws_each_family_by_its_share():
    rng = np.random.default_rng(5)
    drawn = [synth.random_voice(rng, False, piper=0.25) for _ in range(2000)]
    share_piper = np.mean([v.synth == "piper" for v in drawn])
    assert abs(share_piper - 0.25) < 0.04
    held = [synth.random_voice(rng, True) for _ in range(300)]
    assert all(v.synth == "espeak" and v.held_out() for v in held)
    # without the shares it is random_espeak_voice, draw for draw
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert [synth.random_voice(a) for _ in range(50)] == [
        synth.random_espeak_voice(b) for _ in range(50)
    ]
