"""The wake-word benchmark's own machinery: FRR at a false-accept budget, the DET plot, the
reserved evaluation voices (and that training never uses them)."""

import json

import numpy as np
import pytest

from voicenode_tools.bench import evalvoices
from voicenode_tools.bench import wakeword as wb
from voicenode_tools.train import synth

RATE = wb.RATE


# ---- FRR at a false-accept budget ------------------------------------------------------------


def _row(setting, fa, frr):
    return {"setting": setting, "fa": fa, "frr": {"x_snr5": frr}, "frr_mean": {"validation": frr}}


def test_budget_is_whole_false_accepts():
    # 1.2 h of negatives: 0.1 and 0.5 FA/h both allow none, 2 FA/h two, 5 FA/h six.
    assert [wb.max_false_accepts(t, 1.222) for t in wb.TARGETS] == [0, 0, 2, 6]
    assert wb.max_false_accepts(0.5, 2.0) == 1
    assert wb.max_false_accepts(0.1, 9.99) == 0  # 0.999 FA is still no false accept allowed


def test_operating_point_takes_the_loosest_setting_within_budget():
    curve = [_row(0.9, 0, 0.5), _row(0.8, 0, 0.4), _row(0.7, 1, 0.3), _row(0.6, 3, 0.2)]
    assert wb.operating_point(curve, 1.2, 0.1)["setting"] == 0.8
    assert wb.operating_point(curve, 1.2, 0.5)["setting"] == 0.8
    assert wb.operating_point(curve, 1.2, 2.0)["setting"] == 0.7
    assert wb.operating_point(curve, 1.2, 5.0)["setting"] == 0.6
    assert wb.operating_point(curve, 2.0, 0.5)["setting"] == 0.7  # 2 h: one FA allowed
    assert wb.operating_point([_row(0.9, 2, 0.5)], 1.2, 0.5) is None


def _tone(n, amp, f=440.0):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / RATE)).astype(np.int16)


