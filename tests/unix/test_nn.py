"""The int8 streaming network on the MicroPython Unix port against its numpy twin.

Bit-exactness (random seeded models, random frames and real front-end features), the viper
kernels against their plain-Python twins, no allocation per step, call-pattern invariance,
the heap budget, and the same results from the compiled .mpy.
"""

import ast
import json
import shutil
import subprocess

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import nn

FRONTEND = {"N_MELS": 7, "FEATURES_VERSION": 1}


def run_mpy(code, heapsize="512k", path=FIRMWARE_DIR, timeout=120):
    prog = f"import sys\nsys.path.insert(0, {str(path)!r})\n" + code
    out = subprocess.run(
        ["micropython", "-X", f"heapsize={heapsize}", "-c", prog],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def save(model, path, frontend=None, **kw):
    side = dict(
        name=path.stem,
        wake_phrase=path.stem.replace("_", " "),
        cutoff=0.6,
        window=4,
        cooloff=10,
        frontend=frontend if frontend is not None else nn.frontend_params(),
    )
    side.update(kw)
    model.save(path, side)
    return path


# (kind, out_ch, k, stride, dilation, activation): kernels with tails (k*in % 4 != 0), strides
# and dilations at several depths, linear layers, a strided depthwise layer.
ODD_SPEC = [
    ("conv", 6, 3, 2, 2, "none"),
    ("dwconv", 0, 4, 1, 3, "relu"),
    ("dense", 5, 1, 1, 1, "none"),
    ("dwconv", 0, 2, 3, 1, "none"),
    ("conv", 9, 2, 1, 5, "relu"),
    ("conv", 1, 3, 1, 1, "sigmoid"),
]

STREAM_CODE = """
from voicenode.nn import model
import json
m = model.load({path!r}, frontend={frontend!r})
x = open({frames!r}, 'rb').read()
n = {n_mels}
fr = bytearray(n)
out = []
for i in range(len(x) // n):
    fr[:] = x[n * i:n * i + n]
    p = m.step(fr)
    if p >= 0:
        out.append(p)
print(json.dumps(out))
"""


def firmware_stream(vnm, frames, tmp_path, frontend=None, path=FIRMWARE_DIR):
    fpath = tmp_path / "frames.bin"
    fpath.write_bytes(np.ascontiguousarray(frames, np.uint8).tobytes())
    code = STREAM_CODE.format(
        path=str(vnm), frontend=frontend, frames=str(fpath), n_mels=frames.shape[1]
    )
    return np.array(json.loads(run_mpy(code, path=path).strip().splitlines()[-1]), np.uint8)


@pytest.mark.parametrize(
    "spec,n_mels,zp,seed",
    [(nn.BENCH_SPEC, 40, 0, 1), (ODD_SPEC, 7, 0, 2), (ODD_SPEC, 7, 128, 3), (ODD_SPEC, 7, 37, 4)],
    ids=["bench", "odd-zp0", "odd-zp128", "odd-zp37"],
)
def test_firmware_matches_numpy_twin_on_random_frames(spec, n_mels, zp, seed, tmp_path):
    rng = np.random.default_rng(seed)
    model = nn.random_model(rng, n_mels=n_mels, spec=spec, input_zp=zp)
    frames = rng.integers(0, 256, size=(450, n_mels), dtype=np.uint8)
    frontend = None if n_mels == 40 else FRONTEND
    vnm = save(model, tmp_path / "m.vnm", frontend=frontend)
    want = model.stream(frames)
    got = firmware_stream(vnm, frames, tmp_path, frontend=frontend)
    assert len(want) == 450 // model.stride
    assert np.unique(want).size > 10  # the probabilities really vary
    np.testing.assert_array_equal(got, want)


def test_firmware_matches_numpy_twin_on_real_features(tmp_path):
    from voicenode_tools.audio import load_16k
    from voicenode_tools.reference import frontend

    wav = tmp_path / "speech.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en",
            "-s",
            "150",
            "-w",
            str(wav),
            "hey node, turn on the kitchen light",
        ],
        check=True,
        capture_output=True,
    )
    pcm = load_16k(wav)
    feats = frontend.features(pcm)
    assert feats.shape[0] > 150 and feats.std() > 5
    rng = np.random.default_rng(7)
    model = nn.quantize(
        nn.random_float_layers(rng), feats, input_scale=1 / 255
    )  # calibrated on speech
    vnm = save(model, tmp_path / "real.vnm")
    want = model.stream(feats)
    got = firmware_stream(vnm, feats, tmp_path)
    assert np.unique(want).size > 5
    np.testing.assert_array_equal(got, want)


