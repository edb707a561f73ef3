"""`voicenode features` and the numpy reference's tables and behaviour."""

import numpy as np

from voicenode_tools import REPO_ROOT
from voicenode_tools.audio import write_wav
from voicenode_tools.cli import main
from voicenode_tools.reference import frontend as ref
from voicenode_tools.reference import params as P

SPEECH = REPO_ROOT / "tests" / "data" / "speech_16k.wav"


def test_shipped_tables_are_what_params_generate():
    assert P.TABLES_PATH.read_text() == ref.tables_source()


def test_params_come_from_the_firmware_file():
    text = P.PARAMS_PATH.read_text()
    assert "MUST MATCH TRAINING" in text
    assert f"N_MELS = const({P.N_MELS})" in text
    assert P.WINDOW == 480 and P.STEP == 160 and P.SAMPLE_RATE == 16000


def test_reference_and_sim_print_the_same_text(tmp_path, capsys):
    assert main(["features", str(SPEECH)]) == 0
    text_ref = capsys.readouterr().out
    assert main(["features", "--sim", "--chunk", "333", str(SPEECH)]) == 0
    text_sim = capsys.readouterr().out
    assert text_ref == text_sim
    lines = text_ref.splitlines()
    assert len(lines) == (64843 - P.WINDOW) // P.STEP + 1
    assert all(len(line.split()) == P.N_MELS for line in lines)


def test_npy_and_png_outputs(tmp_path, capsys):
    npy, png = tmp_path / "f.npy", tmp_path / "f.png"
    assert main(["features", "-q", str(SPEECH), "-o", str(npy), "--png", str(png)]) == 0
    assert capsys.readouterr().out == ""
    feats = np.load(npy)
    assert feats.dtype == np.uint8 and feats.shape[1] == P.N_MELS
    np.testing.assert_array_equal(feats, ref.features(ref_pcm()))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def ref_pcm():
    from voicenode_tools.audio import load_16k

    return load_16k(SPEECH)


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["features", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "voicenode features: error:" in err and "not a WAV file" in err


def test_tone_lights_up_its_own_band(tmp_path):
    # Quiet noise, then a 1 kHz tone: the band whose centre is nearest 1 kHz wins.
    rng = np.random.default_rng(0)
    n = 16000
    x = rng.standard_normal(2 * n) * 30
    x[n:] += 8000 * np.sin(2 * np.pi * 1000 * np.arange(n) / 16000)
    feats = ref.features(x.astype(np.int16))
    tone = feats[-20:].astype(int).mean(axis=0)
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    centres = np.linspace(mel(P.MEL_LO_HZ), mel(P.MEL_HI_HZ), P.N_MELS + 2)[1:-1]
    assert int(np.argmax(tone)) == int(np.argmin(np.abs(centres - mel(1000))))
    # Before the tone the features sit near the floor.
    assert feats[50:90].mean() < 40 and tone.max() > 150


def test_noise_floor_adapts_to_steady_noise():
    rng = np.random.default_rng(1)
    x = np.clip(rng.standard_normal(16000 * 6) * 3000, -32768, 32767).astype(np.int16)
    feats = ref.features(x).astype(int)
    # Loud steady noise ends up near OUT_OFFSET, not near the top of the range.
    assert abs(feats[-100:].mean() - P.OUT_OFFSET) < 12


def test_wav_at_another_rate_is_resampled(tmp_path, capsys):
    p = tmp_path / "r.wav"
    write_wav(p, np.zeros(44100, np.int16), rate=44100)
    assert main(["features", str(p)]) == 0
    cap = capsys.readouterr()
    assert "resampled to 16000 Hz" in cap.err
    assert len(cap.out.splitlines()) == 98


def test_fixed_point_headroom_on_extreme_signals():
    # Full-scale squares, clipping and DC stay far below the 32-bit limits the chip has.
    t = ref._tables()
    n = 16000
    k = np.arange(n)
    signals = [
        np.where(np.sin(2 * np.pi * 440 * k / n) >= 0, 32767, -32768),
        np.clip(90000 * np.sin(2 * np.pi * 1234 * k / n), -32768, 32767),
        np.full(n, -32768),
        np.where(k % 160 < 40, 32767, -32768),
    ]
    for x in signals:
        power, s, peak = ref._fft_power(ref._frames(x.astype(np.int16)), t)
        energy = power[:, t.k_lo : t.k_hi + 1].astype(np.int64) @ t.mel
        assert power.max() < 1 << 25 and energy.max() < 1 << 28
        assert s.min() >= -4 and s.max() <= P.NORM_BIT


def test_shipped_fft_stages_are_what_the_generator_writes():
    text = (P.PARAMS_PATH.parent / "fft.py").read_text()
    a, b = ref._fft_region(text)
    assert text[a:b] == ref.fft_stages_source()
