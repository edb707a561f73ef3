"""WAV reading: widths, float, channels, rates, and clear refusals."""

import struct

import numpy as np
import pytest

from voicenode_tools.audio import AudioError, load_16k, read_wav, resample, write_wav


def wav_bytes(payload, rate=16000, channels=1, bits=16, tag=1, extensible=False):
    align = channels * ((bits + 7) // 8)
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = (
            struct.pack(
                "<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22, bits, 0
            )
            + guid
        )
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 5) + b"hello" + b"\x00"  # odd chunk, padded
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture
def ramp():
    return np.array([0, 1, -1, 1000, -1000, 32767, -32768, 12345], np.int16)


def test_16bit_round_trip(tmp_path, ramp):
    p = tmp_path / "a.wav"
    write_wav(p, ramp)
    x, rate = read_wav(p)
    assert rate == 16000 and x.dtype == np.int16
    np.testing.assert_array_equal(x, ramp)


def test_8_24_32_bit_and_float_are_converted(tmp_path, ramp):
    r32 = ramp.astype(np.int32)
    cases = {
        "u8": (((r32 >> 8) + 128).astype(np.uint8).tobytes(), 8, 1, (r32 >> 8) << 8),
        "s24": (
            b"".join(int(v * 256 + 0x7F).to_bytes(3, "little", signed=True) for v in r32),
            24,
            1,
            r32,
        ),
        "s32": ((r32.astype(np.int64) << 16).astype("<i4").tobytes(), 32, 1, r32),
        "f32": ((r32 / 32768.0).astype("<f4").tobytes(), 32, 3, r32),
        "f64": ((r32 / 32768.0).astype("<f8").tobytes(), 64, 3, r32),
    }
    for name, (payload, bits, tag, want) in cases.items():
        for ext in (False, True):
            p = tmp_path / f"{name}{ext}.wav"
            p.write_bytes(wav_bytes(payload, bits=bits, tag=tag, extensible=ext))
            x, rate = read_wav(p)
            np.testing.assert_array_equal(x, want.astype(np.int16), err_msg=f"{name} ext={ext}")


def test_float_beyond_full_scale_is_clipped(tmp_path):
    p = tmp_path / "f.wav"
    p.write_bytes(wav_bytes(np.array([2.0, -2.0, 0.5], "<f4").tobytes(), bits=32, tag=3))
    x, _ = read_wav(p)
    assert x.tolist() == [32767, -32768, 16384]


def test_stereo_is_mixed_with_a_notice_or_refused(tmp_path, capsys):
    st = np.array([[100, 300], [-5, -6], [32767, 32767]], "<i2")
    p = tmp_path / "st.wav"
    p.write_bytes(wav_bytes(st.tobytes(), channels=2))
    x, _ = read_wav(p)
    assert x.tolist() == [200, -5, 32767]
    assert "2 channels mixed down" in capsys.readouterr().err
    with pytest.raises(AudioError, match="2 channels"):
        read_wav(p, channels="refuse")
    kept, _ = read_wav(p, channels="keep")
    assert kept.shape == (3, 2)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_to_16k(tmp_path, capsys, rate):
    t = np.arange(rate) / rate
    p = tmp_path / f"r{rate}.wav"
    write_wav(p, (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16), rate=rate)
    y = load_16k(p)
    assert f"{rate} Hz resampled to 16000 Hz" in capsys.readouterr().err
    assert len(y) == 16000
    ref = 10000 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    err = (y - ref)[300:-300]
    assert np.sqrt(np.mean(err**2)) < 10  # -60 dB re the tone


def test_audio_too_short_for_a_frame_is_named(tmp_path, capsys):
    """An empty (or shorter than 30 ms) recording is read, with a notice: a listener on it
    hears nothing, and says why instead of printing nothing at all."""
    from voicenode_tools.reference import params

    assert params.WINDOW == 480  # the front end's first frame: 30 ms
    for n in (0, 479, 480):
        p = tmp_path / f"n{n}.wav"
        write_wav(p, np.zeros(n, np.int16))
        assert len(load_16k(p)) == n
        err = capsys.readouterr().err
        assert ("nothing to hear" in err) == (n < 480), (n, err)


def test_resampling_removes_what_does_not_fit_below_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    x = (10000 * np.sin(2 * np.pi * 11000 * t)).astype(np.int16)  # above 8 kHz
    y = resample(x, rate, 16000)
    assert np.abs(y[300:-300]).max() < 100


def test_16k_file_is_not_touched(tmp_path, capsys, ramp):
    p = tmp_path / "a.wav"
    x = np.tile(ramp, 60)  # 480 samples: one frame, so no notice of too little audio either
    write_wav(p, x)
    np.testing.assert_array_equal(load_16k(p), x)
    assert capsys.readouterr().err == ""


def test_bad_files_are_refused_clearly(tmp_path):
    cases = {
        "text.wav": (b"hello, I am not audio at all", "not a WAV file"),
        "empty.wav": (b"", "not a WAV file"),
        "nofmt.wav": (b"RIFF\x0c\x00\x00\x00WAVEdata\x00\x00\x00\x00", "no fmt chunk"),
        "nodata.wav": (wav_bytes(b"")[:-8], "no data chunk"),
        "alaw.wav": (wav_bytes(b"\x00\x00", bits=8, tag=6), "unsupported WAV encoding"),
        "rifx.wav": (b"RIFX" + wav_bytes(b"")[4:], "big-endian"),
    }
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(AudioError, match=msg):
            read_wav(p)
    with pytest.raises(AudioError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_truncated_data_is_used_with_a_notice(tmp_path, capsys):
    data = wav_bytes(np.arange(100, dtype="<i2").tobytes())[:-51]
    p = tmp_path / "cut.wav"
    p.write_bytes(data)
    x, _ = read_wav(p)
    assert len(x) == 74 and x[73] == 73
    assert "truncated" in capsys.readouterr().err