KERNEL_CODE = """
from voicenode.nn import model, kernels
import random
random.seed(5)
m = model.load({path!r}, frontend={frontend!r})
bad = 0
checked = 0
for li in range(m._n):
    cfg = m._cfg[li]
    n_in = cfg[kernels.CFG_IN]
    b1 = bytearray(m._buf[li]); b2 = bytearray(m._buf[li])
    import array
    cfg1 = array.array('i', cfg); cfg2 = array.array('i', cfg)
    for step in range(60):
        x = bytearray(random.getrandbits(8) for _ in range(n_in))
        e1 = kernels.layer_step(x, b1, 0, cfg1)
        e2 = kernels.layer_step_py(x, b2, 0, cfg2)
        checked += e1
        if e1 != e2 or b1 != b2 or list(cfg1) != list(cfg2):
            bad += 1
b = bytearray(random.getrandbits(8) for _ in range(1003))
b2 = bytearray(b)
kernels.xor80(b, 3, 997); kernels.xor80_py(b2, 3, 997)
ok_xor = b == b2 and b[:3] == b2[:3]
# the whole network: run_layers against run_layers_py on copies of every buffer
m.reset()
bufs = [bytearray(x) for x in m._buf]
cfgs = [array.array('i', c) for c in m._cfg]
outs = [memoryview(bufs[i])[c[kernels.CFG_OUTOFF]:c[kernels.CFG_OUTOFF] + c[kernels.CFG_OUT]]
        for i, c in enumerate(cfgs)]
probs = 0
for step in range(120):
    x = bytearray(random.getrandbits(8) for _ in range(7))
    p1 = kernels.run_layers(x, m._buf, m._cfg, m._out)
    p2 = kernels.run_layers_py(x, bufs, cfgs, outs)
    probs += p1 >= 0
    if p1 != p2:
        bad += 1
print(bad, checked, ok_xor, probs)
"""


def test_viper_kernels_match_plain_twins(tmp_path):
    rng = np.random.default_rng(11)
    model = nn.random_model(rng, n_mels=7, spec=ODD_SPEC, input_zp=77)
    vnm = save(model, tmp_path / "k.vnm", frontend=FRONTEND)
    bad, checked, ok_xor, probs = run_mpy(
        KERNEL_CODE.format(path=str(vnm), frontend=FRONTEND)
    ).split()
    assert bad == "0"
    assert int(probs) == 120 // model.stride
    assert int(checked) > 100  # emitting steps were compared, not only ring writes
    assert ok_xor == "True"