def _track(parts):
    """Tracks of quiet noise with loud tones; returns (audio, events)."""
    rng = np.random.default_rng(len(parts))
    x = (rng.normal(0, 30, RATE)).astype(np.int16)
    audio, events, pos = [x], [], len(x)
    for amp, kind in parts:
        t = _tone(RATE // 2, amp)
        audio += [t, np.zeros(2 * RATE, np.int16)]
        events.append((pos, pos + len(t), kind))
        pos += len(t) + 2 * RATE
    return np.concatenate(audio), events


class _LoudnessEngine:
    """A toy detector: its score is the loudness of each 10 ms step (0..1)."""

    name = "loudness"

    def scores(self, audio):
        steps = len(audio) // 160
        a = np.abs(audio[: steps * 160].astype(np.float64)).reshape(steps, 160).max(axis=1)
        return np.arange(1, steps + 1) * 160, a / 32768.0


def test_evaluate_engine_counts_false_accepts_and_rejects():
    # Positives at amplitudes 0.2, 0.4, 0.6, 0.8 of full scale; negatives carry one tone
    # at 0.5 and one at 0.3: no false accept above 0.5, one between 0.3 and 0.5.
    pos = [_track([(6553, "pos"), (13107, "pos")]), _track([(19660, "pos"), (26214, "pos")])]
    neg = [_track([(16384, "speech")]), _track([(9830, "speech")])]
    sets = {"val_pos_snr10": pos, "ind_snr10": pos[:1], "negatives": neg, "ind_negatives": neg}
    r = wb.evaluate_engine(_LoudnessEngine(), sets, lambda *_: None)
    hours = wb.hours_of(neg)
    assert r["negative_hours"] == round(hours, 3)
    t = r["targets"]["0.5"]  # no false accept allowed: the cutoff must sit above 0.5
    assert t["fa"] == 0 and 0.5 < t["setting"] <= 0.6
    assert t["frr"]["val_pos_snr10"] == 0.5  # the 0.6 and 0.8 tones pass the cutoff
    assert t["frr"]["ind_snr10"] == 1.0
    assert t["ind_fa"] == 0
    # A budget allowing one false accept (in ~10 s, any rate above 360/h): cutoff in (0.3, 0.5].
    loose = wb.operating_point(r["curve"], hours, 1.0 / hours)
    assert loose["fa"] == 1 and 0.29 < loose["setting"] <= 0.4
    assert loose["frr"]["val_pos_snr10"] == 0.25
    assert loose["frr"]["ind_snr10"] == 0.5
    assert r["cpu_s_per_audio_hour"] > 0 and r["audio_hours_scored"] > 0


def test_piper_negatives_count_towards_the_budget_and_are_broken_out():
    """With "piper_negatives" the settings are chosen on both sets of negatives (their hours
    added up), and each row says how many of its false accepts were on piper's speech."""
    pos = [_track([(6553, "pos"), (13107, "pos")]), _track([(19660, "pos"), (26214, "pos")])]
    espeak = [_track([(9830, "speech")])]  # one false accept below 0.3
    piper = [_track([(16384, "speech")])]  # one below 0.5
    sets = {"val_pos_snr10": pos, "negatives": espeak, "piper_negatives": piper}
    r = wb.evaluate_engine(_LoudnessEngine(), sets, lambda *_: None)
    hours = wb.hours_of(espeak + piper)
    assert r["negative_hours"] == round(hours, 3)
    t = r["targets"]["0.5"]  # none allowed: above piper's tone, not just above espeak's
    assert t["fa"] == 0 and t["fa_piper"] == 0 and 0.5 < t["setting"] <= 0.6
    by_setting = {row["setting"]: row for row in r["curve"]}
    assert (by_setting[0.4]["fa"], by_setting[0.4]["fa_piper"]) == (1, 1)
    assert (by_setting[0.2]["fa"], by_setting[0.2]["fa_piper"]) == (2, 1)
    assert "0.5 FA/h: " in wb.table({"results": [r]}) and "0 on piper" in wb.table({"results": [r]})
    # Without them the rows stay as they were (no "fa_piper"), and espeak's tone decides.
    r = wb.evaluate_engine(_LoudnessEngine(), {"val_pos_snr10": pos, "negatives": espeak},
                           lambda *_: None)  # fmt: skip
    assert "fa_piper" not in r["curve"][0] and 0.29 < r["targets"]["0.5"]["setting"] <= 0.4


def test_piper_speech_is_repeatable_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path))
    a = wb.piper_speech("hey jarvis", 1, 0.05)
    assert sum(len(c) for c in a) >= 0.05 * 60 * RATE and all(c.dtype == np.int16 for c in a)
    (cached,) = (tmp_path / "eval").glob("piper_speech_*.npz")
    cached.unlink()
    b = wb.piper_speech("hey jarvis", 1, 0.05)  # made again: the same audio
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = wb.piper_speech("hey jarvis", 1, 0.05)  # from the cache
    assert all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


# ---- DET plot and table ----------------------------------------------------------------------


def _bench_json():
    pos = [_track([(6553, "pos"), (13107, "pos")]), _track([(19660, "pos"), (26214, "pos")])]
    neg = [_track([(16384, "speech")]), _track([(9830, "speech")])]
    sets = {"val_pos_snr10": pos, "ind_snr10": pos, "negatives": neg}
    results = []
    for name in ("alpha", "beta"):
        e = _LoudnessEngine()
        e.name = name
        results.append(wb.evaluate_engine(e, sets, lambda *_: None))
    results.append({"engine": "gamma", "error": "ImportError: not installed"})
    return {"phrase": "hey test", "results": results}


