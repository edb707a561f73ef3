"""A multi-channel logits head: the chip's `load(path, head="logits")` against the numpy twin.

A small random phone-style model (40 mels -> conv k3 s3 -> dwconv k5 -> dense -> dense 24,
activation none) quantised on real speech features, saved with sidecar kind "phones", streamed
on the MicroPython Unix port: every output byte of every model step equals the host twin's,
the streaming loop allocates nothing, and each loader refuses the other head's model.
"""

import json
import struct
import subprocess
import zlib

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR, REPO_ROOT
from voicenode_tools.audio import load_16k
from voicenode_tools.reference import frontend as ref_frontend
from voicenode_tools.reference import nn

SPEECH = REPO_ROOT / "tests" / "data" / "speech_16k.wav"
SPEC = [
    ("conv", 32, 3, 3, 1, "relu"),
    ("dwconv", 0, 5, 1, 1, "relu"),
    ("dense", 32, 1, 1, 1, "relu"),
    ("dense", 24, 1, 1, 1, "none"),
]
LABELS = [f"p{i}" for i in range(24)]


def run_mpy(code, heapsize="512k"):
    prog = f"import sys\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout.strip().splitlines()


@pytest.fixture(scope="module")
def speech_features():
    feats = ref_frontend.features(load_16k(SPEECH))
    assert feats.shape[0] > 400 and feats.std() > 5
    return feats


@pytest.fixture(scope="module")
def phones(tmp_path_factory, speech_features):
    """(path, QuantModel) of a logits-head model calibrated on speech."""
    tmp = tmp_path_factory.mktemp("logits")
    layers = nn.random_float_layers(np.random.default_rng(41), spec=SPEC)
    model = nn.quantize(layers, speech_features, input_scale=1 / 64)
    assert model.head == "logits"
    vnm = tmp / "phones.vnm"
    side = model.save(vnm, {"name": "phones", "frontend": nn.frontend_params(), "labels": LABELS})
    assert side["kind"] == "phones" and "wake_phrase" not in side
    return vnm, model


STREAM_CODE = """
import gc, micropython
from voicenode.nn import model
m = model.load({path!r}, head="logits")
print(m.head, m.name, len(m.out), m.stride, m.labels[0], m.labels[-1], m.word)
x = open({frames!r}, 'rb').read()
n = 40
nf = len(x) // n
frames = [bytearray(x[n * i:n * i + n]) for i in range(nf)]
nv = len(m.out)
out = bytearray(nf * nv)  # every emitted step's logits, copied byte by byte (a slice allocates)
rets = bytearray(nf)


def run(m, frames, out, rets, n):
    view = m.out
    nv = len(view)
    steps = 0
    micropython.heap_lock()
    try:
        for i in range(n):
            r = m.step(frames[i])
            if r >= 0:
                base = steps * nv
                for j in range(nv):
                    out[base + j] = view[j]
                rets[steps] = r
                steps += 1
    finally:
        micropython.heap_unlock()
    return steps


# bytes taken from the heap even if given back at once (heap_lock hides a call frame taken
# from the heap): the same call over no frames is the baseline
t = [0, 0, 0, 0]  # no new global between the readings (a growing globals dict allocates)
steps = 0
t[0] = micropython.mem_total()
run(m, frames, out, rets, 0)
t[1] = micropython.mem_total()
steps = run(m, frames, out, rets, nf)
t[2] = micropython.mem_total()
print((t[2] - t[1]) - (t[1] - t[0]))
print(steps)
print(bytes(out[:steps * nv]).hex())
print(bytes(rets[:steps]).hex())
"""


def test_firmware_logits_equal_the_twin_on_speech_without_allocating(
    phones, speech_features, tmp_path
):
    vnm, model = phones
    frames = speech_features
    (tmp_path / "f.bin").write_bytes(np.ascontiguousarray(frames).tobytes())
    lines = run_mpy(STREAM_CODE.format(path=str(vnm), frames=str(tmp_path / "f.bin")))
    assert lines[0] == "logits phones 24 3 p0 p23 None"
    allocated, steps = int(lines[1]), int(lines[2])
    want = model.stream(frames)
    assert want.shape == (len(frames) // 3, 24) and len(frames) > 400
    assert steps == want.shape[0]
    got = np.frombuffer(bytes.fromhex(lines[3]), np.uint8).reshape(steps, 24)
    np.testing.assert_array_equal(got, want)
    # step() returns the first logit when it emitted
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(lines[4]), np.uint8), want[:, 0])
    assert allocated == 0  # heap_lock held: and nothing was taken and given back either
    # the logits really carry information: channels differ and vary over time
    assert np.unique(want).size > 30
    assert (want.std(axis=0) > 2).sum() > 12
    assert len({int(a) for a in want.argmax(axis=1)}) > 3


def test_host_twin_round_trips_the_logits_model(phones, speech_features):
    vnm, model = phones
    again = nn.QuantModel.load(vnm, head="logits")
    assert again.head == "logits" and again.sidecar["labels"] == LABELS
    assert again.to_bytes() == model.to_bytes()
    np.testing.assert_array_equal(
        again.stream(speech_features[:300]), model.stream(speech_features[:300])
    )
    back = nn.QuantModel.from_bytes(model.to_bytes(), head="logits")
    assert back.layers[-1].out_ch == 24 and back.layers[-1].table is None
    # the float network with the same layers gives (steps, 24) outputs
    layers = nn.random_float_layers(np.random.default_rng(41), spec=SPEC)
    x = (speech_features[:300].astype(np.float64)) / 64
    assert nn.float_stream(layers, x).shape == (100, 24)


