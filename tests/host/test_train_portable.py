"""Portable training (recipe ``train.portable``): the same network bytes on other CPUs.

The proof runs one small training natively and under ``qemu-x86_64`` emulating two other
CPUs (an SSE4.2 Intel without AVX, an AMD EPYC), and compares the int8 network's bytes.
"""

import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from voicenode_tools.train import portable, recipe, trainer  # noqa: E402

#: One small training in a fresh process: 30 steps on made-up features, then the int8
#: network's bytes (md5) and the float network's, as the build quantises them.
FIT = r"""
import hashlib, sys
import numpy as np
from voicenode_tools.train import recipe, trainer, tracks
rec = recipe.make("hey jarvis", seed=1,
                  train={"steps": 30, "batch": 8, "chunk": 150, "portable": sys.argv[1] == "1"})
rng = np.random.default_rng(5)
tr = []
for _ in range(4):
    feats = rng.integers(0, 256, (400, 40)).astype(np.uint8)
    labels = np.zeros(400, np.int8)
    labels[100:130] = 1
    labels[300:320] = -1
    tr.append(tracks.Track(feats, labels, []))
net = trainer.fit(rec, tr, threads=2)
q, layers = trainer.quantize(net, tr, exact_root=sys.argv[1] == "1")
fl = b"".join(np.asarray(x.w).tobytes() + np.asarray(x.b).tobytes() for x in layers)
print(hashlib.md5(q.to_bytes()).hexdigest(), hashlib.md5(fl).hexdigest())
"""

#: The same for the command network: CTC, gradient clipping, a logits head.
FIT_COMMANDS = r"""
import hashlib, sys
import numpy as np
from voicenode_tools.train import commands as tc
rec = tc.make_recipe(1, True, {"train": {"epochs": 3, "batch": 8, "rows": "all",
                                         "portable": sys.argv[1] == "1"}})
rng = np.random.default_rng(6)
x = rng.integers(0, 256, (24, 90, 40)).astype(np.uint8)
y = [list(rng.integers(1, 6, rng.integers(1, 4))) for _ in range(24)]
net = tc.fit(x, y, 6, rec, lambda *a: None, seed=1, threads=2)
q = tc.quantize(net, x, exact_root=sys.argv[1] == "1")
print(hashlib.md5(q.to_bytes()).hexdigest())
"""


def _start(portable_recipe: bool, cpu: str | None = None, script: str = FIT) -> subprocess.Popen:
    cmd = [sys.executable, "-c", script, "1" if portable_recipe else "0"]
    if cpu:
        cmd = [shutil.which("qemu-x86_64"), "-cpu", cpu, *cmd]
    env = {**os.environ, **portable.ENV}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _bytes(p: subprocess.Popen) -> list[str]:
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-2000:]
    return out.split()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 CPUs are what it pins")
def test_a_portable_training_makes_the_same_bytes_on_other_cpus():
    """The wake-word network on two other CPUs, the command network on one."""
    assert shutil.which("qemu-x86_64"), "qemu-user is part of the set-up (Makefile)"
    # The emulated runs take a minute each: two at a time.
    runs = [_start(True, "Nehalem"), _start(True, "EPYC")]
    native = _bytes(_start(True))
    assert _bytes(runs[0]) == native
    assert _bytes(runs[1]) == native
    commands = _start(True, "Nehalem", FIT_COMMANDS)
    assert _bytes(commands) == _bytes(_start(True, script=FIT_COMMANDS))
    # The control: without the recipe's setting (torch's AdamW, whose torch.sqrt is not
    # correctly rounded) the environment alone does not make the CPUs agree.
    runs = [_start(False, "Nehalem"), _start(False, "Nehalem", FIT_COMMANDS)]
    assert _bytes(runs[0]) != _bytes(_start(False))
    assert _bytes(runs[1]) != _bytes(_start(False, script=FIT_COMMANDS))


def test_the_portable_adam_is_torchs_adamw_under_the_one_cycle():
    def run(make_opt):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv1d(8, 16, 3), torch.nn.ReLU(), torch.nn.Conv1d(16, 1, 1)
        )
        opt = make_opt(net.parameters())
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.003, total_steps=40, pct_start=0.1
        )
        g = torch.Generator().manual_seed(1)
        for _ in range(40):
            x = torch.randn(4, 8, 20, generator=g)
            loss = net(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()]), opt

    ref, _ = run(lambda p: torch.optim.AdamW(p, lr=0.003, weight_decay=1e-3))
    got, opt = run(lambda p: portable.AdamW(p, lr=0.003, weight_decay=1e-3))
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert opt.param_groups[0]["betas"][0] != 0.9  # the schedule cycled its momentum too


def test_a_portable_recipe_will_not_train_without_its_environment(monkeypatch):
    for k in portable.ENV:
        monkeypatch.delenv(k, raising=False)
    rec = recipe.make("hey jarvis", train={"portable": True})
    with pytest.raises(RuntimeError, match="ATEN_CPU_CAPABILITY=default"):
        trainer.fit(rec, [])
    with pytest.raises(ValueError, match="train.portable must be true or false"):
        portable.wanted(recipe.make("hey jarvis", train={"portable": "yes"}))
    assert not portable.wanted(recipe.make("hey jarvis"))


def test_reexec_starts_the_command_again_with_the_portable_environment():
    probe = (
        "import os; from voicenode_tools.train import portable; portable.reexec(); "
        "print(portable.active(), os.environ['MKL_CBWR'], os.environ['ATEN_CPU_CAPABILITY'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in portable.ENV}
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert r.stdout.split() == ["True", "COMPATIBLE", "default"], r.stderr
