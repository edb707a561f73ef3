"""Portable training: the same network bytes on any x86-64 CPU (recipe ``train.portable``).

A training's floating point normally depends on the CPU it runs on, so a shipped model can
be rebuilt byte for byte only on a machine like the one that made it (docs/TRAINING.md,
"Shipped models"). Measured here (28 Nov; a Xeon with AVX512, and the same programs under
``qemu-x86_64 -cpu`` Nehalem, Haswell and EPYC), what varies with the CPU and what pins it:

- PyTorch's kernels are chosen for the vector unit: ``ATEN_CPU_CAPABILITY=default``;
- oneDNN's convolutions are generated for it: ``ONEDNN_MAX_CPU_ISA=SSE41``;
- MKL's code paths: ``MKL_CBWR=COMPATIBLE``;
- glibc's libm picks FMA variants of exp, pow, cos (Python's ``math``, the one-cycle
  schedule): ``GLIBC_TUNABLES`` masks AVX and FMA from that choice;
- ``torch.sqrt`` is not correctly rounded and differs between CPUs even with all of the
  above (Adam's denominator, batch-norm folding, the command trainer's gradient norm):
  `AdamW`, `bn_scale` and `clip_grad_norm_` take numpy's square root, which is IEEE-exact
  on every CPU;
- threads split the reductions: one thread.

These settings must be in the environment before PyTorch and glibc start, so a command
that trains a portable recipe starts itself again with them (`reexec`). The cost: about
15 % more training time on a short run.
"""

from __future__ import annotations

import os
import sys

import numpy as np

ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-FMA4,-AVX512F",
}


def wanted(rec: dict) -> bool:
    """Does the recipe ask for a portable training (``train.portable``)?"""
    flag = rec.get("train", {}).get("portable", False)
    if not isinstance(flag, bool):
        raise ValueError(f"train.portable must be true or false, not {flag!r}")
    return flag


def prepare(rec: dict, threads: int) -> tuple[bool, int]:
    """A trainer's start: whether the recipe is portable (then `check`ed: a RuntimeError when
    this process lacks `ENV`) and the threads to train with (one for a portable recipe)."""
    if not wanted(rec):
        return False, threads
    check()
    return True, 1


def active() -> bool:
    """Is this process running with `ENV`?"""
    return all(os.environ.get(k) == v for k, v in ENV.items())


def reexec() -> None:
    """Start this command again with `ENV` (does not return), unless it already has it."""
    if active():
        return
    env = {**os.environ, **ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def check() -> None:
    """A RuntimeError unless PyTorch runs as `ENV` asks (it read the environment too late)."""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    if not active() or cap != "DEFAULT":
        raise RuntimeError(
            "a portable training needs its environment set before PyTorch starts "
            f"({' '.join(f'{k}={v}' for k, v in ENV.items())}); PyTorch runs with {cap}"
        )


def bn_scale(weight, running_var, eps: float) -> np.ndarray:
    """Batch norm's scale ``weight / sqrt(var + eps)`` in float64, with numpy's exact root."""
    var = running_var.detach().double().numpy() + eps
    return weight.detach().double().numpy() / np.sqrt(var)


def clip_grad_norm_(params, max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` with the norm summed and rooted in float64 by numpy."""
    grads = [p.grad for p in params if p.grad is not None]
    total = float(
        np.sqrt(sum(float(np.sum(np.square(g.numpy(), dtype=np.float64))) for g in grads))
    )
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g.mul_(coef)


def AdamW(params, lr: float, weight_decay: float):  # noqa: N802 (named as torch's)
    """torch.optim.AdamW's update (as its single-tensor loop computes it), with the square
    root taken by numpy. Schedulers drive it as they drive AdamW (``lr``, ``betas``)."""
    import torch

    class _AdamW(torch.optim.Optimizer):
        def __init__(self):
            defaults = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}
            super().__init__(params, defaults)

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["step"] = 0
                        st["m"] = torch.zeros_like(p)
                        st["v"] = torch.zeros_like(p)
                    st["step"] += 1
                    n, m, v = st["step"], st["m"], st["v"]
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    m.lerp_(p.grad, 1 - b1)
                    v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                    bc1 = 1 - b1**n
                    bc2_root = float(np.sqrt(1 - b2**n))
                    denom = torch.from_numpy(np.sqrt(v.numpy()))
                    denom.div_(bc2_root).add_(group["eps"])
                    p.addcdiv_(m, denom, value=-group["lr"] / bc1)

    return _AdamW()
