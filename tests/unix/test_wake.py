"""The wake-word detector on the MicroPython Unix port against its host twin.

Same detections at the same frame indices, several models at once, no allocation per step
(detections included), independence from the audio chunk size through the real front end, and
the fallback to the default model when a model file is corrupt or trained for other features.
"""

import json
import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import nn, wake

SMALL = [
    ("conv", 12, 3, 2, 1, "relu"),
    ("dwconv", 0, 5, 1, 2, "relu"),
    ("dense", 1, 1, 1, 1, "sigmoid"),
]


def run_mpy(code, heapsize="1m"):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.strip().splitlines()


def make_model(path, seed, spec, frames, window, cooloff, frac=0.97, **side):
    """A random model whose cutoff lets the top few percent of windows through on `frames`."""
    model = nn.random_model(np.random.default_rng(seed), spec=spec)
    p = model.stream(frames).astype(np.float64)
    means = np.convolve(p, np.ones(window) / window, mode="valid")
    cutoff = float(np.clip(np.quantile(means, frac) / 255.0, 0.01, 0.99))
    info = dict(
        name=path.stem,
        wake_phrase=path.stem.replace("_", " "),
        cutoff=cutoff,
        window=window,
        cooloff=cooloff,
        frontend=nn.frontend_params(),
    )
    info.update(side)
    model.save(path, info)
    return path


DETECT_CODE = """
from voicenode.wake import Detector
import json, voicenode
det = Detector({models!r}, default={default!r})
x = open({frames!r}, 'rb').read()
fr = bytearray(40)
hits = []
for i in range(len(x) // 40):
    fr[:] = x[40 * i:40 * i + 40]
    f = det.frame
    n = det.step(fr)
    for j in range(n):
        hits.append([f, det.hits[j][0], det.hits[j][1]])
print(json.dumps(hits))
print(json.dumps([m.path for m in det.models]))
print(json.dumps(det.errors))
print(voicenode.counters.get('model_errors', 0))
"""


def firmware_detect(tmp_path, frames, models, default=None):
    fpath = tmp_path / "frames.bin"
    fpath.write_bytes(frames.tobytes())
    lines = run_mpy(
        DETECT_CODE.format(
            models=[str(m) for m in models],
            default=None if default is None else str(default),
            frames=str(fpath),
        )
    )
    hits, paths, errors, n_err = lines[-4:]
    return [tuple(h) for h in json.loads(hits)], json.loads(paths), json.loads(errors), int(n_err)


def host_detect(frames, models, default=None):
    det = wake.Detector(
        [str(m) for m in models],
        default=None if default is None else str(default),
        frontend=nn.frontend_params(),
    )
    return [(d.frame, d.word, d.score) for d in det.run(frames)], det


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(100).integers(0, 256, size=(1500, 40), dtype=np.uint8)


def test_two_models_detect_like_the_host_twin(tmp_path, frames):
    a = make_model(tmp_path / "hey_node.vnm", 1, nn.BENCH_SPEC, frames, window=3, cooloff=8)
    b = make_model(tmp_path / "ok_lamp.vnm", 2, SMALL, frames, window=5, cooloff=20)
    got, paths, errors, n_err = firmware_detect(tmp_path, frames, [a, b])
    want, _ = host_detect(frames, [a, b])
    assert errors == [] and n_err == 0 and len(paths) == 2
    words = [h[1] for h in want]
    assert words.count("hey_node") >= 3 and words.count("ok_lamp") >= 3
    assert got == want
    # the cool-off holds: detections of one word are at least `cooloff` model steps apart
    for word, stride, cool in (("hey_node", 3, 8), ("ok_lamp", 2, 20)):
        f = [h[0] for h in want if h[1] == word]
        assert min(np.diff(f)) > cool * stride