RECORDS_CODE = """
import array, random, struct
from voicenode.nn import kernels
random.seed(9)
bad = 0
codes = {{}}
noise = bytes(random.getrandbits(8) for _ in range(4096)) * 12
for case in range({n}):
    kind = random.choice((1, 2, 3))
    k = 1 if kind == 3 else random.choice((3, 5, 9))
    n_in = random.choice((4, 40, 96))
    out = random.choice((1, 7, 16))
    if case % 25 == 0:  # dense layers long enough for 32-bit sums to overflow
        kind, k, n_in, out = 3, 1, random.choice((24000, 33024, 33025)), 1
    per = k if kind == 2 else k * n_in
    cfg = array.array('i', bytes(4 * kernels.CFG_LEN))
    cfg[kernels.CFG_KIND] = kind; cfg[kernels.CFG_K] = k; cfg[kernels.CFG_IN] = n_in
    cfg[kernels.CFG_OUT] = out; cfg[kernels.CFG_ZI] = random.choice((0, 1, 128, 255))
    cfg[kernels.CFG_W] = 8 * out
    at = random.randint(0, 4096)
    buf = bytearray(noise[at:at + 8 * out + per * out + 3])
    chan = bytearray(8 * out)
    for o in range(out):
        r = random.random()
        b = random.choice((random.randint(-(1 << 20), 1 << 20), random.getrandbits(32) - (1 << 31),
                           random.choice((-(1 << 30), (1 << 30) - 1, 1 << 29, -(1 << 29)))))
        m = random.choice((random.randint(0, 32767), 32768, 65535))
        sh = random.choice((random.randint(0, 30), 31, 255))
        if r < 0.7:  # mostly channels that pass
            b, m, sh = random.randint(-(1 << 20), 1 << 20), random.randint(0, 32767), random.randint(0, 30)
        struct.pack_into("<iHBB", chan, 8 * o, b, m, sh, 0)
    b1 = bytearray(buf); b2 = bytearray(buf)
    r1 = kernels.records(b1, chan, cfg)
    r2 = kernels.records_py(b2, chan, cfg)
    codes[r1 >> 16] = codes.get(r1 >> 16, 0) + 1
    if r1 != r2 or (r1 == 0 and b1 != b2):
        bad += 1
b = bytearray(50); b2 = bytearray(50)
kernels.fill_u8(b, 3, 40, 77); kernels.fill_u8_py(b2, 3, 40, 77)
print(bad, sorted(codes.items()), b == b2 and b[2] == 0 and b[3] == 77 and b[43] == 0)
"""


def test_channel_records_kernel_matches_its_twin():
    """`records` (the loader's folding of the channel records, viper) equals its Python twin
    on random layers, passing channels and each kind of refusal alike."""
    out = run_mpy(RECORDS_CODE.format(n=300)).strip().splitlines()[-1]
    bad, rest = out.split(" ", 1)
    codes, fill_ok = rest.rsplit(" ", 1)
    assert bad == "0", out
    assert fill_ok == "True"
    seen = dict(ast.literal_eval(codes))  # [(code, count), ...]: all four outcomes seen
    assert set(seen) == {0, 1, 2, 3}, seen


def test_kernel_arithmetic_is_32_bit_safe_at_the_limits(tmp_path):
    """Extreme weights, biases and inputs: firmware still equals the int64 numpy twin."""
    rng = np.random.default_rng(12)
    n_in, k = 40, 9
    w = np.where(rng.random((8, k, n_in)) < 0.5, -127, 127).astype(np.int8)
    w[0] = 127
    w[1] = -127
    zp = 255
    bias = rng.integers(-(1 << 28), 1 << 28, size=8).astype(np.int32)
    m, s = zip(
        *[nn.quantize_multiplier(r) for r in (0.49, 1e-9, 3e-5, 0.25, 1e-3, 0.1, 2e-6, 1e-12)],
        strict=True,
    )
    conv = nn.QuantLayer(
        nn.KIND_CONV,
        nn.ACT_NONE,
        k,
        1,
        2,
        n_in,
        8,
        zp,
        128,
        w,
        bias,
        np.array(m, np.int32),
        np.array(s, np.int32),
    )
    head = nn.QuantLayer(
        nn.KIND_DENSE,
        nn.ACT_SIGMOID,
        1,
        1,
        1,
        8,
        1,
        128,
        100,
        np.full((1, 1, 8), 127, np.int8),
        np.zeros(1, np.int32),
        np.array([1 << 14], np.int32),
        np.array([0], np.int32),
        table=nn.logistic_table(0.05, 100),
    )
    model = nn.QuantModel([conv, head], input_zp=zp)
    frames = np.where(rng.random((300, n_in)) < 0.5, 0, 255).astype(np.uint8)
    frames[:40] = 0
    frames[40:80] = 255
    vnm = save(model, tmp_path / "x.vnm", frontend=nn.frontend_params())
    code = STREAM_CODE.format(
        path=str(vnm), frontend=None, frames=str(tmp_path / "f.bin"), n_mels=n_in
    )
    (tmp_path / "f.bin").write_bytes(frames.tobytes())
    got = np.array(json.loads(run_mpy(code).strip().splitlines()[-1]), np.uint8)
    np.testing.assert_array_equal(got, model.stream(frames))
    # and the first layer's outputs really reach both clamps
    y = model.layers[0].stream(frames)
    assert y.min() == 0 and y.max() == 255


