"""How far apart two correct implementations may be, per tensor: the tolerance policy.

- float64: max|a - b| <= 1e-10 * max(1, max|b|). Both sides compute the same math with 53-bit
  significands; 1e-10 leaves ~5 orders of magnitude above the ~1e-15 relative errors measured,
  and a real bug (a permutation, a missing term) is O(1) off.
- float32: the budget derived in `float32_budgets` (k * eps32 * n_reduce * magnitude), from
  each layer kind's reduction lengths (reference.kinds). docs/design.md explains both.
"""

from __future__ import annotations

import math

import numpy as np

from .kinds import KINDS
from .spec import build, geometry

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: the spacing of float32 at 1
K_SAFETY = 2  # see float32_budgets
F64_RTOL = 1e-10


def float64_budgets(ref: dict[str, np.ndarray]) -> dict[str, float]:
    """float64: 1e-10 * max(1, max|b|) for every tensor b of numpy's."""
    return {k: F64_RTOL * max(1.0, float(np.abs(v).max(initial=0.0))) for k, v in ref.items()}


def float32_budgets(spec, params, input_shape, x, cotangent) -> dict[str, float]:
    """Per-tensor float32 budget: K_SAFETY * eps32 * n_reduce(T) * magnitude(T).

    Derivation. A float32 dot product of length n computed in ANY order (BLAS blocking, oneDNN,
    Eigen, XLA) is within gamma_n * sum|a_i b_i| of the exact one, gamma_n ~ n*u, u = eps32/2;
    two implementations are therefore within n*eps32*sum|a_i b_i| of each other. Errors
    already in a layer's input pass through it scaled by |W| (conv, dense) or not at all
    (ReLU, max-pool and flatten are 1-Lipschitz), so by induction the error in tensor T is
    bounded elementwise by eps32 * n_reduce(T) * M(T), where
      - M(T) is T computed on absolute values: |x| and |W| through the same layers (max of
        |.| for pools), and for gradients |W|^T G, G^T |x| with numpy's pool/ReLU routing, all
        in float64 (`M` bounds every sum |a_i b_i| that feeds T);
      - n_reduce(T) is the sum of the reduction lengths on the path to T, each layer kind
        stating its own (Kind.f32_forward, f32_input_grad, f32_weight_grad); a weight gradient
        adds its own length and both the output gradient's and the input activation's
        n_reduce (a bias gradient: the output gradient's only); the loss adds K (logsumexp)
        and dlogits = (softmax - onehot)/N inherits the logits' count with magnitude 1/N.
    K_SAFETY = 2 covers the roundings that are not reductions (bias add, exp/log in the loss,
    the 1/N, second-order terms); it is not a fudge for observed errors, which sit far below.
    Not covered, deliberately: a max-pool argmax or ReLU mask flipping because two values lie
    within rounding of each other; that is a real divergence and is reported as one.
    """
    real = build(spec, "float64")
    real.load_params({k: np.asarray(v, np.float64) for k, v in params.items()})
    absm = build(spec, "float64")
    absm.load_params({k: np.abs(np.asarray(v, np.float64)) for k, v in params.items()})
    x = np.asarray(x, np.float64)
    real.forward(x)  # numpy's routing (pool argmax, ReLU masks) for the backward magnitudes
    geo = geometry(spec, input_shape)
    budget, fwd_n, m_logits = _forward(spec, absm, np.abs(x))
    batch, k = x.shape[0], geo[-1].out_shape[0]
    starts = {"loss": (np.full((batch, k), max(m_logits, 1.0) / batch), fwd_n[-1] + k),
              "cot": (np.abs(np.asarray(cotangent, np.float64)), 0)}
    for tag, (g, n) in starts.items():
        budget.update(_backward(tag, spec, geo, real, absm, fwd_n, g, n))
    return budget


def _forward(spec, absm, a):
    """Budgets of out.{i} and the loss; the n_reduce of every output; max |logit| bound."""
    budget, fwd_n, n = {}, [], 0
    for i, (s, layer) in enumerate(zip(spec, absm, strict=True)):
        a = layer.forward(a)  # conv/dense: |W| a + |b|; pool: max of a; relu: a (a >= 0)
        n += KINDS[s["kind"]].f32_forward(s)
        fwd_n.append(n)
        budget[f"out.{i}"] = _b32(n, a)
    m_logits, k = float(a.max()), a.shape[1]
    budget["loss"] = _b32(fwd_n[-1] + k, 2 * (m_logits + math.log(k)))
    return budget, fwd_n, m_logits


def _backward(tag, spec, geo, real, absm, fwd_n, g, n) -> dict[str, float]:
    """Budgets of one backward pass from the logits' gradient bound `g` (n_reduce `n`)."""
    budget, batch = {}, g.shape[0]
    absm.zero_grad()
    for i in reversed(range(len(spec))):
        s, kind = spec[i], KINDS[spec[i]["kind"]]
        budget[f"{tag}/d.out.{i}"] = _b32(n, g)
        n_in = fwd_n[i - 1] if i else 0  # the error already in this layer's input
        if absm[i].param_names:
            layer = absm[i]
            g_in = layer.backward(g)  # |W|^T g, and g^T |x| into layer.grads
            n_w = kind.f32_weight_grad(s, geo[i], batch)
            for name, grad in layer.grads.items():
                # a weight multiplies the input (its error too); a bias does not
                extra = n_in if name == "weight" else 0
                budget[f"{tag}/d.{i}.{name}"] = _b32(n + n_w + extra, grad)
        else:
            g_in = real[i].backward(g)  # numpy's own routing / mask / reshape
        n += kind.f32_input_grad(s)
        assert g_in.shape[1:] == geo[i].in_shape, (g_in.shape, geo[i].in_shape)
        g = g_in
    budget[f"{tag}/d.input"] = _b32(n, g)
    return budget


def _b32(n_reduce: int, magnitude) -> float:
    return K_SAFETY * EPS32 * n_reduce * float(np.max(magnitude, initial=0.0))


def budgets(spec, params, input_shape, x, cotangent, ref, dtype) -> dict[str, float]:
    """The budget of every tensor of `ref` (numpy's) for this dtype."""
    if np.dtype(dtype) == np.float64:
        return float64_budgets(ref)
    return float32_budgets(spec, params, input_shape, x, cotangent)


__all__ = ["EPS32", "F64_RTOL", "K_SAFETY", "budgets", "float32_budgets", "float64_budgets"]
