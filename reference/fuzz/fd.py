"""Finite differences on numpy alone: the oracle that needs no framework.

    fd_failures(case, layers, rng)   # [] or [(tensor, rel_error)] for a float64 harness Case

For a float64 case on the random input (no exact ties or kinks, so the loss is differentiable
at the point), a few coordinates of the input and of every parameter are perturbed by +-h and
the centred difference of the loss compared with numpy's analytic gradient. The bar is the
suite's finite-difference bar (tests/gradcheck.py): max|fd - analytic| over the sampled
coordinates, relative to the largest analytic gradient of the case (every input and parameter
gradient), at most 1e-7. Relative to the net's largest gradient, not the tensor's own: a
gradient that is exactly zero analytically (a conv bias under a training-mode BatchNorm) has
finite differences of pure rounding noise, eps * |loss| / h, which no per-tensor scale covers.
A random point within h of a kink would fail by chance, so a coordinate fails only when it
fails at both h = 1e-5 and h = 1e-6.
"""

from __future__ import annotations

import numpy as np

import skylark as sk

from ..spec import build

FD_RTOL = 1e-7
STEPS = (1e-5, 1e-6)
SAMPLES = 3  # coordinates per tensor


def _loss_fn(case):
    """f(x, state) -> the loss, numpy's forward in the case's mode with its dropout masks."""
    net = build(case.spec, "float64")

    def f(x, state) -> float:
        net.load_state(state)
        net.train(case.training)
        for i, mask in case.masks.items():
            net[i].use_mask(mask)
        loss, _ = sk.softmax_cross_entropy(net.forward(x), case.labels, **case.loss)
        return float(loss)

    return f


def _central(f, x, state, target: str, index: int, h: float) -> float:
    def at(delta):
        if target == "input":
            xx = x.copy()
            xx.reshape(-1)[index] += delta
            return f(xx, state)
        st = {k: v.copy() for k, v in state.items()}
        st[target].reshape(-1)[index] += delta
        return f(x, st)

    return (at(h) - at(-h)) / (2 * h)


def fd_failures(case, rng: np.random.Generator) -> list[tuple[str, float]]:
    """The gradients (as harness tensor names, "loss/d.input", "loss/d.{param}") whose sampled
    finite differences disagree with numpy's analytic ones at every step in STEPS."""
    f, x = _loss_fn(case), np.asarray(case.x, np.float64)
    state = {k: np.array(v, np.float64) for k, v in case.state.items()}
    params = [k for k in state if f"loss/d.{k}" in case.ref]
    names = {t: "loss/d.input" if t == "input" else f"loss/d.{t}" for t in ("input", *params)}
    scale = max(float(np.abs(case.ref[n]).max(initial=0.0)) for n in names.values())
    bad = []
    for target, name in names.items():
        analytic = np.asarray(case.ref[name])
        idx = rng.choice(analytic.size, min(SAMPLES, analytic.size), replace=False)
        errors = []
        for h in STEPS:
            fd = np.array([_central(f, x, state, target, int(i), h) for i in idx])
            an = analytic.reshape(-1)[idx]
            top = max(scale, float(np.abs(fd).max()))
            errors.append(float(np.abs(fd - an).max()) / top if top else 0.0)
        if min(errors) > FD_RTOL:
            bad.append((name, min(errors)))
    return bad