HEAP_CODE = """
import gc, micropython
from voicenode.nn import model
gc.collect()
a0 = gc.mem_alloc()
m = model.load({path!r})
gc.collect()
used = gc.mem_alloc() - a0
frames = [bytearray((i * 37 + j * 11) & 255 for j in range(40)) for i in range(7)]
for i in range(30):
    m.step(frames[i % 7])

def locked(n):
    emitted = 0
    micropython.heap_lock()
    try:
        for i in range(n):
            if m.step(frames[i % 7]) >= 0:
                emitted += 1
    finally:
        micropython.heap_unlock()
    return emitted

def allocated(n):
    # bytes taken from the heap, even if given back at once: the VM takes large call frames
    # from the heap when it can and silently falls back to the C stack under heap_lock
    t0 = micropython.mem_total()
    for i in range(n):
        m.step(frames[i % 7])
    return micropython.mem_total() - t0

print(used, locked(300), allocated(300) - allocated(0))
"""


def test_step_allocates_nothing_and_fits_the_heap_budget(tmp_path):
    model = nn.random_model(np.random.default_rng(3))
    vnm = save(model, tmp_path / "b.vnm")
    used, emitted, allocated = map(int, run_mpy(HEAP_CODE.format(path=str(vnm))).split())
    assert emitted == 100  # 300 frames, stride 3: the locked loop ran the whole network
    assert allocated == 0
    assert used <= model.heap_bytes() <= 48 * 1024, (used, model.heap_bytes())


PATTERN_CODE = """
from voicenode.nn import model
import array, json
x = open({frames!r}, 'rb').read()
n = {n}
a = model.load({path!r}, frontend={frontend!r})
b = model.load({path!r}, frontend={frontend!r})
out = []
# 1: a bytearray refilled per frame
fr = bytearray(n)
r1 = []
for i in range(len(x) // n):
    fr[:] = x[i * n:(i + 1) * n]
    p = a.step(fr)
    if p >= 0: r1.append(p)
# 2: after reset, memoryview slices of one buffer, interleaved with another model
a.reset()
mv = memoryview(x)
r2, r3 = [], []
for i in range(len(x) // n):
    p = a.step(mv[i * n:(i + 1) * n])
    q = b.step(array.array('B', x[i * n:(i + 1) * n]))
    if p >= 0: r2.append(p)
    if q >= 0: r3.append(q)
print(json.dumps([r1, r2, r3]))
"""


