"""Wake-word training: export equivalence, labels, detection, a tiny end-to-end run, shipped models."""

import json

import numpy as np
import pytest
import torch

from voicenode_tools import REPO_ROOT
from voicenode_tools.cli import main
from voicenode_tools.reference import nn as ref
from voicenode_tools.train import evaluate, recipe, tracks, trainer
from voicenode_tools.train.model import DEFAULT_SPEC, StreamNet, to_float_layers


def _randomize_bn(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for layer in net.layers:
        if layer.bn is not None:
            n = layer.bn.num_features
            layer.bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            layer.bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            layer.bn.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            layer.bn.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        [["conv", 8, 5, 2, 1], ["dwconv", 0, 3, 2, 3], ["dense", 6, 1, 1, 1], ["conv", 1, 4, 1, 2]],
    ],
)
def test_torch_model_matches_reference_streaming(spec):
    torch.manual_seed(0)
    net = StreamNet(40, spec)
    _randomize_bn(net)
    net.eval()
    x = np.random.default_rng(1).integers(0, 256, (257, 40)).astype(np.uint8)
    xf = x * trainer.INPUT_SCALE
    with torch.no_grad():
        y = torch.sigmoid(net(torch.tensor(xf, dtype=torch.float32)[None]))[0].numpy()
    z = ref.float_stream(to_float_layers(net), xf)
    assert y.shape == z.shape == (257 // net.stride,)
    assert np.abs(y - z).max() < 1e-5


def test_receptive_field_default():
    net = StreamNet(40, DEFAULT_SPEC)
    assert net.stride == 3
    # conv k3 s3, then kernels at 30 ms: 4 + 8 + 32 + 8 + 5 steps of 3 frames.
    assert net.receptive_field() == 3 + 3 * (4 + 8 + 32 + 8 + 5)


def _ring_detector(probs, cutoff_u8, window, cooloff):
    ring, out, block = [0] * window, [], 0
    for m, p in enumerate(probs):
        ring = ring[1:] + [int(p)]
        if block:
            block -= 1
            continue
        if sum(ring) >= cutoff_u8 * window:
            out.append(m)
            ring, block = [0] * window, cooloff
    return out


def test_detections_follow_the_ring_semantics():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = (rng.random(300) ** 3 * 255).astype(np.uint8)
        c, w, cool = int(rng.integers(1, 255)), int(rng.integers(1, 6)), int(rng.integers(0, 8))
        assert evaluate.detections(p, c, w, cool) == _ring_detector(p, c, w, cool)


def test_hard_negative_loss_is_the_worst_negatives_mean_bce():
    logits = torch.tensor([[4.0, -1.0, 2.0, 9.0], [0.5, -3.0, 7.0, 1.0]])
    y = torch.tensor([[0, 0, 0, 1], [0, -1, 0, 0]])
    valid = (y >= 0) & torch.tensor([[True, True, True, True], [True, True, False, True]])
    # negatives (label 0, valid): 4, -1, 2, 0.5, 1 (7.0 is masked, 9.0 is a positive)
    got = trainer._hard_negative_loss(logits, y, valid, {"frac": 0.4, "weight": 2.0})
    want = 2.0 * np.mean([np.log1p(np.exp(4.0)), np.log1p(np.exp(2.0))])  # the 2 worst of 5
    assert float(got) == pytest.approx(want, rel=1e-6)
    one = trainer._hard_negative_loss(logits, y, valid, {"frac": 0.01, "weight": 1.0})
    assert float(one) == pytest.approx(np.log1p(np.exp(4.0)), rel=1e-6)  # at least one
    none = trainer._hard_negative_loss(logits, y, y > 5, {"frac": 0.5, "weight": 1.0})
    assert float(none) == 0.0
    # guard 1: outputs next to a label other than 0 stay out. Here 8.0, the worst negative,
    # is just before a positive: with the guard the worst left is 0.0 (-2.0 follows it)
    near = torch.tensor([[0.0, 8.0, 9.0, -2.0]])
    yn = torch.tensor([[0, 0, 1, 0]])
    g0 = trainer._hard_negative_loss(near, yn, yn >= 0, {"frac": 0.1, "weight": 1.0})
    g1 = trainer._hard_negative_loss(near, yn, yn >= 0, {"frac": 0.1, "weight": 1.0, "guard": 1})
    assert float(g0) == pytest.approx(np.log1p(np.exp(8.0)), rel=1e-6)
    assert float(g1) == pytest.approx(np.log(2.0), rel=1e-6)


def test_teacher_targets_give_every_frame_the_output_completed_at_it():
    rng = np.random.default_rng(5)
    a, b = ref.random_model(rng), ref.random_model(rng)
    s = a.stride
    assert s > 1
    t1 = tracks.Track(rng.integers(0, 256, (301, 40)).astype(np.uint8), np.zeros(301, np.int8), [])
    t2 = tracks.Track(rng.integers(0, 256, (95, 40)).astype(np.uint8), np.zeros(95, np.int8), [])
    got = trainer.teacher_targets([a, b], [t1, t2])
    assert got.dtype == np.float32 and got.shape == (301 + 95,)
    for i, t in ((0, t1), (301, t2)):
        mean = (a.stream(t.feats).astype(float) + b.stream(t.feats)) / 2 / 255
        # Each track streams from its own start: the outputs of phase 0 are the chip's own.
        np.testing.assert_allclose(
            got[i + s - 1 : i + len(t.feats) : s][: len(mean)], mean, atol=1e-6
        )
        # Phase 1: the model streamed from the track's second frame.
        one = a.stream(t.feats[1:]).astype(float) / 255
        only_a = trainer.teacher_targets([a], [t])
        np.testing.assert_allclose(only_a[s : len(t.feats) : s][: len(one)], one, atol=1e-6)
        assert (only_a[: s - 1] == 0).all()


def test_labels_mark_the_end_of_the_phrase():
    rate = 16000
    events = [(16000, 32000, "pos"), (48000, 56000, "conf")]
    lab, ev = tracks.label_frames(700, events, rate)
    (ps, pe, _), (cs, ce, _) = ev
    assert pe == (32000 - 480 + 159) // 160
    assert lab[pe] == 1 and lab[pe + 25] == 1 and lab[pe - 6] == -1
    assert lab[ps] == 0 and lab[ps + 20] == 0  # "hey jar..." must not wake
    assert lab[pe + 50] == -1 and lab[pe + 90] == 0
    assert (lab[cs:ce] == 0).all()


TINY = {
    "data": {"positives": 16, "confusables": 16, "speech_minutes": 0.2, "music_clips": 1,
             "val_positives": 6, "val_piper_positives": 2, "val_confusables": 6, "piper_fraction": 0.0,
             "val_speech_minutes": 0.2, "augment_copies": 1},
    "train": {"steps": 4, "batch": 4, "chunk": 300},
}  # fmt: skip


def test_tiny_training_run_makes_a_loadable_model(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    rec = recipe.make("hey jarvis", seed=3, **TINY)
    del rec["train"]["distill"]  # the shipped recipe's teachers: tested on their own below
    side = trainer.build(rec, tmp_path / "out", workers=1)
    model = ref.QuantModel.load(tmp_path / "out" / "hey_jarvis.vnm")
    ref.check_sidecar(model.sidecar, model, frontend=ref.frontend_params())
    on_disk = json.loads((tmp_path / "out" / "hey_jarvis.json").read_text())
    assert on_disk == side
    assert on_disk["recipe"]["phrase"] == "hey jarvis" and on_disk["seed"] == 3
    assert 0 < on_disk["cutoff"] < 1 and on_disk["window"] >= 1
    assert set(on_disk["scores"]["frr"]) == {
        f"val_{g}_snr{s}" for g in ("pos", "piper") for s in (20, 10, 5)
    }
    assert on_disk["heap_bytes"] == model.heap_bytes()
    # what the floating point depended on, to tell a rebuild on another machine apart
    import torch

    made = on_disk["trained_on"]
    assert made["threads"] == 1 and made["torch"] == torch.__version__
    assert made["vector_unit"] == torch.backends.cpu.get_cpu_capability()
    # The data is cached under its hash and reused.
    h = recipe.data_hash(rec, 16000)
    assert (tmp_path / "cache" / "data" / h / "clips.npz").exists()
    feats = np.zeros((300, 40), np.uint8)
    assert model.stream(feats).shape == (100,)


def test_teacher_recipes_go_back_one_generation_at_a_time():
    # A phrase without a recipe file: the shipped hey jarvis recipe is distilled itself.
    plain = recipe.make("hey computer", seed=2)
    gen = {"teacher_seeds": [1, 2], "weight": 0.9}
    one = recipe._merge(plain, {"train": {"distill": gen}})
    two = recipe._merge(plain, {"train": {"distill": {**gen, "generations": 2}}})
    three = recipe._merge(plain, {"train": {"distill": {**gen, "generations": 3}}})
    # A first generation learns from the plain recipe at the teacher's seed...
    assert trainer.teacher_recipe(one, 1) == recipe.make("hey computer", seed=1)
    # ... a second from first-generation students, and so on, each with the same hash as the
    # recipe written out by hand (so the cached teachers are shared).
    assert trainer.teacher_recipe(two, 1) == {**one, "seed": 1}
    assert trainer.teacher_recipe(three, 2) == {**two, "seed": 2}
    assert one["seed"] == 2 and "distill" in one["train"]  # the student's recipe is untouched


def test_a_teacher_model_gives_the_teachers_a_network_of_their_own():
    plain = recipe.make("hey computer", seed=2)
    wide = {"spec": [["conv", 96, 3, 3, 1], ["dwconv", 0, 5, 1, 1], ["dense", 96, 1, 1, 1]]}
    gen = {"teacher_seeds": [1], "weight": 0.5, "teacher_model": wide}
    one = recipe._merge(plain, {"train": {"distill": gen}})
    # the teacher is the plain recipe with the larger network, so it is cached as that recipe
    assert trainer.teacher_recipe(one, 1) == {**recipe.make("hey computer", seed=1), "model": wide}
    assert one["model"] == plain["model"]  # the student keeps the chip's network
    # a second generation's teachers keep the larger network all the way down
    two = recipe._merge(one, {"train": {"distill": {"generations": 2}}})
    assert trainer.teacher_recipe(trainer.teacher_recipe(two, 1), 1)["model"] == wide
    with pytest.raises(ValueError, match="teacher_model"):
        trainer.teacher_recipe(recipe._merge(plain, {"train": {"distill": {
            "teacher_seeds": [1], "weight": 0.5, "teacher_model": [1]}}}), 1)  # fmt: skip


def test_teacher_variants_add_teachers_made_another_way():
    """`train.distill.teacher_variants`: recipe tables merged on the teacher's recipe, each at
    every teacher seed; absent, the teachers are the plain recipe's (the same hashes, so the
    cached teachers are still found)."""
    plain = recipe.make("hey computer", seed=3)
    one = recipe._merge(plain, {"train": {"distill": {"teacher_seeds": [1, 2], "weight": 0.9}}})
    assert trainer.teacher_recipes(one) == [trainer.teacher_recipe(one, s) for s in (1, 2)]
    babble = {"data": {"babble_fraction": 0.5}}
    mixed = recipe._merge(one, {"train": {"distill": {"teacher_variants": [{}, babble]}}})
    got = trainer.teacher_recipes(mixed)
    by_hand = [recipe.make("hey computer", seed=s) for s in (1, 2)]
    by_hand += [recipe._merge(r, babble) for r in by_hand]
    assert [recipe.recipe_hash(r) for r in got] == [recipe.recipe_hash(r) for r in by_hand]
    assert [r["seed"] for r in got] == [1, 2, 1, 2]
    assert mixed["data"] == plain["data"]  # the student keeps its own data
    # With two generations each variant is a lineage: the first-generation teachers made
    # another way learn from teachers made that way too, the plain ones from plain ones.
    two = recipe._merge(mixed, {"train": {"distill": {"generations": 2}}})
    lineages = [
        [g["data"] for g in trainer.teacher_recipes(t)] for t in trainer.teacher_recipes(two)
    ]
    assert lineages == [[plain["data"]] * 2] * 2 + [[recipe._merge(plain, babble)["data"]] * 2] * 2
    assert all("distill" in t["train"] for t in trainer.teacher_recipes(two))
    for bad in ({}, [], [{}, 1], [{"seed": 4}], [{"train": {"distill": {"weight": 1}}}]):
        rec = recipe._merge(one, {"train": {"distill": {"teacher_variants": bad}}})
        with pytest.raises(ValueError, match="teacher_variants"):
            trainer.teacher_recipes(rec)
    # a variant that would train on the reserved MBROLA voices: refused with the rest, not
    # only when its own data is made, after the other teachers have trained
    mbrola = {"data": {"mbrola_fraction": 0.3}}
    rec = recipe._merge(one, {"train": {"distill": {"teacher_variants": [{}, mbrola]}}})
    with pytest.raises(ValueError, match="mbrola_fraction"):
        trainer.teacher_recipes(rec)


def test_distillation_builds_its_teachers_once(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    kd = recipe._merge(TINY, {"train": {"distill": {"teacher_seeds": [1, 2], "weight": 0.5}}})
    rec = recipe.make("hey computer", seed=3, **kd)
    side = trainer.build(rec, tmp_path / "out", workers=1)
    assert side["recipe"]["train"]["distill"]["teacher_seeds"] == [1, 2]
    # The teachers are the plain recipe at their seeds, as `train-wakeword --seed S` makes it.
    plain = [recipe.make("hey computer", seed=s, **TINY) for s in (1, 2)]
    teachers = tmp_path / "cache" / "teachers"
    assert sorted(p.name for p in teachers.iterdir()) == sorted(map(recipe.recipe_hash, plain))
    paths = [teachers / recipe.recipe_hash(r) / "hey_computer.vnm" for r in plain]
    assert all(
        ref.QuantModel.load(p).sidecar["seed"] == s for p, s in zip(paths, (1, 2), strict=True)
    )
    # The student's data is its own seed's, as without distillation.
    assert side["data_hash"] == recipe.data_hash(recipe.make("hey computer", seed=3, **TINY), 16000)
    # A second build takes the teachers from the cache and makes the same student.
    stamps = [p.stat().st_mtime_ns for p in paths]
    trainer.build(rec, tmp_path / "again", workers=1)
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    same = (tmp_path / "again" / "hey_computer.vnm").read_bytes()
    assert same == (tmp_path / "out" / "hey_computer.vnm").read_bytes()


def test_a_student_trains_for_its_own_steps():
    """`train.distill.steps`: the student's training steps; the teachers (the recipe without
    `distill`) and a build without teachers keep `train.steps`."""
    rng = np.random.default_rng(5)
    trk = [
        tracks.Track(
            rng.integers(0, 255, (400, 40), dtype=np.uint8),
            (rng.random(400) < 0.2).astype(np.int8),
            [],
        )
        for _ in range(2)
    ]
    kd = {"teacher_seeds": [1], "weight": 0.5, "steps": 7}
    rec = recipe.make("hey computer", seed=3, **recipe._merge(TINY, {"train": {"distill": kd}}))
    soft = np.full(800, 0.3, np.float32)

    def steps_of(soft_targets):
        seen = []
        trainer.fit(rec, trk, progress=lambda stage, f, msg="": seen.append(f), soft=soft_targets)
        return round(1 / seen[0]), len(seen)

    assert steps_of(soft) == (7, 2)  # steps 0 and 6 reported
    assert steps_of(None) == (4, 2)  # train.steps
    teacher = trainer.teacher_recipe(rec, 1)
    assert "distill" not in teacher["train"] and teacher["train"]["steps"] == 4


def test_cli_prints_the_recipe(capsys):
    assert main(["train-wakeword", "alexa", "--seed", "7", "--print-recipe"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["phrase"] == "alexa" and rec["seed"] == 7 and rec["name"] == "alexa"


def test_threads_two_for_a_custom_phrase_on_an_idle_machine():
    """`--threads` unset: a custom phrase trains with 2 threads when the machine is idle (the
    15-minute target: from nothing 15.8 min with 1 thread on an AVX512 Xeon, 12.3 with 2), 1
    beside other work; a shipped recipe with as many as its shipped model was made with, busy
    or not (their bytes depend on it)."""
    from voicenode_tools.commands.train_wakeword import choose_threads, shipped_threads

    assert choose_threads(None, None, 2, 0.3)[0] == 2
    assert choose_threads(None, None, 2, 1.0)[0] == 1  # another job holds a core
    assert choose_threads(None, None, 2, 0.7)[0] == 1  # or most of one
    assert choose_threads(None, None, 1, 0.0)[0] == 1
    assert choose_threads(None, None, 8, 3.0)[0] == 2
    assert choose_threads(None, 1, 2, 0.0)[0] == 1
    assert choose_threads(None, 2, 2, 1.5)[0] == 2
    assert choose_threads(3, 1, 2, 5.0) == (3, "as asked")
    assert choose_threads(3, 2, 2, 0.0, portable=True)[0] == 1  # a portable recipe: one
    # what the shipped sidecars say: recorded since 28 Nov, one thread before
    for phrase in ("hey jarvis", "alexa", "okay nabu", "hey mycroft"):
        made = json.loads((REPO_ROOT / "models" / f"{recipe.slug(phrase)}.json").read_text())
        assert shipped_threads(phrase) == made.get("trained_on", {}).get("threads", 1)
    assert shipped_threads("hey computer") is None


def test_a_shipped_recipe_trains_with_the_threads_its_sidecar_records(tmp_path, monkeypatch):
    from voicenode_tools.commands.train_wakeword import shipped_threads

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "hey_computer.json").write_text('{"phrase": "hey computer"}')
    monkeypatch.setattr(recipe, "RECIPES_DIR", tmp_path / "recipes")
    assert shipped_threads("hey computer") == 1  # no model yet: one, as before sidecars said
    side = tmp_path / "hey_computer.json"
    for made, want in (({"threads": 2}, 2), ({}, 1), ({"threads": "two"}, 1), ({"threads": 0}, 1)):
        side.write_text(json.dumps({"trained_on": made}))
        assert shipped_threads("hey computer") == want
    side.write_text("{not json")
    assert shipped_threads("hey computer") == 1


@pytest.mark.parametrize(
    "argv, phrase, load, threads",
    [
        (["hey computer"], "hey computer", 0.2, 2),
        (["hey computer"], "hey computer", 1.5, 1),
        (["hey jarvis"], "hey jarvis", 0.2, 1),  # a shipped recipe: as its model was made
        (["alexa"], "alexa", 0.2, 1),  # made with one, before sidecars recorded it
        (["okay nabu", "--threads", "2"], "okay nabu", 0.2, 2),
    ],
)
def test_the_cli_trains_with_the_chosen_threads(tmp_path, monkeypatch, capsys, argv, phrase, load,
                                                threads):  # fmt: skip
    from voicenode_tools.commands import train_wakeword as tw

    seen = {}

    def build(rec, out, progress, workers, threads):
        seen.update(phrase=rec["phrase"], threads=threads)
        return {"cutoff": 0.5, "heap_bytes": 1, "macs_per_step": 1,
                "scores": {"fa_per_hour": 0, "negative_hours": 1, "frr": {}}}  # fmt: skip

    monkeypatch.setattr(trainer, "build", build)
    monkeypatch.setattr(tw, "busy_cpus", lambda cpus: load)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert main(["train-wakeword", *argv, "-o", str(tmp_path)]) == 0
    assert seen == {"phrase": phrase, "threads": threads}
    assert f"training with {threads} PyTorch thread" in capsys.readouterr().err


def test_busy_cpus_sees_a_busy_core_at_once():
    """The measure the choice uses reads the CPUs now, not the minute-long load average
    (which still says "busy" a minute after a test run)."""
    import threading

    from voicenode_tools.commands.train_wakeword import busy_cpus

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        assert busy_cpus(2, seconds=0.5) >= 0.6  # one core spinning (the GIL: at most one)
    finally:
        stop.set()
        t.join()


def test_a_tracks_clean_twin_is_the_same_track_without_its_noise():
    rng = np.random.default_rng(4)
    utts = [((rng.standard_normal(8000) * 2000).astype(np.int16), "pos") for _ in range(2)]
    noise_only = [rng.standard_normal(16000 * 3).astype(np.float32)]  # as babble talkers
    audio, events = tracks.build_track(
        utts, 16000, np.random.default_rng(9), [], noise_only, (10, 10)
    )
    same, clean, ev = tracks.mix_track(
        utts, 16000, np.random.default_rng(9), [], noise_only, (10, 10), clean_db=40
    )
    # The twin changes none of the track's random draws: the same audio and events.
    assert np.array_equal(same, audio) and ev == events
    assert clean.shape == audio.shape and clean.dtype == np.int16
    # Before the first utterance only the bed plays: 30 dB quieter in the twin (40 - 10 dB).
    lead = events[0][0]
    ratio = np.sqrt(
        np.mean(clean[:lead].astype(float) ** 2) / np.mean(audio[:lead].astype(float) ** 2)
    )
    assert 0.025 < ratio < 0.04
    # Inside the utterances the speech dominates both: the twin keeps it at the same level.
    s, e, _ = events[0]
    assert np.corrcoef(clean[s:e].astype(float), audio[s:e].astype(float))[0, 1] > 0.9


def test_teachers_can_hear_the_clean_twins_of_the_training_tracks(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    kd = {"teacher_seeds": [1], "weight": 0.9, "teacher_input": "clean"}
    rec = recipe.make("hey computer", seed=3, **recipe._merge(TINY, {"train": {"distill": kd}}))
    noisy = trainer.prepare(rec, workers=1)["train"]
    clean = trainer.clean_train_tracks(rec, 40, workers=1)
    # The same tracks (frames and labels) with the background 40 dB below the speech.
    assert [len(t.feats) for t in clean] == [len(t.feats) for t in noisy]
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(clean, noisy, strict=True))
    assert any(not np.array_equal(a.feats, b.feats) for a, b in zip(clean, noisy, strict=True))
    # `prepare`'s plans, made again for the twins, still make the cached noisy tracks.
    clips = trainer.datamod.load_or_generate(rec, 16000)
    plans, babble, _, _ = trainer._train_plans(rec, clips)
    again = tracks.make_tracks(
        plans[:2], 16000, rec["seed"] * 1000 + 1, clips.groups["music"], babble,
        snr_db=rec["data"]["snr_db"], workers=1,
    )  # fmt: skip
    assert all(np.array_equal(a.feats, b.feats) for a, b in zip(again, noisy[:2], strict=True))
    # The student is built with its teacher's outputs on the twins.
    side = trainer.build(rec, tmp_path / "out", workers=1)
    assert side["recipe"]["train"]["distill"]["teacher_input"] == "clean"
    bad = recipe._merge(rec, {"train": {"distill": {"teacher_input": "quiet"}}})
    monkeypatch.setattr(trainer, "prepare", lambda *a, **k: pytest.fail("work on a bad recipe"))
    with pytest.raises(ValueError, match="teacher_input 'quiet'"):  # refused before any work
        trainer.build(bad, tmp_path / "bad", workers=1)
    bad = recipe._merge(rec, {"train": {"distill": {"teacher_variants": [{"seed": 2}]}}})
    with pytest.raises(ValueError, match="teacher_variants"):  # and so are bad variants
        trainer.build(bad, tmp_path / "bad", workers=1)


def test_room_fraction_sets_the_share_of_training_utterances_in_a_room(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    assert recipe.room_fraction({}) == 0.5  # the shipped recipes: absent, as before it existed
    rec = recipe.make("hey computer", seed=3, **recipe._merge(TINY, {"data": {"room_fraction": 1}}))
    assert recipe.room_fraction(rec["data"]) == 1.0
    # the tracks are cached beside the clips: another share keys another folder
    plain = recipe.make("hey computer", seed=3, **TINY)
    assert recipe.data_hash(rec, 16000) != recipe.data_hash(plain, 16000)
    shares = {}
    make_tracks = tracks.make_tracks

    def spy(plans, rate, seed, *args, **kwargs):
        shares[seed] = kwargs.get("p_reverb")  # by the set's seed: training is seed * 1000 + 1
        return make_tracks(plans, rate, seed, *args, **kwargs)

    monkeypatch.setattr(trainer.trk, "make_tracks", spy)
    trainer.prepare(rec, workers=1)
    # the training tracks take it; the validation tracks stay at the benchmark's half
    assert shares[3001] == 1.0
    assert {s for k, s in shares.items() if k != 3001} == {None}
    for bad in (1.5, -0.1, "most", True):
        with pytest.raises(ValueError, match="data.room_fraction must be a number from 0 to 1"):
            recipe.make("hey computer", data={"room_fraction": bad})


def test_background_bed_lays_the_kind_asked_or_draws_one():
    from voicenode_tools.train import augment

    rng = lambda: np.random.default_rng(9)  # noqa: E731
    music = [np.sin(np.arange(40000) / 9).astype(np.float32) * 4000]
    speech = [np.random.default_rng(1).normal(0, 2000, 16000).astype(np.int16)]
    noise = tracks.background_bed(16000, 16000, rng(), music, speech, "noise")
    assert np.array_equal(noise, augment.noise(16000, rng()))  # as the tracks always laid it
    for kind in ("music", "babble", "noise", None):
        b = tracks.background_bed(16000, 16000, rng(), music, speech, kind)
        assert len(b) == 16000 and abs(np.sqrt(np.mean(b.astype(float) ** 2)) - 1) < 1e-3
    with pytest.raises(ValueError, match="bed kind 'rain'"):
        tracks.background_bed(16000, 16000, rng(), music, speech, "rain")


def test_babble_fraction_sets_the_share_of_training_tracks_over_babble(tmp_path, monkeypatch):
    # absent (every shipped recipe): the tracks' usual shares, drawn exactly as before
    assert recipe.bed_shares({}) == tracks.BED_SHARES == {"music": 0.3, "babble": 0.2, "noise": 0.5}
    half = recipe.bed_shares({"babble_fraction": 0.6})
    assert half["babble"] == 0.6 and abs(half["music"] / half["noise"] - 0.6) < 1e-12
    assert abs(sum(half.values()) - 1) < 1e-12
    assert recipe.bed_shares({"babble_fraction": 0.2}) == pytest.approx(tracks.BED_SHARES)
    # a bed drawn by shares: all babble, never babble, and the usual draw for the usual shares
    music = [np.sin(np.arange(40000) / 9).astype(np.float32) * 4000]
    speech = [np.random.default_rng(1).normal(0, 2000, 16000).astype(np.int16)]
    for seed in range(20):
        usual = tracks.background_bed(800, 16000, np.random.default_rng(seed), music, speech)
        same = tracks.background_bed(
            800, 16000, np.random.default_rng(seed), music, speech, dict(tracks.BED_SHARES)
        )
        assert np.array_equal(usual, same)
        every = recipe.bed_shares({"babble_fraction": 1})
        want = tracks.background_bed(800, 16000, np.random.default_rng(seed), music, speech, every)
        r = np.random.default_rng(seed)
        r.random()  # the draw of the kind
        assert np.array_equal(want, tracks.background_bed(800, 16000, r, music, speech, "babble"))
    # the training tracks take the shares; the validation tracks draw as the benchmark does
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    rec = recipe.make(
        "hey computer", seed=3, **recipe._merge(TINY, {"data": {"babble_fraction": 1}})
    )
    assert recipe.data_hash(rec, 16000) != recipe.data_hash(
        recipe.make("hey computer", seed=3, **TINY), 16000
    )
    beds = {}
    make_tracks = tracks.make_tracks

    def spy(plans, rate, seed, *args, **kwargs):
        beds[seed] = kwargs.get("bed")
        return make_tracks(plans, rate, seed, *args, **kwargs)

    monkeypatch.setattr(trainer.trk, "make_tracks", spy)
    trainer.prepare(rec, workers=1)
    assert beds[3001] == {"music": 0.0, "babble": 1.0, "noise": 0.0}
    assert {b for k, b in beds.items() if k != 3001} <= {None, "noise"}
    for bad in (1.5, -0.1, "lots", False):
        with pytest.raises(ValueError, match="data.babble_fraction must be a number from 0 to 1"):
            recipe.make("hey computer", data={"babble_fraction": bad})


def test_recipes_that_differ_only_in_track_settings_share_their_clips(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICENODE_CACHE", str(tmp_path / "cache"))
    data = trainer.datamod
    plain = recipe.make("hey computer", seed=3, **TINY)
    first = data.load_or_generate(plain, 16000)
    folder = data.folder_of(plain, 16000)
    assert json.loads((folder / "manifest.json").read_text())["clips_hash"] == recipe.clips_hash(
        plain, 16000
    )
    # a cache made before the clips hash: the next load records it
    m = json.loads((folder / "manifest.json").read_text())
    del m["clips_hash"]
    (folder / "manifest.json").write_text(json.dumps(m))
    data.load_or_generate(plain, 16000)
    assert "clips_hash" in json.loads((folder / "manifest.json").read_text())
    # track settings: another data folder (its own tracks), the same clips, nothing synthesized
    monkeypatch.setattr(data, "generate", lambda *a, **k: pytest.fail("synthesized again"))
    for over in ({"room_fraction": 0.8}, {"babble_fraction": 0.5}, {"augment_copies": 3},
                 {"snr_db": [5, 20]}):  # fmt: skip
        rec = recipe.make("hey computer", seed=3, **recipe._merge(TINY, {"data": over}))
        assert recipe.data_hash(rec, 16000) != recipe.data_hash(plain, 16000)
        assert recipe.clips_hash(rec, 16000) == recipe.clips_hash(plain, 16000)
        again = data.load_or_generate(rec, 16000)
        assert data.folder_of(rec, 16000) != folder
        assert all(
            len(again.groups[g]) == len(first.groups[g])
            and all(
                np.array_equal(a, b) for a, b in zip(again.groups[g], first.groups[g], strict=True)
            )
            for g in data.GROUPS
        )
        assert again.info == first.info
        m = json.loads((data.folder_of(rec, 16000) / "manifest.json").read_text())
        assert m["data"] == rec["data"] and m["clips_from"] != m["data_hash"]
        src = json.loads((folder.parent / m["clips_from"] / "manifest.json").read_text())
        assert src["clips_hash"] == m["clips_hash"] == recipe.clips_hash(plain, 16000)
    # a setting the synthesis reads is not borrowed
    more = recipe.make("hey computer", seed=3, **recipe._merge(TINY, {"data": {"positives": 17}}))
    assert recipe.clips_hash(more, 16000) != recipe.clips_hash(plain, 16000)
    with pytest.raises(pytest.fail.Exception, match="synthesized again"):
        data.load_or_generate(more, 16000)