def test_postprocess_counts_in_integers():
    probs = np.array(
        [0, 200, 200, 200, 0, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255]
    )
    # window 3, cutoff 200: the mean of 200,200,200 reaches it (step 3); the ring is cleared,
    # steps 4..7 cannot detect but still fill it, so step 8 (255,255,255) detects again
    assert wake.postprocess(probs, 200, 3, 4) == [(3, 200), (8, 255), (17, 255)]
    assert wake.postprocess(probs, 201, 3, 0) == [(7, 255), (10, 255), (17, 255)]


ALLOC_CODE = """
from voicenode.wake import Detector
import micropython
det = Detector({models!r})
x = open({frames!r}, 'rb').read()
frames = [bytearray(x[40 * i:40 * i + 40]) for i in range(len(x) // 40)]
for i in range(50):
    det.step(frames[i])

def locked(a, b):
    hits = 0
    micropython.heap_lock()
    try:
        for i in range(a, b):
            hits += det.step(frames[i])
    finally:
        micropython.heap_unlock()
    return hits

def allocated(a, b):
    # heap taken even if given back at once (large VM call frames; hidden by heap_lock)
    t0 = micropython.mem_total()
    hits = 0
    for i in range(a, b):
        hits += det.step(frames[i])
    return micropython.mem_total() - t0, hits

hits = locked(50, 350)
n0 = allocated(350, 350)[0]
n1, hits2 = allocated(350, len(frames))
print(hits, hits2, n1 - n0, det.frame)
"""


def test_detector_step_allocates_nothing_even_when_detecting(tmp_path, frames):
    a = make_model(
        tmp_path / "hey_node.vnm", 1, nn.BENCH_SPEC, frames[:600], window=3, cooloff=8, frac=0.9
    )
    b = make_model(tmp_path / "ok_lamp.vnm", 2, SMALL, frames[:600], window=5, cooloff=20, frac=0.9)
    (tmp_path / "f.bin").write_bytes(frames[:600].tobytes())
    out = run_mpy(ALLOC_CODE.format(models=[str(a), str(b)], frames=str(tmp_path / "f.bin")))
    hits, hits2, allocated, n = map(int, out[-1].split())
    assert n == 600
    assert hits >= 3 and hits2 >= 3  # detections happened inside both measured regions
    assert allocated == 0


TWIN_CODE = """
from voicenode import wake
det1 = wake.Detector({models!r})
det2 = wake.Detector({models!r})
x = open({frames!r}, 'rb').read()
fr = bytearray(40)
bad = hits = 0
for i in range(len(x) // 40):
    fr[:] = x[40 * i:40 * i + 40]
    n1 = wake.detect(fr, det1._ctx)
    n2 = wake.detect_py(fr, det2._ctx)
    hits += n1
    if n1 != n2 or det1.hits[:n1] != det2.hits[:n2] or list(det1._st) != list(det2._st):
        bad += 1
print(bad, hits)
"""


def test_viper_detect_matches_its_plain_twin(tmp_path, frames):
    a = make_model(tmp_path / "hey_node.vnm", 1, nn.BENCH_SPEC, frames, window=3, cooloff=8)
    b = make_model(tmp_path / "ok_lamp.vnm", 2, SMALL, frames, window=5, cooloff=0, frac=0.95)
    (tmp_path / "f.bin").write_bytes(frames.tobytes())
    out = run_mpy(TWIN_CODE.format(models=[str(a), str(b)], frames=str(tmp_path / "f.bin")))
    bad, hits = map(int, out[-1].split())
    assert bad == 0 and hits >= 6


