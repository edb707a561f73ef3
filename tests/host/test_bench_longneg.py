"""Long negatives for FRR at 0.1 FA/h: counting false accepts, choosing the cutoff again."""

import json

import numpy as np
import pytest

from voicenode_tools.bench import longneg
from voicenode_tools.bench import wakeword as wb

RATE = wb.RATE


def _entry(hours, rows):
    """A bench.wakeword engine entry: (setting, fa on its negatives, FRR) strict to lenient."""
    return {
        "negative_hours": hours,
        "curve": [
            {"setting": s, "fa": fa, "frr": {"val_pos_snr5": f},
             "frr_mean": {"val_pos": f, "validation": f}}
            for s, fa, f in rows
        ],
    }  # fmt: skip


def test_false_accepts_count_every_detection_with_the_cool_off():
    pos = np.arange(0, 10 * RATE, 480)  # 10 s of 30 ms steps
    s = np.zeros(len(pos))
    s[100:103] = 0.97  # one burst: one false accept (cool-off 1.5 s)
    s[200] = 0.99  # 3 s later: another
    per_track = longneg.false_accepts_per_track(
        [(pos, s), (pos, np.zeros(len(pos)))], [0.99, 0.97, 0.5]
    )
    assert per_track.sum(axis=1).tolist() == [1, 2, 2]  # per cutoff
    assert per_track[:, 1].tolist() == [0, 0, 0]  # all on the first track


def test_cutoff_is_chosen_again_on_all_the_negatives():
    # 1.2 h of validation negatives: every budget below 0.83 FA/h allows no false accept, so
    # the loosest cutoff without one (0.9) serves 0.1 and 0.5 FA/h alike.
    entry = _entry(1.2, [(0.99, 0, 0.40), (0.95, 0, 0.30), (0.9, 0, 0.20), (0.8, 1, 0.10)])
    # 10 h more: 11.2 h allow 1 false accept at 0.1 FA/h and 5 at 0.5 FA/h.
    long_fa = {0.99: 0, 0.95: 1, 0.9: 6, 0.8: 9}
    out = longneg.combine(entry, long_fa, 10.0)
    assert out["hours"] == pytest.approx(11.2)
    t01, t05 = out["targets"]["0.1"], out["targets"]["0.5"]
    assert (t01["setting"], t01["allowed"], t01["fa"], t01["long_fa"]) == (0.95, 1, 1, 1)
    assert t01["frr"]["val_pos"] == 0.30
    assert (t05["setting"], t05["allowed"], t05["val_fa"], t05["long_fa"]) == (0.95, 5, 0, 1)
    # 2 FA/h allows 22: the loosest setting, 10 false accepts in all.
    assert out["targets"]["2.0"]["setting"] == 0.8 and out["targets"]["2.0"]["fa"] == 10
    md = longneg.table({"phrases": {"alexa": {"ours": out}}})
    assert "| alexa | ours | 0.1 FA/h (<= 1 in 11.20 h) | 0.95 | 0 + 1 | 30.0 % | - | - |" in md
    # the choice figure on all the negatives: every budget (0.30, 0.30, 0.10, 0.10)
    assert out["choice"] == 0.2 and "alexa ours 20.0 %" in md


def test_no_setting_within_budget_is_reported_as_none():
    out = longneg.combine(_entry(1.0, [(0.99, 0, 0.5)]), {0.99: 3}, 10.0)
    assert out["targets"]["0.1"] is None and out["targets"]["0.5"]["setting"] == 0.99
    assert "| 0.1 FA/h | none |" in longneg.table({"phrases": {"x": {"ours": out}}})


def test_a_curve_setting_without_a_long_count_is_an_error():
    with pytest.raises(ValueError, match="0.5"):
        longneg.combine(_entry(1.0, [(0.5, 0, 0.1)]), {0.9: 0}, 1.0)


def test_the_text_never_holds_a_phrase():
    s = longneg.sentences(["hey jarvis", "alexa"])
    assert len(s) > 100
    assert not any("alexa" in x.lower() or "hey jarvis" in x.lower() for x in s)