def test_det_plot_is_a_png_with_one_line_per_engine_and_set(tmp_path):
    out = json.loads(json.dumps(_bench_json()))  # exactly what the JSON file holds
    png = tmp_path / "det.png"
    labels = wb.plot_det(out, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert labels == [
        "alpha (validation)",
        "alpha (independent)",
        "beta (validation)",
        "beta (independent)",
    ]


def test_det_points_keep_the_best_frr_per_false_accept_rate():
    curve = [
        {"fa_per_hour": 0.0, "frr_mean": {"validation": 0.5}},
        {"fa_per_hour": 0.0, "frr_mean": {"validation": 0.4}},
        {"fa_per_hour": 2.0, "frr_mean": {"validation": 0.3}},
    ]
    assert wb.det_points(curve) == ([wb.ZERO_FA_X, 2.0], [0.4, 0.3])
    assert wb.det_points(curve, "ind") == ([], [])


def test_the_choice_figure_is_the_validation_groups_mean_over_the_budgets():
    """The rule the project chooses its models by (docs/WAKEWORD_BENCH.md), computed once."""
    g = {"val_pos": 0.3, "val_piper": 0.1, "ind": 0.9, "validation": 0.2}
    assert wb.choice_figure([g, {**g, "val_pos": 0.1}, {**g, "val_piper": 0.0}]) == 0.15
    assert wb.choice_figure([g, None, g]) is None  # a budget no setting meets
    assert wb.choice_figure([{"val_pos": 0.4, "ind": 0.9}]) == 0.4  # a run without piper
    # a bench run keeps it beside its targets and prints it under its table
    pos = [_track([(6553, "pos"), (13107, "pos")]), _track([(19660, "pos"), (26214, "pos")])]
    neg = [_track([(16384, "speech")]), _track([(9830, "speech")])]
    sets = {"val_pos_snr10": pos, "ind_snr10": pos[:1], "negatives": neg, "ind_negatives": neg}
    r = wb.evaluate_engine(_LoudnessEngine(), sets, lambda *_: None)
    want = [r["targets"][str(t)]["frr_val_pos"] for t in wb.CHOICE_TARGETS]
    assert r["choice"] == pytest.approx(sum(want) / 3, abs=1e-4)
    assert f"{r['engine']} {100 * r['choice']:.1f} %" in wb.table({"results": [r]})


def test_table_has_every_engine_and_budget():
    md = wb.table(_bench_json())
    for t in ("0.1", "0.5", "2", "5"):
        assert f"FRR @ {t} FA/h" in md
    assert "CPU s per audio hour" in md
    assert md.count("| alpha |") == 2  # validation espeak and independent rows
    assert "| gamma | not run: ImportError" in md


# ---- the reserved voices ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "voice",
    [
        evalvoices.EvalVoice("flite", "kal"),
        evalvoices.EvalVoice("flite", "slt", stretch=1.3, pitch=0.85),
        evalvoices.EvalVoice("festival", "kal_diphone", stretch=0.8, pitch=1.2),
        evalvoices.EvalVoice("festival", "cmu_us_slt_arctic_hts", stretch=1.3, warp=1.05),
    ],
    ids=lambda v: v.label(),
)
def test_reserved_voice_says_a_short_phrase(voice):
    pcm = evalvoices.say("hey jarvis", voice)
    assert pcm.dtype == np.int16
    assert 0.35 < len(pcm) / 16000 < 2.0  # two words, trimmed
    assert np.abs(pcm.astype(np.int32)).max() > 3000


def test_reserved_voice_speed_changes_the_length():
    slow = evalvoices.say("hey jarvis", evalvoices.EvalVoice("flite", "awb", stretch=1.3))
    fast = evalvoices.say("hey jarvis", evalvoices.EvalVoice("flite", "awb", stretch=0.8))
    assert len(slow) > 1.3 * len(fast)


def test_every_reserved_voice_is_installed():
    assert evalvoices.flite_voices() == list(evalvoices.FLITE_VOICES)
    assert evalvoices.festival_voices() == [n for n, _, _ in evalvoices.FESTIVAL_VOICES]
    vs = evalvoices.voices()
    assert len(vs) == 8 * len(evalvoices.STRETCHES) * len(evalvoices.PITCHES) * 2
    assert {v.synth for v in vs} == {"flite", "festival"}