def corrupt(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(data[:-7])
    elif how == "flipped":
        data[100] ^= 0x40
        path.write_bytes(data)
    elif how == "magic":
        data[0:4] = b"RIFF"
        path.write_bytes(data)
    elif how == "frontend":
        side_path = path.with_suffix(".json")
        side = json.loads(side_path.read_text())
        side["frontend"]["OUT_GAIN"] = side["frontend"]["OUT_GAIN"] + 1
        side_path.write_text(json.dumps(side))
    elif how == "no_sidecar":
        path.with_suffix(".json").unlink()


CASES = [
    ("truncated", "the header says"),
    ("flipped", "checksum mismatch"),
    ("magic", "not a voicenode model"),
    ("frontend", "front-end parameter OUT_GAIN: model trained with"),
    ("no_sidecar", "sidecar missing"),
]


@pytest.mark.parametrize("how,message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_model_is_refused_and_the_default_takes_over(how, message, tmp_path, frames):
    bad = make_model(tmp_path / "custom.vnm", 3, SMALL, frames, window=4, cooloff=10)
    default = make_model(
        tmp_path / "default.vnm", 4, SMALL, frames, window=4, cooloff=10, frac=0.95
    )
    corrupt(bad, how)
    got, paths, errors, n_err = firmware_detect(tmp_path, frames, [bad], default=default)
    assert paths == [str(default)]
    assert n_err == 1 and len(errors) == 1
    assert message in errors[0] and "custom" in errors[0] and "falling back" in errors[0]
    want, host = host_detect(frames, [bad], default=default)
    assert len(host.models) == 1 and len(host.errors) == 1
    assert len(want) >= 2 and got == want


def test_a_broken_default_leaves_the_detector_running_without_it(tmp_path, frames):
    good = make_model(tmp_path / "hey_node.vnm", 5, SMALL, frames, window=4, cooloff=10)
    bad = make_model(tmp_path / "custom.vnm", 3, SMALL, frames, window=4, cooloff=10)
    default = make_model(tmp_path / "default.vnm", 4, SMALL, frames, window=4, cooloff=10)
    corrupt(bad, "flipped")
    corrupt(default, "magic")
    got, paths, errors, n_err = firmware_detect(tmp_path, frames, [good, bad], default=default)
    assert paths == [str(good)] and n_err == 2
    assert "falling back" in errors[0] and "runs without it" in errors[1]
    want, _ = host_detect(frames, [good, bad], default=default)
    assert got == want and len(got) >= 2
    # nothing loadable at all: the detector still runs, and detects nothing
    got, paths, errors, n_err = firmware_detect(tmp_path, frames[:90], [bad], default=default)
    assert got == [] and paths == [] and n_err == 2


CHUNK_CODE = """
from voicenode.dsp.frontend import Frontend
from voicenode.wake import Detector
import array, json
raw = open({pcm!r}, 'rb').read()
pcm = array.array('h', raw)
result = []
for chunk in {chunks!r}:
    det = Detector({models!r})
    hits = []
    def on_frame(frame):
        f = det.frame
        for j in range(det.step(frame)):
            hits.append([f, det.hits[j][0], det.hits[j][1]])
    fe = Frontend(callback=on_frame)
    mv = memoryview(pcm)
    i = 0
    while i < len(pcm):
        fe.process(mv[i:i + chunk])
        i += chunk
    result.append(hits)
print(json.dumps(result))
"""


def test_detections_do_not_depend_on_the_audio_chunk_size(tmp_path):
    from voicenode_tools.audio import load_16k
    from voicenode_tools.reference import frontend

    wav = tmp_path / "speech.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en",
            "-s",
            "140",
            "-w",
            str(wav),
            "hey node. switch on the lamp. hey node, what time is it. ok lamp, off.",
        ],
        check=True,
        capture_output=True,
    )
    pcm = load_16k(wav)
    feats = frontend.features(pcm)
    a = make_model(
        tmp_path / "hey_node.vnm", 6, nn.BENCH_SPEC, feats, window=3, cooloff=6, frac=0.9
    )
    b = make_model(tmp_path / "ok_lamp.vnm", 7, SMALL, feats, window=4, cooloff=10, frac=0.9)
    want, _ = host_detect(feats, [a, b])
    assert len(want) >= 4
    (tmp_path / "pcm.bin").write_bytes(pcm.astype("<i2").tobytes())
    chunks = [160, 77, 1000]
    result = json.loads(
        run_mpy(
            CHUNK_CODE.format(
                pcm=str(tmp_path / "pcm.bin"), chunks=chunks, models=[str(a), str(b)]
            ),
            heapsize="2m",
        )[-1]
    )
    for hits in result:
        assert [tuple(h) for h in hits] == want