class _Engine:
    """An engine whose scores are a function of the audio; counts the tracks it scored."""

    def __init__(self, name, model):
        self.name, self.info, self.calls = name, {"model": model}, 0

    def scores(self, audio):
        self.calls += 1
        pos = np.arange(0, len(audio), 480)
        return pos, (audio[pos] % 100) / 100.0 + (self.info["model"] == "b")


def _audio(monkeypatch):
    """Patch the long negatives to three short tracks; return the counter of audio made."""
    made = []

    def pieces(phrases, seed, hours, log=lambda *_: None):
        made.append(1)
        rng = np.random.default_rng(seed)
        yield [(rng.integers(0, 1000, n).astype(np.int16), []) for n in (4800, 9600)]
        yield [(rng.integers(0, 1000, 2400).astype(np.int16), [])]

    monkeypatch.setattr(longneg, "pieces", pieces)
    monkeypatch.setattr(longneg, "audio_key", lambda phrases, seed, hours: f"k{seed}")
    return made


def test_each_engine_is_cached_alone_so_a_new_model_rescores_only_itself(tmp_path, monkeypatch):
    made = _audio(monkeypatch)
    a, b = _Engine("ours", "a"), _Engine("microwakeword", "m")
    first = longneg.score_all({"ours:x": a, "mww:x": b}, ["x"], 1, 1.0, tmp_path)
    assert made == [1] and a.calls == b.calls == 3
    assert list(first["lengths"]) == [4800, 9600, 2400]
    # Another model of ours: the audio is made again, only the new model is scored.
    a2, b2 = _Engine("ours", "b"), _Engine("microwakeword", "m")
    second = longneg.score_all({"ours:x": a2, "mww:x": b2}, ["x"], 1, 1.0, tmp_path)
    assert made == [1, 1] and a2.calls == 3 and b2.calls == 0
    for (p1, s1), (p2, s2) in zip(first["scores"]["mww:x"], second["scores"]["mww:x"], strict=True):
        assert np.array_equal(p1, p2) and np.array_equal(s1, s2)
    assert not np.array_equal(first["scores"]["ours:x"][0][1], second["scores"]["ours:x"][0][1])
    # Both models and the peer cached now: nothing is made or scored.
    a3 = _Engine("ours", "a")
    third = longneg.score_all({"ours:x": a3}, ["x"], 1, 1.0, tmp_path)
    assert made == [1, 1] and a3.calls == 0
    assert np.array_equal(third["scores"]["ours:x"][1][1], first["scores"]["ours:x"][1][1])
    # Other audio (another seed) is not taken from the cache.
    longneg.score_all({"ours:x": a3}, ["x"], 2, 1.0, tmp_path)
    assert made == [1, 1, 1] and a3.calls == 3


def test_the_one_file_of_all_engines_written_before_is_still_read(tmp_path, monkeypatch):
    made = _audio(monkeypatch)
    e = _Engine("microwakeword", "m")
    tracks = [e.scores(np.arange(n, dtype=np.int16)) for n in (960, 1920)]
    label = "microwakeword:x"
    np.savez(
        tmp_path / "longneg_k1.npz",
        meta=json.dumps({"engines": {label: longneg.engine_key(e)}, "cpu": {label: 2.5}}),
        lengths=np.array([960, 1920]),
        **{f"{label}_n": np.array([len(p) for p, _ in tracks]),
           f"{label}_pos": np.concatenate([p for p, _ in tracks]),
           f"{label}_s": np.concatenate([s for _, s in tracks])},
    )  # fmt: skip
    e.calls = 0
    out = longneg.score_all({label: e}, ["x"], 1, 1.0, tmp_path)
    assert made == [] and e.calls == 0 and out["cpu"][label] == 2.5
    assert np.array_equal(out["scores"][label][1][1], tracks[1][1])
    # Copied to the engine's own file, which serves from then on.
    (tmp_path / "longneg_k1.npz").unlink()
    assert longneg.score_all({label: e}, ["x"], 1, 1.0, tmp_path)["cpu"][label] == 2.5
    assert made == []


