"""The host model API: file format, checks, fixed-point arithmetic, streaming semantics."""

import json
import struct
import zlib

import numpy as np
import pytest

from voicenode_tools.reference import nn

SMALL = [
    ("conv", 6, 3, 2, 2, "relu"),
    ("dwconv", 0, 4, 1, 3, "none"),
    ("dense", 5, 1, 3, 1, "relu"),
    ("conv", 1, 3, 1, 1, "sigmoid"),
]
SIDE = dict(
    name="hey_node",
    wake_phrase="hey node",
    cutoff=0.7,
    window=5,
    cooloff=12,
    frontend={"N_MELS": 7},
    version="1.2.0",
    seed=42,
    recipe={"epochs": 3},
    scores={"frr": 0.05},
)


def small_model(seed=0, zp=0):
    return nn.random_model(np.random.default_rng(seed), n_mels=7, spec=SMALL, input_zp=zp)


def test_save_load_round_trip_and_layout(tmp_path):
    model = small_model(1, zp=17)
    side = model.save(tmp_path / "hey_node.vnm", SIDE)
    data = (tmp_path / "hey_node.vnm").read_bytes()
    magic, version, n_layers, n_in, zp, _, body_len = struct.unpack_from("<4sHHHBBI", data)
    assert (magic, version, n_layers, n_in, zp) == (b"VNNM", 1, 4, 7, 17)
    assert len(data) == 16 + body_len + 4
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4]) == side["model_crc32"]
    on_disk = json.loads((tmp_path / "hey_node.json").read_text())
    assert on_disk == side
    assert on_disk["cutoff_u8"] == round(0.7 * 255) and on_disk["stride"] == 6
    assert on_disk["input"] == {"scale": pytest.approx(1 / 255), "zero_point": 17, "n_mels": 7}
    assert on_disk["seed"] == 42 and on_disk["scores"] == {"frr": 0.05}
    again = nn.QuantModel.load(tmp_path / "hey_node.vnm")
    assert again.to_bytes() == data
    x = np.random.default_rng(2).integers(0, 256, (300, 7), dtype=np.uint8)
    np.testing.assert_array_equal(again.stream(x), model.stream(x))