def test_outputs_do_not_depend_on_call_pattern(tmp_path):
    rng = np.random.default_rng(21)
    model = nn.random_model(rng, n_mels=7, spec=ODD_SPEC, input_zp=9)
    vnm = save(model, tmp_path / "p.vnm", frontend=FRONTEND)
    frames = rng.integers(0, 256, size=(240, 7), dtype=np.uint8)
    (tmp_path / "f.bin").write_bytes(frames.tobytes())
    r1, r2, r3 = json.loads(
        run_mpy(
            PATTERN_CODE.format(
                frames=str(tmp_path / "f.bin"), n=7, path=str(vnm), frontend=FRONTEND
            )
        )
        .strip()
        .splitlines()[-1]
    )
    want = model.stream(frames).tolist()
    assert r1 == want and r2 == want and r3 == want
    # the host twin is chunk invariant as well: a prefix gives the prefix of the outputs
    assert model.stream(frames[:100]).tolist() == want[: 100 // model.stride]


def test_compiled_mpy_gives_the_same_bytes(tmp_path):
    """mpy-cross for the ESP32-S3 accepts the firmware; the x64 .mpy runs bit-exact."""
    pkg = tmp_path / "fw" / "voicenode"
    (pkg / "nn").mkdir(parents=True)
    shutil.copy(FIRMWARE_DIR / "voicenode" / "__init__.py", pkg / "__init__.py")
    shutil.copytree(FIRMWARE_DIR / "voicenode" / "dsp", pkg / "dsp")
    sources = [
        FIRMWARE_DIR / "voicenode" / "nn" / n for n in ("__init__.py", "kernels.py", "model.py")
    ]
    sources += [FIRMWARE_DIR / "voicenode" / n for n in ("wake.py", "crc.py")]
    for src in sources:
        rel = src.relative_to(FIRMWARE_DIR / "voicenode")
        for arch in ("xtensawin", "x64"):
            out = (
                (pkg / rel).with_suffix(".mpy")
                if arch == "x64"
                else tmp_path / f"{src.stem}.{arch}.mpy"
            )
            res = subprocess.run(
                ["mpy-cross", f"-march={arch}", "-o", str(out), str(src)],
                capture_output=True,
                text=True,
            )
            assert res.returncode == 0, res.stderr
            assert out.stat().st_size > 0
    assert not list((pkg / "nn").glob("*.py"))  # only the .mpy can be imported
    rng = np.random.default_rng(31)
    model = nn.random_model(rng, n_mels=7, spec=ODD_SPEC, input_zp=200)
    vnm = save(model, tmp_path / "c.vnm", frontend=FRONTEND)
    frames = rng.integers(0, 256, size=(200, 7), dtype=np.uint8)
    got = firmware_stream(vnm, frames, tmp_path, frontend=FRONTEND, path=tmp_path / "fw")
    np.testing.assert_array_equal(got, model.stream(frames))


SHIPPED_CODE = """
import gc, micropython
from voicenode.wake import Detector
# The first load also interns the sidecar's keys (qstrs stay on the heap, and whether they
# need a new qstr chunk depends on the strings before them, paths included); the second
# load is what a Detector itself takes, the sidecar's estimate.
gc.collect()
a0 = gc.mem_alloc()
det = Detector([{path!r}])
gc.collect()
first = gc.mem_alloc() - a0
det = None
gc.collect()
a0 = gc.mem_alloc()
det = Detector([{path!r}])
gc.collect()
used = gc.mem_alloc() - a0
m = det.models[0]
x = open({frames!r}, 'rb').read()
frames = [bytearray(x[40 * i:40 * i + 40]) for i in range(len(x) // 40)]
out = bytearray(len(frames))


def run(n):
    k = 0
    micropython.heap_lock()
    try:
        for i in range(n):
            p = m.step(frames[i])
            if p >= 0:
                out[k] = p
                k += 1
    finally:
        micropython.heap_unlock()
    return k


k = run(len(frames))
print(first, used, k, bytes(out[:k]).hex())
"""


@pytest.mark.parametrize("name", ["hey_jarvis", "alexa"])
def test_shipped_models_fit_48k_and_run_bit_exact(name, tmp_path):
    """The shipped wake models: heap for models and state <= 48 KB, the sidecar's estimate
    covers what the loader takes, and the chip equals the twin on speech."""
    from voicenode_tools import REPO_ROOT
    from voicenode_tools.audio import load_16k
    from voicenode_tools.reference import frontend

    vnm = REPO_ROOT / "models" / f"{name}.vnm"
    model = nn.QuantModel.load(vnm)  # checks the file against its sidecar's CRC
    assert model.sidecar["heap_bytes"] == model.heap_bytes() <= 48 * 1024
    feats = frontend.features(load_16k(REPO_ROOT / "tests" / "data" / "speech_16k.wav"))
    (tmp_path / "f.bin").write_bytes(feats.tobytes())
    code = SHIPPED_CODE.format(path=str(vnm), frames=str(tmp_path / "f.bin"))
    first, used, k, probs = run_mpy(code).split()
    assert int(used) <= model.heap_bytes()
    assert int(first) <= 48 * 1024  # the target, qstrs of the first load included
    want = model.stream(feats)
    assert int(k) == len(want) == len(feats) // model.stride
    np.testing.assert_array_equal(np.frombuffer(bytes.fromhex(probs), np.uint8), want)