def test_human_recordings_are_real_speech_of_some_length():
    rec = evalvoices.human_recordings()
    assert len(rec) >= 10
    seconds = sum(len(c) for c, _ in rec) / 16000
    assert 30 < seconds < 120
    assert all(np.abs(c.astype(np.int32)).max() > 1000 for c, _ in rec)


def test_reserved_voices_never_reach_training():
    reserved = set(synth.RESERVED_SYNTHESIZERS)
    assert {"flite", "festival", "human"} <= reserved
    assert {v.synth for v in evalvoices.voices()} <= reserved
    names = set(evalvoices.FLITE_VOICES) | {n for n, _, _ in evalvoices.FESTIVAL_VOICES}
    training_lists = set(synth.ESPEAK_ENGLISH) | set(synth.ESPEAK_FOREIGN)
    training_lists |= set(synth.ESPEAK_VARIANTS)
    assert not names & training_lists
    rng = np.random.default_rng(0)
    drawn = [synth.random_espeak_voice(rng, held_out=h) for h in (False, True, None) * 300]
    drawn += [synth.random_piper_voice(rng) for _ in range(100)]
    assert {v.synth for v in drawn} == {"espeak", "piper"}
    assert not {v.name for v in drawn} & names
    for s in ("flite", "festival", "human"):
        with pytest.raises(ValueError, match="reserved"):
            synth.say("hey jarvis", synth.Voice(s, "kal"))


def test_merge_replaces_the_engines_run_again_on_the_same_audio():
    audio = {"hours": {"negatives": 1.2}}
    base = {"phrase": "alexa", "seed": 1, "snrs": [20], "audio": audio}
    old = dict(base, results=[{"engine": "a", "x": 1}, {"engine": "b", "x": 1}])
    new = dict(base, results=[{"engine": "b", "x": 2}, {"engine": "c", "x": 2}])
    merged = wb.merge(old, new)
    assert [(r["engine"], r["x"]) for r in merged["results"]] == [("a", 1), ("b", 2), ("c", 2)]
    assert merged["merged"] == ["b", "c"]
    with pytest.raises(ValueError, match="audio differs"):
        wb.merge(old, dict(new, audio={"hours": {"negatives": 2.0}}))
    with pytest.raises(ValueError, match="phrase differs"):
        wb.merge(old, dict(new, phrase="hey jarvis"))


def test_pocketsphinx_listens_for_the_spoken_words_or_says_why_not():
    # (its own dictionary's words stand in for the bench extra's, which `make test` lacks)
    known = {"hey", "my", "croft", "okay", "jarvis", "alexa"}
    assert wb.pocketsphinx_keyphrase("hey mycroft", known) == ("hey my croft", {})
    assert wb.pocketsphinx_keyphrase("hey jarvis", known) == ("hey jarvis", {})
    said, extra = wb.pocketsphinx_keyphrase("okay nabu", known)
    assert said == "okay nabu" and extra == {"nabu": "N AA B UW"}
    with pytest.raises(RuntimeError, match="dictionary has no zorblax"):
        wb.pocketsphinx_keyphrase("hey zorblax", known)


class _Loud:
    """An engine whose score is the audio's loudness: hears every clip louder than a whisper."""

    def scores(self, audio):
        pos = np.arange(160, len(audio) + 1, 160)
        s = np.array([np.abs(audio[p - 160 : p].astype(np.int32)).max() / 32768 for p in pos])
        return pos, s


