"""The seam with training: a torch `StreamNet`, exported and quantised through the host API,
runs on the chip bit-exact with the host twin, and the float export matches torch."""

import json
import subprocess

import numpy as np

from voicenode_tools import FIRMWARE_DIR
from voicenode_tools.reference import nn


def test_torch_streamnet_exports_quantises_and_runs_on_the_chip(tmp_path):
    import torch

    from voicenode_tools.train.model import StreamNet, to_float_layers

    torch.manual_seed(3)
    net = StreamNet(40)
    with torch.no_grad():  # give the BatchNorms non-trivial statistics
        for layer in net.layers:
            if layer.bn is not None:
                layer.bn.running_mean.uniform_(-0.2, 0.2)
                layer.bn.running_var.uniform_(0.5, 2.0)
                layer.bn.weight.uniform_(0.5, 1.5)
    net.eval()
    rng = np.random.default_rng(4)
    feats = rng.integers(0, 256, size=(600, 40), dtype=np.uint8)
    x = feats.astype(np.float64) / 255.0
    with torch.no_grad():
        logits = net(torch.tensor(x[None], dtype=torch.float32))[0].double().numpy()
    layers = to_float_layers(net)
    np.testing.assert_allclose(
        nn.float_stream(layers, x, logits=True), logits, rtol=1e-4, atol=1e-4
    )

    model = nn.quantize(layers, feats[:300], input_scale=1 / 255, input_zp=0)
    vnm = tmp_path / "seam.vnm"
    model.save(
        vnm,
        dict(
            name="seam",
            wake_phrase="seam",
            cutoff=0.5,
            window=3,
            cooloff=5,
            frontend=nn.frontend_params(),
        ),
    )
    (tmp_path / "f.bin").write_bytes(feats.tobytes())
    code = (
        f"import sys, json\nsys.path.insert(0, {str(FIRMWARE_DIR)!r})\n"
        "from voicenode.nn import model\n"
        f"m = model.load({str(vnm)!r})\nx = open({str(tmp_path / 'f.bin')!r}, 'rb').read()\n"
        "out = []\nfr = bytearray(40)\n"
        "for i in range(len(x) // 40):\n    fr[:] = x[40 * i:40 * i + 40]\n    p = m.step(fr)\n"
        "    if p >= 0:\n        out.append(p)\nprint(json.dumps(out))\n"
    )
    res = subprocess.run(
        ["micropython", "-X", "heapsize=512k", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    got = json.loads(res.stdout.strip().splitlines()[-1])
    want = model.stream(feats)
    assert got == want.tolist() and len(got) == 600 // net.stride
    # and the int8 model follows the float one
    pf = 1 / (1 + np.exp(-logits))
    assert np.mean(np.abs(pf - want / 255.0)) < 0.05
