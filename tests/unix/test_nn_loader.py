"""The firmware loader refuses every kind of bad model with a message naming file and problem.

(Truncated files, flipped bytes, wrong magic, mismatched front-end parameters and missing
sidecars are also covered through the detector's fallback in test_wake.py.)
"""

import json
import struct
import subprocess
import zlib

import numpy as np
import pytest

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import nn

SPEC = [
    ("conv", 6, 3, 2, 2, "relu"),
    ("dense", 5, 1, 1, 1, "relu"),
    ("conv", 1, 3, 1, 1, "sigmoid"),
]


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


def refit_crc(vnm):
    """Recompute the file's CRC and the sidecar's copy of it (so that later checks are reached)."""
    data = vnm.read_bytes()[:-4]
    crc = zlib.crc32(data)
    vnm.write_bytes(data + struct.pack("<I", crc))
    side_path = vnm.with_suffix(".json")
    side = json.loads(side_path.read_text())
    side["model_crc32"] = crc
    side_path.write_text(json.dumps(side))


def edit_sidecar(vnm, **changes):
    side_path = vnm.with_suffix(".json")
    side = json.loads(side_path.read_text())
    for k, v in changes.items():
        if isinstance(v, dict):
            side[k].update(v)
        else:
            side[k] = v
    side_path.write_text(json.dumps(side))


