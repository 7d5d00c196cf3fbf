"""How far apart two correct implementations may be, per tensor: the tolerance policy.

- float64: max|a - b| <= 1e-10 * max(1, max|b|). Both sides compute the same math with 53-bit
  significands; 1e-10 leaves ~5 orders of magnitude above the ~1e-15 relative errors measured,
  and a real bug (a permutation, a missing term) is O(1) off.
- float32: the budget derived in `float32_budgets` (k * eps32 * n_reduce * magnitude), from
  each layer kind's reduction lengths (reference.kinds). docs/design.md explains both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .kinds import KINDS
from .spec import build, geometry

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: the spacing of float32 at 1
K_SAFETY = 2  # see float32_budgets
F64_RTOL = 1e-10


def float64_budgets(ref: dict[str, np.ndarray]) -> dict[str, float]:
    """float64: 1e-10 * max(1, max|b|) for every tensor b of numpy's."""
    return {k: F64_RTOL * max(1.0, float(np.abs(v).max(initial=0.0))) for k, v in ref.items()}


class Step(NamedTuple):
    """What a kind's backward budget rule sees (Kind.f32_backward)."""

    n: float  # n_reduce of the output gradient so far
    n_in: float  # n_reduce of the error already in this layer's input (forward)
    m_in: float  # max of the magnitude bound of this layer's input (forward)
    batch: int
    geometry: object  # the layer's reference.spec.Geometry


def float32_budgets(spec, state, input_shape, x, cotangent, *, training: bool = True,
                    masks=None, loss=None) -> dict[str, float]:
    """Per-tensor float32 budget: K_SAFETY * eps32 * n_reduce(T) * magnitude(T).

    Derivation. A float32 dot product of length n computed in ANY order (BLAS blocking, oneDNN,
    Eigen, XLA) is within gamma_n * sum|a_i b_i| of the exact one, gamma_n ~ n*u, u = eps32/2;
    two implementations are therefore within n*eps32*sum|a_i b_i| of each other. Errors
    already in a layer's input pass through it scaled by |W| (conv, dense), by the layer's
    Lipschitz bound (activations, dropout's 1/(1-p), batch norm's |weight|/std), or not at
    all (max-pool, flatten), so by induction the error in tensor T is bounded elementwise by
    eps32 * n_reduce(T) * M(T), where
      - M(T) is T computed on absolute values: |x| and |W| through the same layers (max of
        |.| for pools), and for gradients |W|^T G, G^T |x| with numpy's pool/ReLU routing, all
        in float64 (`M` bounds every sum |a_i b_i| that feeds T);
      - n_reduce(T) is the sum of the reduction lengths on the path to T, each layer kind
        stating its own rule (reference.kinds: Kind.f32_*); a weight gradient adds its own
        length and both the output gradient's and the input activation's n_reduce (a bias
        gradient: the output gradient's only); the loss adds K (logsumexp) and dlogits =
        (softmax - q)/N inherits the logits' count with magnitude 1/N.
    K_SAFETY = 2 covers the roundings that are not reductions (bias add, exp/log in the loss,
    the 1/N, second-order terms); it is not a fudge for observed errors, which sit far below.
    Not covered, deliberately: a max-pool argmax or ReLU mask flipping because two values lie
    within rounding of each other; that is a real divergence and is reported as one.
    """
    real = _model(spec, state, np.asarray, training, masks)
    absm = _model(spec, state, np.abs, training, masks)
    x = np.asarray(x, np.float64)
    real.forward(x)  # numpy's routing (pool argmax, ReLU masks, batch stats) for the bounds
    geo = geometry(spec, input_shape)
    total = (loss or {}).get("reduction") == "sum"
    budget, fwd_n, fwd_m, m_logits = _forward(spec, geo, absm, real, np.abs(x), total)
    batch, k = x.shape[0], geo[-1].out_shape[0]
    per_sample = 1.0 if total else 1.0 / batch
    starts = {"loss": (np.full((batch, k), max(m_logits, 1.0) * per_sample), fwd_n[-1] + k),
              "cot": (np.abs(np.asarray(cotangent, np.float64)), 0)}
    for tag, (g, n) in starts.items():
        absm.zero_grad()
        budget.update(_backward(tag, spec, geo, real, absm, fwd_n, fwd_m, g, n))
    return budget


def _model(spec, state, transform, training, masks):
    """The spec in float64 with `transform`ed state, in the case's mode with its masks."""
    model = build(spec, "float64")
    model.load_state({k: transform(np.asarray(v, np.float64)) for k, v in state.items()})
    model.train(training)
    for i, mask in (masks or {}).items():
        model[i].use_mask(mask)
    return model


def _forward(spec, geo, absm, real, a, total: bool):
    """Budgets of out.{i}, the running statistics and the loss; every output's n_reduce and
    magnitude; the max |logit| bound."""
    budget, fwd_n, fwd_m, n = {}, [], [], 0
    for i, s in enumerate(spec):
        kind, batch = KINDS[s["kind"]], a.shape[0]
        stats = kind.f32_stats(s, real[i], a, n, batch)
        budget.update({f"stat.{i}.{k}": _b32(nr, m) for k, (nr, m) in stats.items()})
        a = kind.f32_abs_forward(s, absm[i], real[i], a)
        n += kind.f32_forward(s, geo[i], batch)
        fwd_n.append(n)
        fwd_m.append(float(np.max(a, initial=0.0)))
        budget[f"out.{i}"] = _b32(n, a)
    m_logits, k = float(a.max()), a.shape[1]
    # a sum over the batch: N terms, each up to the mean's bound
    n_sum = batch if total else 0
    budget["loss"] = _b32(fwd_n[-1] + k + n_sum, 2 * (m_logits + math.log(k)) * (n_sum or 1))
    return budget, fwd_n, fwd_m, m_logits


def _backward(tag, spec, geo, real, absm, fwd_n, fwd_m, g, n) -> dict[str, float]:
    """Budgets of one backward pass from the logits' gradient bound `g` (n_reduce `n`)."""
    budget, batch = {}, g.shape[0]
    for i in reversed(range(len(spec))):
        s, kind = spec[i], KINDS[spec[i]["kind"]]
        budget[f"{tag}/d.out.{i}"] = _b32(n, g)
        step = Step(n, fwd_n[i - 1] if i else 0, fwd_m[i - 1] if i else 1.0, batch, geo[i])
        g_in, n, grads = kind.f32_backward(s, g, absm[i], real[i], step)
        budget.update({f"{tag}/d.{i}.{k}": _b32(nr, m) for k, (nr, m) in grads.items()})
        assert g_in.shape[1:] == geo[i].in_shape, (g_in.shape, geo[i].in_shape)
        g = g_in
    budget[f"{tag}/d.input"] = _b32(n, g)
    return budget


def _b32(n_reduce: int, magnitude) -> float:
    return K_SAFETY * EPS32 * n_reduce * float(np.max(magnitude, initial=0.0))


def budgets(spec, state, input_shape, x, cotangent, ref, dtype, **mode) -> dict[str, float]:
    """The budget of every tensor of `ref` (numpy's) for this dtype; `mode`: training, masks
    and loss options, as the case ran."""
    if np.dtype(dtype) == np.float64:
        return float64_budgets(ref)
    return float32_budgets(spec, state, input_shape, x, cotangent, **mode)


__all__ = ["EPS32", "F64_RTOL", "K_SAFETY", "budgets", "float32_budgets", "float64_budgets"]
