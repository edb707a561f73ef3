"""Mutated model files: the chip's loader either refuses them with ModelError or runs them
bit-exact with the host twin; nothing else (no other exception, no crash, no stray reads)."""

import json
import struct
import subprocess
import zlib

import numpy as np

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import nn

SPEC = [
    ("conv", 6, 3, 2, 2, "relu"),
    ("dwconv", 0, 3, 1, 2, "none"),
    ("dense", 5, 1, 1, 1, "relu"),
    ("conv", 1, 2, 1, 1, "sigmoid"),
]

CODE = """
import sys, json
sys.path.insert(0, {fw!r})
from voicenode.nn import model
x = open({frames!r}, 'rb').read()
fr = bytearray(40)
out = {{}}
for path in {paths!r}:
    try:
        m = model.load(path)
    except model.ModelError as e:
        out[path] = ['refused', str(e)]
        continue
    probs = []
    for i in range(len(x) // 40):
        fr[:] = x[40 * i:40 * i + 40]
        p = m.step(fr)
        if p >= 0:
            probs.append(p)
    out[path] = ['ran', probs]
print(json.dumps(out))
"""


def test_mutated_models_are_refused_or_run_exactly(tmp_path):
    rng = np.random.default_rng(77)
    base = tmp_path / "base.vnm"
    model = nn.random_model(rng, n_mels=40, spec=SPEC, input_zp=3)
    model.save(
        base,
        dict(
            name="base",
            wake_phrase="b",
            cutoff=0.5,
            window=3,
            cooloff=3,
            frontend=nn.frontend_params(),
        ),
    )
    data = base.read_bytes()[:-4]
    side = json.loads(base.with_suffix(".json").read_text())
    # the header and layer-head bytes are where a mutation reaches the loader's logic
    heads = list(range(4, 16))
    pos = 16
    for L in model.layers:
        heads += range(pos, pos + 12)
        pos += 12 + L.weights.size + 8 * L.out_ch + (256 if L.table is not None else 0)
    paths = []
    for i in range(160):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 3))):
            where = int(rng.choice(heads)) if rng.random() < 0.8 else int(rng.integers(16, len(b)))
            b[where] = (
                int(rng.integers(0, 256))
                if rng.random() < 0.5
                else b[where] ^ (1 << int(rng.integers(0, 8)))
            )
        crc = zlib.crc32(bytes(b))
        path = tmp_path / f"m{i}.vnm"
        path.write_bytes(bytes(b) + struct.pack("<I", crc))
        s = dict(side, model_crc32=crc, name=f"m{i}")
        s["input"] = dict(side["input"], zero_point=b[10], n_mels=struct.unpack_from("<H", b, 8)[0])
        path.with_suffix(".json").write_text(json.dumps(s))
        paths.append(str(path))
    frames = rng.integers(0, 256, size=(60, 40), dtype=np.uint8)
    (tmp_path / "f.bin").write_bytes(frames.tobytes())
    res = subprocess.run(
        [
            "micropython",
            "-X",
            "heapsize=1m",
            "-c",
            CODE.format(fw=str(FIRMWARE_DIR), frames=str(tmp_path / "f.bin"), paths=paths),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ran = refused = 0
    for path in paths:
        verdict, value = got[path]
        try:
            host = nn.QuantModel.load(path)
        except nn.ModelFormatError:
            host = None
        if verdict == "ran":
            ran += 1
            assert host is not None, f"{path}: the chip ran a model the host refuses"
            assert value == host.stream(frames).tolist(), path
        else:
            refused += 1
            assert path.split("/")[-1][:-4] + "." in value  # names m<i>.vnm or m<i>.json
    assert ran >= 10 and refused >= 50  # both outcomes were exercised