def patch(vnm, offset, fmt, value):
    data = bytearray(vnm.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    vnm.write_bytes(bytes(data))
    refit_crc(vnm)


def other_sidecar(vnm, tmp):
    other = tmp / "other.vnm"
    nn.random_model(np.random.default_rng(9), n_mels=40, spec=SPEC).save(
        other,
        dict(
            name="o",
            wake_phrase="o",
            cutoff=0.5,
            window=3,
            cooloff=3,
            frontend=nn.frontend_params(),
        ),
    )
    vnm.with_suffix(".json").write_text(other.with_suffix(".json").read_text())


W0 = 6 * 3 * 40  # weights of layer 0
CASES = {
    "version": (lambda p, t: patch(p, 4, "<H", 9), "format version 9, this firmware reads 1"),
    "chain": (
        lambda p, t: patch(p, 16 + 12 + W0 + 6 * 8 + 6, "<H", 4),
        "layer 1: 4 inputs, the previous layer gives 6",
    ),
    "kind": (lambda p, t: patch(p, 16, "<B", 7), "layer 0: unknown kind 7"),
    "bias": (
        lambda p, t: patch(p, 16 + 12 + W0, "<i", 1 << 30),
        "layer 0: channel 0 bias too large",
    ),
    "shift": (
        lambda p, t: patch(p, 16 + 12 + W0 + 8 * 2 + 6, "<B", 31),
        "layer 0: channel 2 requantisation out of range",
    ),
    "other_sidecar": (other_sidecar, "sidecar was written for another model file"),
    "n_mels": (lambda p, t: edit_sidecar(p, input={"n_mels": 8}), "do not match the model"),
    "heap": (lambda p, t: edit_sidecar(p, heap_bytes=10**9), "needs 1000000000 bytes of heap"),
    "window": (lambda p, t: edit_sidecar(p, window=0), "window must be 1..255"),
    "json": (
        lambda p, t: p.with_suffix(".json").write_text("{not json"),
        "sidecar is not valid JSON",
    ),
    "missing": (lambda p, t: p.unlink(), "cannot open"),
    "short": (lambda p, t: p.write_bytes(b"VNNM\x01"), "too short for a model"),
    "bands": (lambda p, t: narrow(p), "the model reads 7 bands, the front end gives 40"),
    "types": (lambda p, t: edit_sidecar(p, input=5), "sidecar 'input' has the wrong type"),
}


def narrow(vnm):
    """A valid model that reads 7 bands, its sidecar claiming this firmware's front end."""
    nn.random_model(np.random.default_rng(2), n_mels=7, spec=SPEC).save(
        vnm,
        dict(
            name=vnm.stem,
            wake_phrase="x",
            cutoff=0.5,
            window=3,
            cooloff=3,
            frontend=nn.frontend_params(),
        ),
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loader")
    paths = {}
    for name, (damage, _) in CASES.items():
        vnm = tmp / f"{name}.vnm"
        nn.random_model(np.random.default_rng(1), n_mels=40, spec=SPEC).save(
            vnm,
            dict(
                name=name,
                wake_phrase=name,
                cutoff=0.5,
                window=3,
                cooloff=3,
                frontend=nn.frontend_params(),
            ),
        )
        damage(vnm, tmp)
        paths[name] = str(vnm)
    code = (
        "from voicenode.nn import model\nimport json\nout = {}\n"
        f"for name, path in {paths!r}.items():\n"
        "    try:\n        model.load(path)\n        out[name] = 'loaded'\n"
        "    except model.ModelError as e:\n        out[name] = str(e)\n"
        "print(json.dumps(out))\n"
    )
    return paths, json.loads(run_mpy(code)[-1])


@pytest.mark.parametrize("name", list(CASES))
def test_bad_model_is_refused_with_a_clear_message(name, results):
    paths, got = results
    message = got[name]
    assert CASES[name][1] in message
    assert name in message  # the file is named


def test_host_twin_refuses_the_same_binary_damage(results):
    paths, _ = results
    for name in ("version", "chain", "kind", "bias", "shift", "short"):
        with pytest.raises(nn.ModelFormatError):
            nn.QuantModel.load(paths[name])
    with pytest.raises(nn.ModelFormatError, match="another model"):
        nn.QuantModel.load(paths["other_sidecar"])


def test_good_model_loads_and_reports_its_sidecar(tmp_path):
    vnm = tmp_path / "hey_node.vnm"
    nn.random_model(np.random.default_rng(1), n_mels=40, spec=SPEC).save(
        vnm,
        dict(
            name="hey_node",
            wake_phrase="hey node",
            cutoff=0.5,
            window=3,
            cooloff=4,
            frontend=nn.frontend_params(),
        ),
    )
    code = (
        f"from voicenode.nn import model\nm = model.load({str(vnm)!r})\n"
        "print(m.name, '|', m.word, '|', m.cutoff_u8, m.window, m.cooloff, m.stride)\n"
    )
    assert run_mpy(code)[-1] == "hey_node | hey node | 128 3 4 2"


SHARE_CODE = """
from voicenode.nn import model
data = open({frames!r}, 'rb').read()
a = model.prepare({a!r})
b = model.prepare({b!r})
blocks = model.share([[a], [b]])
print(sum(len(x) for x in blocks), sum(a.sizes), sum(b.sizes))
for m in (a, b, a, b):  # turns: each reads its weights back over the other's
    m.fill()
    out = []
    for i in range(len(data) // 40):
        p = m.step(data[i * 40:i * 40 + 40])
        if p >= 0:
            out.append(p)
    print(bytes(out).hex())
"""


def test_models_taking_turns_in_shared_memory_match_the_twin(tmp_path):
    """Two models bound to the same blocks (`model.share`) take turns, each `fill` reading
    its weights back over the other's: every turn gives the twin's probabilities exactly, and
    the blocks take less than the two models apart."""
    rng = np.random.default_rng(3)
    spec_b = [("conv", 10, 3, 3, 1, "relu"), ("dwconv", 0, 5, 1, 1, "relu"),
              ("dense", 12, 1, 1, 1, "relu"), ("dense", 1, 1, 1, 1, "sigmoid")]  # fmt: skip
    paths = []
    models = []
    for name, spec in (("a", SPEC), ("b", spec_b)):
        m = nn.random_model(rng, spec=spec)
        m.save(tmp_path / f"{name}.vnm", {"name": name, "wake_phrase": name, "cutoff": 0.5,
                                          "window": 3, "cooloff": 0,
                                          "frontend": nn.frontend_params()})  # fmt: skip
        paths.append(str(tmp_path / f"{name}.vnm"))
        models.append(m)
    feats = rng.integers(0, 256, (90, 40), dtype=np.uint8)
    (tmp_path / "f.bin").write_bytes(feats.tobytes())
    lines = run_mpy(SHARE_CODE.format(a=paths[0], b=paths[1], frames=str(tmp_path / "f.bin")))
    shared, size_a, size_b = map(int, lines[0].split())
    assert max(size_a, size_b) <= shared < size_a + size_b
    want = [bytes(m.stream(feats).astype(np.uint8)).hex() for m in models]
    assert lines[1:] == want * 2
