"""`voicenode listen`: the host reference and the firmware on the virtual board agree."""

import json
import shutil

import numpy as np
import pytest

from voicenode_tools import REPO_ROOT
from voicenode_tools.audio import load_16k, write_wav
from voicenode_tools.cli import main
from voicenode_tools.reference import frontend, mic, nn
from voicenode_tools.reference import node as ref_node
from voicenode_tools.sim.listen import TAIL_S, listen_on_virtual_board

SPEC = [
    ("conv", 12, 3, 2, 1, "relu"),
    ("dwconv", 0, 5, 1, 2, "relu"),
    ("dense", 1, 1, 1, 1, "sigmoid"),
]


@pytest.fixture(scope="module")
def pcm():
    speech = load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav")
    rng = np.random.default_rng(9)
    quiet = rng.normal(0, 300, 8000).astype(np.int16)
    return np.concatenate([quiet, speech, quiet, (speech // 3)]).astype(np.int16)


def save_wake_model(folder, pcm, quantile, cooloff):
    """A random wake model whose cutoff lets the top `1 - quantile` of `pcm`'s windows fire."""
    heard, _ = mic.highpass(pcm)
    feats = frontend.features(heard)
    model = nn.random_model(np.random.default_rng(21), spec=SPEC)
    p = model.stream(feats).astype(np.float64)
    means = np.convolve(p, np.ones(4) / 4, mode="valid")
    cutoff = float(np.clip(np.quantile(means, quantile) / 255, 0.01, 0.99))
    side = dict(name="hey_jarvis", wake_phrase="hey jarvis", cutoff=cutoff, window=4,
                cooloff=cooloff, frontend=nn.frontend_params())  # fmt: skip
    model.save(folder / "hey_jarvis.vnm", side)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, pcm):
    """A folder holding a random model cut to fire on `pcm` (in models/)."""
    root = tmp_path_factory.mktemp("fw")
    (root / "models").mkdir()
    save_wake_model(root / "models", pcm, 0.93, cooloff=30)
    return root


def test_firmware_on_virtual_board_gives_the_reference_events(tmp_path, pcm, tree):
    model = tree / "models" / "hey_jarvis.vnm"
    heard = np.concatenate([pcm, np.zeros(int(TAIL_S * 16000), np.int16)])
    want = ref_node.events(heard, [model], default=model, microphone=True)
    assert len(want) >= 2, "the model must fire for the comparison to mean anything"
    got = listen_on_virtual_board(
        pcm, ["hey_jarvis"], {}, models=tree / "models", flash_image=tmp_path / "f.img"
    )
    assert got == want


def test_listen_command_prints_json_events(tmp_path, capsys, pcm, tree):
    wav = tmp_path / "clip.wav"
    write_wav(wav, pcm)
    assert main(["listen", str(wav), "--models", str(tree / "models")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines and all(e["event"] == "wake" and e["word"] == "hey_jarvis" for e in lines)
    assert all(0 < e["t"] <= len(pcm) / 16000 + TAIL_S and 0 < e["score"] <= 1 for e in lines)
    assert main(["listen", str(wav), "--models", str(tree / "models"), "--cutoff", "1.0"]) == 0
    strict = capsys.readouterr().out.splitlines()
    assert len(strict) < len(lines)
    assert main(["listen", str(wav), "--models", str(tree / "models"), "--scores"]) == 0
    scored = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    n_scores = sum(e["event"] == "score" for e in scored)
    assert n_scores > 100 and all(0 <= e["score"] <= 1 for e in scored)


def test_listen_command_sim_prints_the_reference_events(tmp_path, capsys, pcm, tree):
    wav = tmp_path / "clip.wav"
    write_wav(wav, pcm)
    assert main(["listen", str(wav), "--models", str(tree / "models")]) == 0
    ref = capsys.readouterr().out
    assert main(["listen", str(wav), "--sim", "--models", str(tree / "models")]) == 0
    assert capsys.readouterr().out == ref and ref.count('"wake"') >= 2


def test_listen_refuses_bad_input(tmp_path, capsys, tree):
    assert main(["listen", str(tmp_path / "nope.wav"), "--models", str(tree / "models")]) == 1
    assert "nope.wav" in capsys.readouterr().err
    wav = tmp_path / "ok.wav"
    write_wav(wav, np.zeros(16000, np.int16))
    assert main(["listen", str(wav), "--models", str(tree / "models"), "--wakeword", "alexa"]) == 1
    assert "no model" in capsys.readouterr().err
    bad = tmp_path / "m"
    bad.mkdir()
    (bad / "hey_jarvis.vnm").write_bytes(b"VNM\x00garbage")
    shutil.copy(tree / "models" / "hey_jarvis.json", bad / "hey_jarvis.json")
    assert main(["listen", str(wav), "--models", str(bad)]) == 1
    assert "hey_jarvis.vnm" in capsys.readouterr().err
    # The firmware refuses it too (and its fallback, the same file): --sim says so instead
    # of printing no events.
    assert main(["listen", str(wav), "--sim", "--no-commands", "--models", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "refused its wake models" in err and "hey_jarvis.vnm" in err, err
    assert "the detector runs without it" in err, err


def test_intents_after_wakes_agree_with_the_firmware(tmp_path, pcm, tree):
    from voicenode_tools.reference import commands as rc

    folder = tmp_path / "models"
    folder.mkdir()
    save_wake_model(folder, pcm, 0.98, cooloff=400)  # a wake now and then
    for f in ("commands_home.json", "commands_home.vcg", "commands_home_net.vnm",
              "commands_home_net.json"):  # fmt: skip
        shutil.copy(REPO_ROOT / "models" / f, folder / f)
    model = folder / "hey_jarvis.vnm"
    heard = np.concatenate([pcm, np.zeros(int(TAIL_S * 16000), np.int16)])
    want = ref_node.events(heard, [model], default=model, microphone=True,
                           commands=rc.load(folder / "commands_home"))  # fmt: skip
    intents = [e for e in want if e["event"] == "intent"]
    assert intents, "a listening window must end in an intent for the comparison to mean much"
    assert all(isinstance(e["intent"], str) and "slots" in e for e in intents)
    got = listen_on_virtual_board(pcm, ["hey_jarvis"], {}, models=folder,
                                  flash_image=tmp_path / "f.img", commands="commands_home")  # fmt: skip
    assert got == want


def test_sim_listen_names_a_command_model_the_node_cannot_load(tmp_path, capsys, tree):
    """The node logs a command model it cannot load (here a damaged grammar) and runs on
    without commands; `listen --sim` stops at that error and says how to run wake words
    only."""
    folder = tmp_path / "models"
    shutil.copytree(tree / "models", folder)
    for f in ("commands_home.json", "commands_home.vcg", "commands_home_net.vnm",
              "commands_home_net.json"):  # fmt: skip
        shutil.copy(REPO_ROOT / "models" / f, folder / f)
    data = bytearray((folder / "commands_home.vcg").read_bytes())
    data[40] ^= 0xFF  # a damaged grammar: the checksum no longer matches
    (folder / "commands_home.vcg").write_bytes(bytes(data))
    wav = tmp_path / "ok.wav"
    write_wav(wav, np.zeros(16000, np.int16))
    assert main(["listen", str(wav), "--sim", "--models", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "--no-commands" in err, err
    assert main(["listen", str(wav), "--sim", "--no-commands", "--models", str(folder)]) == 0


def test_scores_pause_while_a_command_is_heard(tmp_path):
    """With a command model the node's wake words do not run in a listening window (their
    memory is lent): `--scores` prints no step there, and steps again after the intent."""
    from voicenode_tools.demo import DEMO_WAV
    from voicenode_tools.reference import commands as rc

    model = REPO_ROOT / "models" / "hey_jarvis.vnm"
    pcm = load_16k(DEMO_WAV)
    cmds = rc.load(REPO_ROOT / "models" / "commands_home")
    evs = ref_node.events(pcm, [model], default=model, scores=True, microphone=True, commands=cmds)
    wakes = [e["at"] for e in evs if e["event"] == "wake"]
    intents = [e["at"] for e in evs if e["event"] == "intent"]
    steps = [e["at"] for e in evs if e["event"] == "score"]
    assert len(wakes) == len(intents) == 2
    for w, i in zip(wakes, intents, strict=True):
        assert not [t for t in steps if w < t <= i], (w, i)
        assert [t for t in steps if i < t <= i + 0.1], "the wake words step again after it"
    every = ref_node.events(pcm, [model], default=model, scores=True, microphone=True)
    assert len(steps) < sum(e["event"] == "score" for e in every)


def test_the_twin_finds_the_next_wake_in_growing_prefixes():
    """`reference.node._first_wakes` (prefixes of doubling length, so that a long recording is
    not run from every wake to its end): the first detections are the whole rest's first."""
    from voicenode_tools.demo import DEMO_WAV
    from voicenode_tools.reference import wake

    model = str(REPO_ROOT / "models" / "hey_jarvis.vnm")
    det = wake.Detector([model], frontend=nn.frontend_params())
    feats = frontend.features(mic.highpass(load_16k(DEMO_WAV))[0])
    for start in (0, 600, len(feats) - 50):
        whole = det.run(feats[start:])
        got = ref_node._first_wakes(det, feats, start, first_look=7)
        first = [d for d in whole if d.frame == whole[0].frame] if whole else []
        assert [(d.frame, d.word, d.score) for d in got[: len(first)]] == [
            (d.frame, d.word, d.score) for d in first
        ]
        assert bool(got) == bool(whole)
    assert ref_node._first_wakes(det, feats, 0, first_look=7)  # the demo does wake