def test_missed_alone_counts_each_clip_per_voice():
    loud = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    quiet = np.zeros(8000, np.int16)  # scaled to the speech level: still nothing
    items = [(loud, "a"), (loud, "a"), (quiet, "b"), (loud, "b")]
    res = evalvoices.missed_alone(items, {"e": _Loud()}, {"e": 0.05}, np.random.default_rng(0))
    assert res == {"e": {"a": 0.0, "b": 0.5}}
    # faint noise alone (30 rms) never reaches a cutoff above it
    res = evalvoices.missed_alone(items, {"e": _Loud()}, {"e": 0.9}, np.random.default_rng(0))
    assert res == {"e": {"a": 1.0, "b": 1.0}}


def test_missed_alone_plays_each_clip_in_its_condition():
    loud = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    items = [(loud, "a"), (loud, "b")]
    seen = []

    def silence_b(audio, rng):  # a condition that takes the second clip away
        seen.append(len(audio))
        return audio * (0.0 if len(seen) == 2 else 1.0)

    rng = np.random.default_rng(0)
    res = evalvoices.missed_alone(items, {"e": _Loud()}, {"e": 0.05}, rng, condition=silence_b)
    assert res == {"e": {"a": 0.0, "b": 1.0}}
    assert seen == [8000 + 3 * 16000] * 2  # the clip with its 2 s before and 1 s after


def test_conditions_are_laid_as_the_tracks_lay_them():
    from voicenode_tools.bench import conditions as bc

    rate = 16000
    music = [np.sin(np.arange(5 * rate) / 7) * 5000]
    babble = [np.random.default_rng(1).normal(0, 2000, rate).astype(np.int16)]
    conds = bc.conditions(music, babble)
    assert list(conds) == [
        "clean", "room", "room RT60 0.3 s", "room RT60 0.9 s", "mic band", "quiet",
        "noise 20 dB", "noise 5 dB",
        "music 20 dB", "music 5 dB", "babble 20 dB", "babble 5 dB",
    ]  # fmt: skip
    speech = np.random.default_rng(2).normal(0, bc.SPEECH_RMS, 2 * rate)
    silence = np.zeros(2 * rate)
    for name, f in conds.items():
        out = f(speech.copy(), np.random.default_rng(3))
        assert out.shape == speech.shape, name
    assert np.array_equal(conds["clean"](speech, None), speech)
    room = conds["room"](speech, np.random.default_rng(3))
    assert abs(np.sqrt(np.mean(room**2)) / bc.SPEECH_RMS - 1) < 0.01  # a room keeps the level
    # a fixed RT60: a click's energy dies down 60 dB in about that time
    click = np.zeros(2 * rate)
    click[100] = 1.0
    for t in bc.RT60S:
        e = conds[f"room RT60 {t:g} s"](click, np.random.default_rng(6)) ** 2
        late = e[100 + int(0.05 * rate) :]
        tail = np.cumsum(late[::-1])[::-1]  # Schroeder's backward integration
        db = 10 * np.log10(tail[: int(t * rate * 0.5)] / tail[0] + 1e-30)
        assert -36 < db[-1] < -24, (t, db[-1])  # half the RT60 later: about -30 dB
    assert np.max(np.abs(conds["quiet"](speech, None))) == pytest.approx(32767 * 10**-1.5)
    for kind in ("noise", "music", "babble"):  # the background alone: N dB below the speech
        for snr in bc.SNRS:
            bed = conds[f"{kind} {snr} dB"](silence, np.random.default_rng(4))
            rms = np.sqrt(np.mean(bed**2))
            assert rms == pytest.approx(bc.SPEECH_RMS * 10 ** (-snr / 20), rel=0.01), kind
    # the band limit takes away what a microphone does not hear: a 20 Hz hum
    hum = np.sin(2 * np.pi * 20 * np.arange(2 * rate) / rate) * 3000
    assert np.sqrt(np.mean(conds["mic band"](hum, np.random.default_rng(5)) ** 2)) < 300