def test_intervals_take_the_long_negatives_beside_the_validation_ones():
    """`longneg.resample`: the saved outcomes of a bench run with the long negatives' false
    accepts track by track; every track and clip drawn once gives `combine`'s own figure."""
    from voicenode_tools.bench import intervals

    rng = np.random.default_rng(2)
    settings = [0.9, 0.8, 0.7]
    hits = np.array([rng.random(200) < h for h in (0.6, 0.75, 0.9)])
    outcome = {"neg_fa": np.array([[0] * 20, [0] * 19 + [1], [1] * 20]),
               "pos_hit": {"val_pos_snr10": hits}}  # fmt: skip
    val_hours = np.full(20, 0.06)  # 1.2 h
    long_fa = np.array([[0] * 50, [0] * 49 + [1], [2] * 50])  # 10 h in 50 tracks
    long_hours = np.full(50, 0.2)
    saved = ({"ours": outcome}, val_hours, {"ours": settings})
    iv = longneg.resample(saved, {"ours": long_fa}, {"ours": settings}, long_hours, 200)
    assert set(iv["interval"]) == {"ours"}
    lo, hi = iv["interval"]["ours"]["0.1"]["val_pos"]
    # 11.2 h allow one false accept at 0.1 FA/h: the middle setting (two in all) only when a
    # resample draws one of its two false-accepting tracks at most once
    entry = {"negative_hours": 1.2, "curve": [
        {"setting": st, "fa": int(outcome["neg_fa"][i].sum()),
         "frr": {"val_pos_snr10": round(1 - hits[i].mean(), 4)},
         "frr_mean": {"val_pos": round(1 - hits[i].mean(), 4)}}
        for i, st in enumerate(settings)]}  # fmt: skip
    long_total = dict(zip(settings, long_fa.sum(axis=1).tolist(), strict=True))
    c = longneg.combine(entry, long_total, 10.0)
    hours = np.concatenate([val_hours, long_hours])
    both = {"neg_fa": np.concatenate([outcome["neg_fa"], long_fa], axis=1),
            "pos_hit": outcome["pos_hit"]}  # fmt: skip
    once = intervals.frr_at(both, np.ones((1, 70)), np.array([hours.sum()]),
                            {"val_pos_snr10": np.ones((1, 200))}, 0.1)  # fmt: skip
    assert once["val_pos"][0] == pytest.approx(c["targets"]["0.1"]["frr"]["val_pos"], abs=1e-4)
    assert lo <= once["val_pos"][0] <= hi
    # outcomes of another curve than the result's are refused
    with pytest.raises(ValueError, match="another curve"):
        longneg.resample(saved, {"ours": long_fa[:2]}, {"ours": settings[:2]}, long_hours, 10)
    with pytest.raises(ValueError, match="another curve"):  # same length, other settings
        longneg.resample(saved, {"ours": long_fa}, {"ours": [0.9, 0.8, 0.6]}, long_hours, 10)
    assert longneg.resample(saved, {"peer": long_fa}, {"peer": settings}, long_hours, 10) is None


def test_two_phrases_of_one_peer_are_cached_apart(monkeypatch):
    """A peer's engines for two phrases score differently, so their long-negative scores
    must not share a cache file (they did until 28 Nov: microWakeWord's hey jarvis and alexa
    had the same key, and the second overwrote the first). The peer packages are the bench
    extra, not the test one: stand-ins of their modules let the engines be made."""
    import sys
    import types

    loaded = types.SimpleNamespace(from_builtin=lambda model: model)
    for mod, names in (("pymicro_wakeword", ("MicroWakeWord", "MicroWakeWordFeatures")),
                       ("pyopen_wakeword", ("OpenWakeWord", "OpenWakeWordFeatures"))):  # fmt: skip
        fake = types.ModuleType(mod)
        fake.Model = str  # type: ignore[attr-defined]
        for n in names:
            setattr(fake, n, loaded)
        monkeypatch.setitem(sys.modules, mod, fake)
    for peer in ("microwakeword", "openwakeword"):
        a, b = wb.engine(peer, "hey jarvis"), wb.engine(peer, "alexa")
        assert longneg.engine_key(a) != longneg.engine_key(b), peer
        assert wb.engine_info(a)["model"] == "hey_jarvis" and "package" in wb.engine_info(a)