def corrupt_cases():
    def truncate(d):
        return d[:-10]

    def flip(d):
        b = bytearray(d)
        b[len(b) // 2] ^= 0x01
        return bytes(b)

    def magic(d):
        b = b"XXXX" + d[4:-4]
        return b + struct.pack("<I", zlib.crc32(b))

    def version(d):
        b = d[:4] + struct.pack("<H", 9) + d[6:-4]
        return b + struct.pack("<I", zlib.crc32(b))

    return [(truncate, "truncated"), (flip, "checksum"), (magic, "magic"), (version, "version 9")]


@pytest.mark.parametrize(
    "corrupt,message", corrupt_cases(), ids=lambda c: getattr(c, "__name__", c)
)
def test_corrupt_files_are_refused_with_a_clear_message(corrupt, message, tmp_path):
    path = tmp_path / "m.vnm"
    small_model().save(path, SIDE)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(nn.ModelFormatError, match=message) as e:
        nn.QuantModel.load(path)
    assert "m.vnm" in str(e.value)


def test_sidecar_for_another_model_or_front_end_is_refused(tmp_path):
    a, b = tmp_path / "a.vnm", tmp_path / "b.vnm"
    small_model(1).save(a, SIDE)
    small_model(2).save(b, SIDE)
    (tmp_path / "a.json").write_text((tmp_path / "b.json").read_text())
    with pytest.raises(nn.ModelFormatError, match="another model"):
        nn.QuantModel.load(a)
    model = nn.QuantModel.load(b)
    nn.check_sidecar(model.sidecar, model, frontend={"N_MELS": 7})
    with pytest.raises(nn.ModelFormatError, match="N_MELS: model trained with 7, firmware has 40"):
        nn.check_sidecar(model.sidecar, model, frontend={"N_MELS": 40})
    with pytest.raises(nn.ModelFormatError, match="STEP not recorded"):
        nn.check_sidecar(model.sidecar, model, frontend={"N_MELS": 7, "STEP": 160})


def test_save_refuses_incomplete_sidecars(tmp_path):
    with pytest.raises(ValueError, match="cutoff"):
        small_model().save(tmp_path / "m.vnm", {k: v for k, v in SIDE.items() if k != "cutoff"})
    with pytest.raises(ValueError, match="probability"):
        small_model().save(tmp_path / "m.vnm", dict(SIDE, cutoff=200))


def test_frontend_params_are_the_firmware_file():
    from voicenode_tools.reference import params

    fp = nn.frontend_params()
    assert fp["N_MELS"] == params.N_MELS and fp["FEATURES_VERSION"] == params.FEATURES_VERSION
    assert set(fp) == set(params.PARAMS)


def test_quantize_multiplier_is_accurate_and_32_bit_safe():
    rng = np.random.default_rng(3)
    reals = np.concatenate(
        [10 ** rng.uniform(-9, np.log10(0.4999), 2000), [0.4999, 2.0**-16, 1e-15]]
    )
    for r in reals:
        m, s = nn.quantize_multiplier(float(r))
        assert 0 <= m < 1 << 15 and 0 <= s <= 30
        approx = m / 2.0 ** (16 + s)
        if r > 2.0**-31:
            assert abs(approx - r) <= r * 2.0**-14
    with pytest.raises(ValueError, match="0.5"):
        nn.quantize_multiplier(0.5)


def reference_requant(acc, m, s, zp, lo):
    """The documented formula with Python ints, checking every intermediate fits int32."""
    hi, low = acc >> 16, acc & 0xFFFF
    parts = [hi * m, low * m, (low * m) >> 16]
    t = hi * m + ((low * m) >> 16)
    parts += [t, t + ((1 << s) >> 1)]
    assert all(-(1 << 31) <= p < 1 << 31 for p in parts)
    return min(max(zp + ((t + ((1 << s) >> 1)) >> s), lo), 255)


def test_requantize_matches_the_documented_formula_and_rounds():
    rng = np.random.default_rng(4)
    acc = np.concatenate(
        [rng.integers(-(1 << 31), 1 << 31, 3000), [-(1 << 31), (1 << 31) - 1, 0, -1]]
    )
    for real in (0.49, 1e-3, 3.7e-6, 1e-9):
        m, s = nn.quantize_multiplier(real)
        got = nn.requantize(acc, m, s, 100, 0)
        want = [reference_requant(int(a), m, s, 100, 0) for a in acc]
        assert got.tolist() == want
        # it is round(acc * real) to within the multiplier's precision
        exact = np.clip(100 + np.round(acc * (m / 2.0 ** (16 + s))), 0, 255)
        assert np.max(np.abs(got - exact)) <= 1


def brute_force_int_stream(model, x):
    """Per-step Python-int implementation of the streaming semantics in MODEL_FORMAT.md."""
    h = [list(map(int, row)) for row in x]
    for L in model.layers:
        out = []
        for e in range(L.stride - 1, len(h), L.stride):
            row = []
            for o in range(L.out_ch):
                acc = int(L.bias[o])
                for j in range(L.k):
                    n = e - (L.k - 1 - j) * L.dilation
                    if L.kind == nn.KIND_DWCONV:
                        xv = h[n][o] if n >= 0 else L.in_zp
                        acc += int(L.weights[o, j]) * (xv - L.in_zp)
                    else:
                        for c in range(L.in_ch):
                            xv = h[n][c] if n >= 0 else L.in_zp
                            acc += int(L.weights[o, j, c]) * (xv - L.in_zp)
                lo = L.out_zp if L.act == nn.ACT_RELU else 0
                v = reference_requant(acc, int(L.mult[o]), int(L.shift[o]), L.out_zp, lo)
                row.append(int(L.table[v]) if L.table is not None else v)
            out.append(row)
        h = out
    return np.array([r[0] for r in h], np.uint8)


def test_vectorised_stream_equals_the_per_step_definition():
    model = small_model(5, zp=99)
    x = np.random.default_rng(6).integers(0, 256, (121, 7), dtype=np.uint8)
    want = brute_force_int_stream(model, x)
    assert len(want) == 121 // 6
    np.testing.assert_array_equal(model.stream(x), want)


def test_torch_recipe_matches_float_stream():
    import torch

    rng = np.random.default_rng(8)
    layers, in_ch = [], 7
    for kind, out_ch, k, s, d, act in SMALL[:-1] + [("conv", 1, 3, 2, 1, "sigmoid")]:
        if kind == "dwconv":
            out_ch = in_ch
            w = rng.normal(size=(out_ch, 1, k))
        elif kind == "conv":
            w = rng.normal(size=(out_ch, in_ch, k))
        else:
            w = rng.normal(size=(out_ch, in_ch))
        layers.append(nn.FloatLayer(kind, w, rng.normal(size=out_ch), s, d, act))
        in_ch = out_ch
    x = rng.normal(size=(101, 7))
    h = torch.tensor(x.T[None])  # (batch, channels, time)
    for L in layers:
        w = torch.tensor(np.asarray(L.weights, np.float64))
        if L.kind == "dense":
            w = w[:, :, None]
        p = (L.k - 1) * L.dilation - (L.stride - 1)
        h = torch.nn.functional.pad(h, (p, 0)) if p >= 0 else h[:, :, -p:]
        h = torch.nn.functional.conv1d(
            h,
            w,
            torch.tensor(L.b),
            stride=L.stride,
            dilation=L.dilation,
            groups=L.in_ch if L.kind == "dwconv" else 1,
        )
        if L.activation == "relu":
            h = torch.relu(h)
    probs = torch.sigmoid(h[0, 0]).numpy()
    np.testing.assert_allclose(probs, nn.float_stream(layers, x), rtol=1e-9, atol=1e-12)


def test_quantized_model_follows_the_float_model():
    rng = np.random.default_rng(9)
    layers, in_ch = [], 40
    for kind, out_ch, k, s, d, act in nn.BENCH_SPEC:
        if kind == "dwconv":
            out_ch = in_ch
            w = rng.normal(size=(out_ch, 1, k)) / np.sqrt(k)
        elif kind == "conv":
            w = rng.normal(size=(out_ch, in_ch, k)) / np.sqrt(k * in_ch)
        else:
            w = rng.normal(size=(out_ch, in_ch)) / np.sqrt(in_ch)
        if act == "sigmoid":
            w = w * 60
        layers.append(nn.FloatLayer(kind, w, rng.normal(size=out_ch) * 0.1, s, d, act))
        in_ch = out_ch
    calib = rng.integers(0, 256, (600, 40), dtype=np.uint8)
    model = nn.quantize(layers, calib, input_scale=1 / 255, input_zp=0)
    x = rng.integers(0, 256, (900, 40), dtype=np.uint8)
    pf = nn.float_stream(layers, x / 255.0)
    pq = model.stream(x) / 255.0
    assert pf.std() > 0.05  # a spread of probabilities, not a constant
    assert np.mean(np.abs(pf - pq)) < 0.02
    assert np.corrcoef(pf, pq)[0, 1] > 0.98
    assert model.macs_per_step == 22432 and model.stride == 3


def test_quantize_widens_the_output_range_instead_of_overflowing():
    # a layer whose calibrated output range is tiny compared with one weight times one input
    w = np.zeros((2, 3, 1))
    w[0, 0, 0] = 1.0
    w[1, 1, 0] = 1e-3
    layers = [
        nn.FloatLayer("conv", w, None, activation="relu"),
        nn.FloatLayer("dense", np.ones((1, 2)), None, activation="sigmoid"),
    ]
    calib = np.zeros((50, 3), np.uint8)
    calib[:, 1] = 255
    model = nn.quantize(layers, calib)
    assert all(int(m) < 1 << 15 for m in model.layers[0].mult)
    model.check()