def test_conditions_count_each_group_and_can_tell_each_clip(monkeypatch):
    from voicenode_tools.bench import conditions as bc
    from voicenode_tools.train import data

    loud = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    silent = np.zeros(8000, np.int16)  # nothing to hear, in any condition but a loud bed
    clips = data.Clips(16000)
    for group, pcm, voice in [
        ("val_pos", loud, "espeak:en"), ("val_pos", silent, "espeak:de"),
        ("val_piper", silent, "piper:joe:s80"), ("music", loud, ""), ("val_speech", loud, ""),
    ]:  # fmt: skip
        clips.add(group, pcm, f"{voice}|hey jarvis")
    monkeypatch.setattr(data, "load_or_generate", lambda rec, rate: clips)
    monkeypatch.setattr(wb, "engine", lambda name, phrase, model=None: _Loud())
    res = bc.missed("hey jarvis", {"e": 0.05}, per_clip=True)
    assert res["clips"] == {"validation espeak": 2, "validation piper": 1}
    assert res["missed"]["clean"] == {"e": {"validation espeak": 0.5, "validation piper": 1.0}}
    assert [c["voice"] for c in res["per_clip"]] == ["espeak:en", "espeak:de", "piper:joe:s80"]
    assert [c["missed"]["clean"]["e"] for c in res["per_clip"]] == [False, True, True]
    assert set(res["per_clip"][0]["missed"]) == set(res["missed"])  # every condition
    assert "per_clip" not in bc.missed("hey jarvis", {"e": 0.05}, max_clips=1)


def test_conditions_table_has_a_column_per_engine_and_group():
    from voicenode_tools.bench import conditions as bc

    res = {
        "clips": {"validation espeak": 2, "validation piper": 2},
        "missed": {
            "clean": {"ours": {"validation espeak": 0.0, "validation piper": 0.5}},
            "room": {"ours": {"validation espeak": 0.5, "validation piper": 1.0}},
        },
    }
    lines = bc.table(res, {"ours": 0.71}).splitlines()
    assert (
        lines[0] == "| condition | ours @ 0.71: validation espeak | ours @ 0.71: validation piper |"
    )
    assert lines[2:] == ["| clean | 0.0 % | 50.0 % |", "| room | 50.0 % | 100.0 % |"]


def test_conditions_take_each_engines_setting_from_a_bench_result(tmp_path, capsys):
    from voicenode_tools import REPO_ROOT
    from voicenode_tools.bench import conditions as bc

    published = REPO_ROOT / "docs" / "wakeword_bench" / "hey_jarvis.json"
    got = bc.settings_from(published, 0.5, ["ours", "microwakeword"])
    assert got == {"ours": 0.71, "microwakeword": 0.75}  # the table's 0.5 FA/h settings
    assert bc.settings_from(published, 2, ["ours"]) == {"ours": 0.57}
    with pytest.raises(ValueError, match="no result for 'nope'"):
        bc.settings_from(published, 0.5, ["nope"])
    with pytest.raises(ValueError, match="no 0.3 FA/h setting"):
        bc.settings_from(published, 0.3, ["ours"])
    unmet = tmp_path / "unmet.json"
    unmet.write_text(json.dumps({"results": [{"engine": "ours", "targets": {"0.5": {}}}]}))
    with pytest.raises(ValueError, match="ours met no setting at 0.5 FA/h"):
        bc.settings_from(unmet, 0.5, ["ours"])
    for argv in ([], ["--settings", str(tmp_path / "missing.json")]):  # nothing is played
        with pytest.raises(SystemExit) as e:
            bc.main(argv)
        assert e.value.code == 2
    assert "missing.json" in capsys.readouterr().err


def test_heldout_people_are_the_held_out_mbrola_voices_only():
    from voicenode_tools.bench import heldout_people
    from voicenode_tools.train import synth

    vs = heldout_people.voices()
    assert len(vs) == 5 * 3 * 3 * 2
    assert {v.name for v in vs} == set(synth.MBROLA_HELD_OUT)
    assert all(v.held_out() for v in vs)


