"""The command benchmark's scoring (the benchmark itself runs from the CLI: its figures are
in docs/COMMANDS.md)."""

import numpy as np
import pytest

from voicenode_tools.bench import commands as bc
from voicenode_tools.train import synth


def test_bench_scores_every_intent_and_tabulates_them():
    """`bench.commands.metrics`: the overall shares and, per intent said, the share right and
    the share rejected; `intent_table` lays them out per voice set and SNR."""
    truth = [("a", {}), ("a", {}), ("b", {"n": 1}), ("unknown", {}), ("unknown", {})]
    got = [{"intent": "a", "slots": {}}, {"intent": "unknown", "slots": {}},
           {"intent": "a", "slots": {}}, {"intent": "b", "slots": {}},
           {"intent": "unknown", "slots": {}}]  # fmt: skip
    m = bc.metrics(got, truth)
    assert (m["intent_accuracy"], m["unknown_accepted"], m["command_rejected"]) == (
        round(1 / 3, 4), 0.5, round(1 / 3, 4))  # fmt: skip
    assert m["per_intent"] == {"a": {"n": 2, "right": 0.5, "rejected": 0.5},
                               "b": {"n": 1, "right": 0.0, "rejected": 0.0}}  # fmt: skip
    res = {"sets": {"validation": {"snr": {"20": {"ours": m}}}}}
    t = bc.intent_table(res).splitlines()
    assert t[0] == "| intent (ours: right / rejected) | validation 20 dB |"
    assert t[2:] == ["| a | 50 / 50 % |", "| b | 0 / 0 % |"]


def test_the_rates_carry_their_95_percent_intervals():
    """Intent accuracy and unknown speech accepted with their Wilson intervals: with 100
    unknown utterances one accepted is anywhere from 0.2 to 5.4 %, so a 2 % target needs
    more of them to be told apart."""
    from voicenode_tools.bench.intervals import wilson

    assert wilson(1, 100) == [0.0018, 0.0545]
    assert wilson(0, 100) == [0.0, 0.037] and wilson(100, 100) == [0.963, 1.0]
    assert wilson(50, 100) == [0.4038, 0.5962] and wilson(0, 0) == [0.0, 1.0]
    truth = [("a", {})] * 4 + [("unknown", {})] * 100
    got = [{"intent": "a", "slots": {}}] * 3 + [{"intent": "unknown", "slots": {}}] * 100
    got.append({"intent": "a", "slots": {}})  # one unknown utterance taken for a command
    m = bc.metrics(got, truth)
    assert m["intent_accuracy_95"] == wilson(3, 4) and m["unknown_accepted_95"] == [0.0018, 0.0545]
    row = bc.table({"sets": {"validation": {"snr": {"20": {"ours": m}}}}}).splitlines()[2]
    assert "| 75.0 % (30.1-95.4) |" in row and "| 1.0 % (0.2-5.5) |" in row


def test_the_json_gets_its_tables_beside_it(tmp_path, monkeypatch, capsys):
    """`bench commands --json F.json` also writes F.md: the tables it prints (the figures a
    closing note or docs/COMMANDS.md quotes, kept with the run that made them)."""
    import json

    truth = [("a", {}), ("unknown", {})]
    m = bc.metrics([{"intent": "a", "slots": {}}, {"intent": "a", "slots": {}}], truth)
    res = {"sets": {"validation": {"snr": {"20": {"ours": m}}}}}
    monkeypatch.setattr(bc, "firmware_cost", lambda *a, **k: {"heap_bytes": 1})
    monkeypatch.setattr(bc, "run_bench", lambda *a, **k: json.loads(json.dumps(res)))
    out = tmp_path / "r.json"
    assert bc.main(["--no-pocketsphinx", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    md = out.with_suffix(".md").read_text()
    assert md == printed
    assert "| validation | 20 dB | ours | 100.0 % (20.6-100.0) |" in md
    assert "| a | 100 / 0 % |" in md and '"heap_bytes": 1' in md
    assert json.loads(out.read_text())["sets"]["validation"]["snr"]["20"]["ours"] == m


def test_latency_counts_from_the_end_of_the_speech():
    """`bench.commands.latency`: from the frame in which the speaker stops to the frame of
    the decision (not from where the end-pointer thought the speech ended), over the
    utterances it heard; `table` shows it."""
    got = [{"intent": "a", "frames": 130}, {"intent": "unknown", "frames": 300},
           {"intent": "unknown", "reason": "silence", "frames": 40},
           {"intent": "b", "frames": 95}]  # fmt: skip
    lat = bc.latency(got, [100, 120, 10, 65])
    assert lat == {"decision_ms_after_speech": 300.0, "decision_ms_after_speech_p90": 1500.0,
                   "decision_ms_after_speech_max": 1800.0,
                   "decided_within_500ms": round(2 / 3, 4)}  # fmt: skip
    assert bc.latency(got[2:3], [10]) == {}
    m = dict(bc.metrics(got, [("a", {}), ("unknown", {}), ("unknown", {}), ("b", {})]), **lat)
    m["host_ms_per_utterance"] = 1.5
    t = bc.table({"sets": {"validation": {"snr": {"10": {"ours": m}}}}}).splitlines()
    assert t[2].endswith("| 1.5 | 300 / 1500 / 1800 | 66.7 % |")


def test_best_path_before_rejection_per_voice():
    """`bench.commands.before_rejection`: how often the best path was right, kept or not,
    overall and per voice (unknown speech does not count); `table` shows it."""
    truth = [("a", {}), ("a", {}), ("b", {}), ("unknown", {})]
    got = [{"intent": "a", "best": "a"}, {"intent": "unknown", "best": "a"},
           {"intent": "unknown", "best": "a"}, {"intent": "b", "best": "b"}]  # fmt: skip
    r = bc.before_rejection(got, truth, ["v1", "v2", "v2", "v1"])
    assert r == {"best_path_accuracy": round(2 / 3, 4),
                 "per_voice": {"v1": {"n": 1, "best_path": 1.0, "right": 1.0},
                               "v2": {"n": 2, "best_path": 0.5, "right": 0.0}}}  # fmt: skip
    m = dict(bc.metrics(got, truth), **r)
    t = bc.table({"sets": {"independent": {"snr": {"20": {"ours": m}}}}}).splitlines()
    assert "| best path (before rejection) |" in t[0]
    assert t[2].startswith("| independent | 20 dB | ours | 33.3 % (6.2-79.2) | 66.7 % |")


def test_people_set_is_said_by_the_held_out_mbrola_voices_only(monkeypatch):
    monkeypatch.setattr(synth, "check_mbrola", lambda: None)
    voices, say = bc._voices("people", 60, np.random.default_rng(0))
    assert {v.name for v in voices} == set(synth.MBROLA_HELD_OUT) and say is synth.say

    def missing():
        raise RuntimeError("mbrola-us3 is not installed")

    monkeypatch.setattr(synth, "check_mbrola", missing)
    with pytest.raises(RuntimeError, match="mbrola-us3"):
        bc._voices("people", 60, np.random.default_rng(0))
