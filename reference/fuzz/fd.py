"""Finite differences on numpy alone: the oracle that needs no framework.

    fd_failures(model, plan, rng)   # [] or [(tensor, rel_error)]; model built in float64

For a float64 case on the random input (no exact ties or kinks, so the loss is differentiable
at the point), a few coordinates of the input and of every parameter are perturbed by +-h and
the centred difference of the loss compared with skylark's analytic gradient. It runs on the
skylark model itself, so it also covers the cases the reference frameworks cannot mirror. The
bar is the suite's finite-difference bar (tests/gradcheck.py): max|fd - analytic| over the
sampled coordinates, relative to the largest analytic gradient of the case (every input and
parameter gradient), at most 1e-7. Relative to the net's largest gradient, not the tensor's
own: a gradient that is exactly zero analytically (a conv bias under a training-mode
BatchNorm) has finite differences of pure rounding noise, eps * |loss| / h, which no per-tensor
scale covers. A random point within h of a kink would fail by chance, so a coordinate fails
only when it fails at both h = 1e-5 and h = 1e-6. Dropout and stochastic depth keep one mask per
case throughout.
"""

from __future__ import annotations

import numpy as np

import skylark as sk
from skylark.graph import INPUT

from ..inputs import make_batch

FD_RTOL = 1e-7
STEPS = (1e-5, 1e-6)
SAMPLES = 3  # coordinates per tensor


def _masks(net, x, rng) -> dict[str, np.ndarray]:
    """A keep-mask for every dropout and stochastic depth node, shaped from one training
    forward (a stochastic depth's: its noise's shape, one entry per sample or one in all)."""
    drops = [n for n in net.nodes if n.layer.kind in ("dropout", "stochasticdepth")]
    if not drops:
        return {}
    values = net.train(True).forward_all(x)

    def shape(n):
        s = (x if n.inputs[0] == INPUT else values[n.inputs[0]]).shape
        return n.layer.noise_shape(s) if n.layer.kind == "stochasticdepth" else s

    return {n.name: rng.random(shape(n)) >= n.layer.p for n in drops}


class _Loss:
    """The case's loss as a function of (x, state), and its analytic gradients."""

    def __init__(self, net, plan, labels, masks) -> None:
        self.net, self.labels, self.masks = net, labels, masks
        self.training = plan["mode"] == "train"
        self.options = {"label_smoothing": plan["label_smoothing"],
                        "reduction": plan["reduction"]}

    def _forward(self, x, state):
        self.net.load_state(state)
        self.net.train(self.training)
        for name, mask in (self.masks.items() if self.training else ()):
            self.net[name].use_mask(mask)
        return sk.softmax_cross_entropy(self.net.forward(x), self.labels, **self.options)

    def __call__(self, x, state) -> float:
        return float(self._forward(x, state)[0])

    def gradients(self, x, state) -> dict[str, np.ndarray]:
        _, dz = self._forward(x, state)
        self.net.zero_grad()
        dx = self.net.backward(dz)
        return {"loss/d.input": np.asarray(dx),
                **{f"loss/d.{k}": np.asarray(v) for k, v in self.net.grads().items()}}


def _central(f, x, state, target: str, index: int, h: float) -> float:
    def at(delta):
        if target == "loss/d.input":
            xx = x.copy()
            xx.reshape(-1)[index] += delta
            return f(xx, state)
        st = {k: v.copy() for k, v in state.items()}
        st[target[len("loss/d."):]].reshape(-1)[index] += delta
        return f(x, st)

    return (at(h) - at(-h)) / (2 * h)


def fd_failures(model, plan: dict, rng: np.random.Generator) -> list[tuple[str, float]]:
    """The gradients ("loss/d.input", "loss/d.{param}") whose sampled finite differences
    disagree with skylark's analytic ones at every step in STEPS. `model`: float64."""
    x, labels, _ = make_batch("random", plan["batch"], tuple(plan["input_shape"]), 10,
                              plan["seed"], "float64")
    state = {k: np.array(v, np.float64) for k, v in model.state().items()}
    f = _Loss(model, plan, labels, _masks(model, x, rng))
    analytic = f.gradients(x, state)
    scale = max(float(np.abs(g).max(initial=0.0)) for g in analytic.values())
    bad = []
    for name, grad in analytic.items():
        idx = rng.choice(grad.size, min(SAMPLES, grad.size), replace=False)
        errors = []
        for h in STEPS:
            fd = np.array([_central(f, x, state, name, int(i), h) for i in idx])
            top = max(scale, float(np.abs(fd).max()))
            errors.append(float(np.abs(fd - grad.reshape(-1)[idx]).max()) / top if top else 0.0)
        if min(errors) > FD_RTOL:
            bad.append((name, min(errors)))
    return bad