def test_missed_table_puts_the_overall_row_last():
    res = {
        "ours": {"all": 0.5, "b": 1.0, "a": 0.0},
        "microwakeword": {"all": 0.25, "b": 0.5, "a": 0.0},
    }
    cutoffs = evalvoices.parse_cutoffs(["ours=0.97", "microwakeword=0.75"])
    assert cutoffs == {"ours": 0.97, "microwakeword": 0.75}
    lines = evalvoices.missed_table(res, cutoffs, digits=1).splitlines()
    assert lines[0] == "| voice | ours @ 0.97 | microwakeword @ 0.75 |"
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| a", "| b", "| all"]
    assert lines[-1] == "| all | 50.0 % | 25.0 % |"


def test_ours_hears_the_model_it_is_given(tmp_path):
    from voicenode_tools import REPO_ROOT

    shipped = wb.engine("ours", "hey jarvis")
    assert shipped.info["model"] == str(REPO_ROOT / "models" / "hey_jarvis.vnm")
    other = REPO_ROOT / "models" / "alexa.vnm"
    ours = wb.engine("ours", "hey jarvis", other)  # a model chosen by --model
    assert ours.info["model"] == str(other) and ours.info["crc32"] != shipped.info["crc32"]
    # the choice stays with that engine: the next one made without it is the shipped model
    assert wb.engine("ours", "hey jarvis").info["model"] == shipped.info["model"]
    with pytest.raises(KeyError):
        wb.engine("no such engine", "hey jarvis")


# ---- how sure the figures are (bench.intervals) ------------------------------------------------


def _tone_sets():
    pos = [_track([(6553, "pos"), (13107, "pos")]), _track([(19660, "pos"), (26214, "pos")])]
    neg = [_track([(16384, "speech")]), _track([(9830, "speech")]), _track([(3000, "speech")])]
    return {"val_pos_snr10": pos, "ind_snr10": pos[:1], "negatives": neg}


def test_outcomes_are_the_curve_clip_by_clip_and_track_by_track():
    sets = _tone_sets()
    got = {}
    r = wb.evaluate_engine(_LoudnessEngine(), sets, lambda *_: None, got)
    assert got["neg_fa"].shape == (len(r["curve"]), 3)
    assert got["pos_hit"]["val_pos_snr10"].shape == (len(r["curve"]), 4)
    for i, row in enumerate(r["curve"]):
        assert got["neg_fa"][i].sum() == row["fa"]
        for k, hit in got["pos_hit"].items():
            assert round(1 - hit[i].mean(), 4) == row["frr"][k]


def test_every_track_and_clip_drawn_once_gives_the_benchmarks_own_figure():
    from voicenode_tools.bench import intervals

    sets = _tone_sets()
    got = {}
    r = wb.evaluate_engine(_LoudnessEngine(), sets, lambda *_: None, got)
    hours = [len(a) / RATE / 3600 for a, _ in sets["negatives"]]
    once = {k: np.ones((1, h.shape[1])) for k, h in got["pos_hit"].items()}
    for t in (0.5, 500.0, 1e9):  # none, one and every false accept allowed in ~30 s
        frr = intervals.frr_at(got, np.ones((1, 3)), np.array([sum(hours)]), once, t)
        p = r["targets"][str(t)] if str(t) in r["targets"] else None
        want = wb.operating_point(r["curve"], sum(hours), t)
        assert frr["val_pos"][0] == pytest.approx(want["frr_mean"]["val_pos"])
        assert frr["ind"][0] == pytest.approx(want["frr_mean"]["ind"])
        assert p is None or p["frr"]["val_pos_snr10"] == pytest.approx(frr["val_pos"][0])


def _outcome(hit_rate, n_pos, fa_rows, rng):
    """A fake engine: settings strict to lenient, each with its false accepts per track and
    its positives detected at a rate."""
    hits = np.array([rng.random(n_pos) < h for h in hit_rate])
    return {"neg_fa": np.array(fa_rows), "pos_hit": {"val_pos_snr10": hits, "ind_snr10": hits}}