def test_quantised_logits_follow_the_float_network(phones, speech_features):
    vnm, model = phones
    layers = nn.random_float_layers(np.random.default_rng(41), spec=SPEC)
    f = nn.float_stream(layers, speech_features.astype(np.float64) / 64)
    last = model.layers[-1]
    q = (model.stream(speech_features).astype(np.float64) - last.out_zp) * last.out_scale
    assert q.shape == f.shape
    assert np.corrcoef(q.ravel(), f.ravel())[0, 1] > 0.98


def test_host_twin_refuses_the_other_head(phones, tmp_path):
    vnm, _ = phones
    with pytest.raises(nn.ModelFormatError, match="not a wake-word model"):
        nn.QuantModel.load(vnm)
    wake = tmp_path / "wake.vnm"
    nn.random_model(
        np.random.default_rng(2),
        n_mels=40,
        spec=nn.BENCH_SPEC[:2] + [("conv", 1, 2, 1, 1, "sigmoid")],
    ).save(
        wake,
        dict(
            name="w",
            wake_phrase="w",
            cutoff=0.5,
            window=3,
            cooloff=3,
            frontend=nn.frontend_params(),
        ),
    )
    with pytest.raises(nn.ModelFormatError, match="needs a 'phones' model"):
        nn.QuantModel.load(wake, head="logits")
    assert nn.QuantModel.load(wake).head == "sigmoid"


def _relabel_last_act(src, dst, act):
    """A copy of the phones model whose last layer has activation `act` (CRCs refitted)."""
    data = bytearray(src.read_bytes()[:-4])
    pos = 16
    n_layers = struct.unpack_from("<H", data, 6)[0]
    for i in range(n_layers):
        kind, a, k, s, d, zp, in_ch, out_ch, _ = struct.unpack_from("<BBBBBBHHH", data, pos)
        per = k if kind == 2 else k * in_ch
        if i == n_layers - 1:
            data[pos + 1] = act
        pos += 12 + per * out_ch + 8 * out_ch + (256 if a == 2 else 0)
    crc = zlib.crc32(bytes(data))
    dst.write_bytes(bytes(data) + struct.pack("<I", crc))
    side = json.loads(src.with_suffix(".json").read_text())
    side["model_crc32"] = crc
    dst.with_suffix(".json").write_text(json.dumps(side))


def test_each_loader_refuses_the_other_kind_with_a_clear_message(phones, tmp_path):
    vnm, model = phones
    wake = tmp_path / "wake.vnm"
    nn.random_model(
        np.random.default_rng(3),
        n_mels=40,
        spec=[("dense", 8, 1, 1, 1, "relu"), ("dense", 1, 1, 1, 1, "sigmoid")],
    ).save(
        wake,
        dict(
            name="w",
            wake_phrase="w",
            cutoff=0.5,
            window=3,
            cooloff=3,
            frontend=nn.frontend_params(),
        ),
    )
    relu = tmp_path / "relu.vnm"
    _relabel_last_act(vnm, relu, nn.ACT_RELU)
    nolabel = tmp_path / "nolabel.vnm"
    _relabel_last_act(vnm, nolabel, nn.ACT_NONE)
    side = json.loads(nolabel.with_suffix(".json").read_text())
    side["labels"] = ["a", "b"]
    nolabel.with_suffix(".json").write_text(json.dumps(side))
    cases = [
        (str(vnm), "sigmoid"),
        (str(wake), "logits"),
        (str(relu), "logits"),
        (str(nolabel), "logits"),
        (str(vnm), "softmax"),
        (str(vnm), "logits"),
        (str(wake), "sigmoid"),
    ]
    code = (
        "from voicenode.nn import model\nimport json\nout = []\n"
        f"for path, head in {cases!r}:\n"
        "    try:\n        m = model.load(path, head=head)\n"
        "        out.append('loaded %s %d' % (m.head, len(m.out)))\n"
        "    except model.ModelError as e:\n        out.append(str(e))\n"
        "print(json.dumps(out))\n"
    )
    got = json.loads(run_mpy(code)[-1])
    assert "phones.json: sidecar kind 'phones' is not a wake-word model" in got[0]
    assert "head='logits'" in got[0]
    assert "wake.json: sidecar kind 'wake': a logits head needs a 'phones' model" in got[1]
    assert (
        "relu.vnm: layer 3: the last layer of a logits model must have activation none" in (got[2])
    )
    assert "nolabel.vnm: sidecar names 2 labels for 24 outputs" in got[3]
    assert "unknown head 'softmax'" in got[4]
    assert got[5] == "loaded logits 24"
    assert got[6] == "loaded sigmoid 1"


def test_wake_detector_refuses_a_phones_model(phones):
    vnm, _ = phones
    code = (
        "from voicenode.wake import Detector\n"
        f"d = Detector([{str(vnm)!r}])\n"
        "print(len(d.models))\nprint(d.errors)\n"
    )
    lines = run_mpy(code)
    assert lines[-2] == "0"
    assert "not a wake-word model" in lines[-1]