def test_intervals_hold_the_figure_and_compare_engines_on_the_same_draws():
    from voicenode_tools.bench import intervals

    rng = np.random.default_rng(3)
    tracks_ = 40
    fa = [[0] * tracks_, [0] * 39 + [1], [0] * 35 + [1] * 5]  # strict, middle, lenient
    good = _outcome([0.7, 0.8, 0.95], 300, fa, rng)
    weak = _outcome([0.3, 0.4, 0.6], 300, fa, rng)
    hours = [0.03] * tracks_  # 1.2 h
    iv = intervals.bootstrap({"ours": good, "peer": weak}, hours, (0.5, 5.0), 400, seed=1)
    assert iv == intervals.bootstrap({"ours": good, "peer": weak}, hours, (0.5, 5.0), 400, seed=1)
    lo, hi = iv["interval"]["ours"]["0.5"]["val_pos"]
    # 0.5 FA/h allows none in 1.2 h: the strict setting, unless a resample leaves the middle
    # setting's one false-accepting track out (about a third of them: (1 - 1/40)^40)
    assert lo <= 1 - good["pos_hit"]["val_pos_snr10"][0].mean() <= hi
    assert lo < hi
    assert iv["ours_fewer"]["peer"]["0.5"]["val_pos"] == 1.0  # far ahead on every draw
    assert iv["ours_fewer"]["peer"]["5.0"]["ind"] == 1.0
    # an engine against itself is a tie on every draw
    same = intervals.bootstrap({"ours": good, "twin": good}, hours, (0.5,), 100)
    assert same["ours_fewer"]["twin"]["0.5"]["val_pos"] == 0.0
    assert same["tie"]["twin"]["0.5"]["val_pos"] == 1.0
    text = intervals.table(iv)
    assert "| ours | validation espeak" in text and "misses fewer than peer" in text


def test_a_budget_no_setting_meets_misses_everything():
    from voicenode_tools.bench import intervals

    rng = np.random.default_rng(0)
    noisy = _outcome([0.9], 50, [[1] * 10], rng)  # a false accept on every track
    iv = intervals.bootstrap({"ours": noisy}, [0.1] * 10, (0.5,), 50)
    assert iv["interval"]["ours"]["0.5"]["val_pos"] == [1.0, 1.0]


def test_a_run_reports_its_intervals_beside_its_table(tmp_path, monkeypatch, capsys):
    class Named(_LoudnessEngine):
        def __init__(self, name):
            self.name = name

    monkeypatch.setattr(wb, "make_audio", lambda *a, **k: (_tone_sets(), {}))
    monkeypatch.setattr(wb, "engine", lambda name, phrase, model=None: Named(name))
    out = tmp_path / "r.json"
    assert wb.main(["--engines", "ours,peer", "--resamples", "50", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    iv = res["intervals"]
    assert iv["resamples"] == 50 and set(iv["interval"]) == {"ours", "peer"}
    assert iv["tie"]["peer"]["0.5"]["val_pos"] == 1.0  # the same detector: a tie every time
    md = out.with_suffix(".md").read_text()
    assert "90 % intervals of the FRR" in md and "misses fewer than peer" in md
    # the clip-by-clip outcomes are kept beside it, for bench longneg
    from voicenode_tools.bench import intervals

    saved, hours, settings = intervals.load_outcomes(wb.outcomes_path(out))
    assert set(saved) == {"ours", "peer"} and len(hours) == 3
    assert settings["ours"] == [row["setting"] for row in res["results"][0]["curve"]]
    assert saved["ours"]["neg_fa"].shape == (len(settings["ours"]), 3)
    assert set(saved["ours"]["pos_hit"]) == {"val_pos_snr10", "ind_snr10"}
    capsys.readouterr()
    assert wb.main(["--engines", "ours", "--resamples", "0", "--out", str(out)]) == 0
    assert "intervals" not in json.loads(out.read_text())
    assert not wb.outcomes_path(out).exists()  # the older run's outcomes are gone with it
