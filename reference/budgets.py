"""How far apart two correct implementations may be, per tensor: the tolerance policy.

- float64: max|a - b| <= max(1e-10 * max(1, max|b|), floor(T)). Both sides compute the same
  math with 53-bit significands; 1e-10 leaves ~5 orders of magnitude above the ~1e-15 relative
  errors measured, and a real bug (a permutation, a missing term) is O(1) off. The floor is
  the float32 derivation with eps64 (`derived_budgets`): it exceeds the fixed bar only where a
  tensor is small next to the terms it was computed from (a gradient that is exactly 0 in
  exact arithmetic, left as the rounding of large terms that cancel).
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
EPS64 = float(np.finfo(np.float64).eps)  # 2**-52: the spacing of float64 at 1
K_SAFETY = 2  # see float32_budgets
F64_RTOL = 1e-10
F64_FLOOR_CAP = EPS32  # the float64 floor's ceiling, relative: see float64_budgets


def float64_budgets(ref: dict[str, np.ndarray], floor=None) -> dict[str, float]:
    """float64: 1e-10 * max(1, max|b|) for every tensor b of numpy's, raised to `floor[name]`
    (the derived eps64 budget, `derived_budgets`) where that is larger, but never above
    F64_FLOOR_CAP * max(1, max|b|).

    The cap: the derived bound is a worst case built from |W||x| products, which through a deep
    graph (stacked BatchNorms' 1/sqrt(eps), dozens of layers) grows without limit and can
    overflow to inf (torchvision's regnet_y_400mf). A float64 bar at float32's spacing, eps32
    relative, is the loosest that still says "computed in float64"; an O(1) bug stays seven
    orders above it, and the cancellation residue the floor is for (a gradient exactly 0 in
    exact arithmetic, measured 2e-10 to 1e-9 from numpy behind three BatchNorms) is far below."""
    floor = floor or {}
    out = {}
    for k, v in ref.items():
        scale = max(1.0, float(np.abs(v).max(initial=0.0)))
        raised = float(np.fmin(floor.get(k, 0.0), F64_FLOOR_CAP * scale))  # fmin: nan -> cap
        out[k] = max(F64_RTOL * scale, raised)
    return out


class Step(NamedTuple):
    """What a kind's backward budget rule sees (Kind.f32_backward)."""

    n: float  # n_reduce of the output gradient so far
    n_in: float  # n_reduce of the error already in this layer's (first) input (forward)
    m_in: float  # max of the magnitude bound of this layer's (first) input (forward)
    batch: int
    geometry: object  # the layer's reference.spec.Geometry
    n_ins: tuple = ()  # n_in of every input (a multi-input kind's)


def float32_budgets(spec, state, input_shape, x, cotangent, **mode) -> dict[str, float]:
    """Per-tensor float32 budget: K_SAFETY * eps32 * n_reduce(T) * magnitude(T)
    (`derived_budgets` with eps32; its docstring has the derivation)."""
    return derived_budgets(spec, state, input_shape, x, cotangent, eps=EPS32, **mode)


def derived_budgets(spec, state, input_shape, x, cotangent, *, eps: float,
                    training: bool = True, masks=None, loss=None) -> dict[str, float]:
    """Per-tensor budget K_SAFETY * eps * n_reduce(T) * magnitude(T) for a dtype of spacing
    `eps` at 1 (eps32 for float32; eps64 for float64's floor, the same argument with u =
    eps64/2).

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
    # the bounds may overflow on deep graphs: expected, and saturated to inf (_saturated)
    with np.errstate(over="ignore", invalid="ignore"):
        budget, fwd_n, fwd_m, m_logits = _forward(spec, geo, absm, real, np.abs(x), total, eps)
        batch, k = x.shape[0], geo[-1].out_shape[0]
        per_sample = 1.0 if total else 1.0 / batch
        starts = {"loss": (np.full((batch, k), max(m_logits, 1.0) * per_sample),
                           fwd_n[-1] + k),
                  "cot": (np.abs(np.asarray(cotangent, np.float64)), 0)}
        for tag, (g, n) in starts.items():
            absm.zero_grad()
            budget.update(_backward(tag, spec, geo, real, absm, fwd_n, fwd_m, g, n, eps))
    return budget


def _model(spec, state, transform, training, masks):
    """The spec in float64 with `transform`ed state, in the case's mode with its masks."""
    model = build(spec, "float64")
    model.load_state({k: transform(np.asarray(v, np.float64)) for k, v in state.items()})
    model.train(training)
    for i, mask in (masks or {}).items():
        model[i].use_mask(mask)
    return model


def _forward(spec, geo, absm, real, a, total: bool, eps: float):
    """Budgets of out.{node}, the running statistics and the loss; every output's n_reduce and
    magnitude; the max |logit| bound. A node's input bound and count are its readers' (the
    model's input: |x| and 0); a multi-input kind merges its inputs' (Kind.f32_merge_n)."""
    budget, fwd_n, fwd_m, bounds, n = {}, [], [], [], 0
    batch = a.shape[0]
    for i, s in enumerate(spec):
        kind, g = KINDS[s["kind"]], geo[i]
        a_in = [a if j < 0 else bounds[j] for j in g.inputs]
        n_in = [0 if j < 0 else fwd_n[j] for j in g.inputs]
        if kind.multi_input:
            n, b = kind.f32_merge_n(n_in), kind.f32_abs_forward(s, absm[i], real[i], a_in)
        else:
            n = n_in[0]
            stats = kind.f32_stats(s, real[i], a_in[0], n, batch)
            budget.update({f"stat.{g.name}.{k}": _bound(nr, m, eps)
                           for k, (nr, m) in stats.items()})
            b = kind.f32_abs_forward(s, absm[i], real[i], a_in[0])
        b = _saturated(b)
        n += kind.f32_forward_in(s, g, batch, real[i])
        bounds.append(b)
        fwd_n.append(n)
        fwd_m.append(float(np.max(b, initial=0.0)))
        budget[f"out.{g.name}"] = _bound(n, b, eps)
    m_logits, k = float(bounds[-1].max()), bounds[-1].shape[1]
    # a sum over the batch: N terms, each up to the mean's bound
    n_sum = batch if total else 0
    budget["loss"] = _bound(fwd_n[-1] + k + n_sum,
                            2 * (m_logits + math.log(k)) * (n_sum or 1), eps)
    return budget, fwd_n, fwd_m, m_logits


def _backward(tag, spec, geo, real, absm, fwd_n, fwd_m, g, n, eps) -> dict[str, float]:
    """Budgets of one backward pass from the logits' gradient bound `g` (n_reduce `n`), node by
    node in reverse. Where a tensor feeds several nodes, the gradient bounds add and the count
    is the larger one plus the addition's rounding."""
    budget, batch = {}, g.shape[0]
    grads = {len(spec) - 1: (g, n)}  # node index (-1: the input) -> (bound, n_reduce)
    for i in reversed(range(len(spec))):
        s, kind, geo_i = spec[i], KINDS[spec[i]["kind"]], geo[i]
        g, n = grads.pop(i)
        budget[f"{tag}/d.out.{geo_i.name}"] = _bound(n, g, eps)
        first = geo_i.inputs[0]
        n_ins = tuple(0 if j < 0 else fwd_n[j] for j in geo_i.inputs)
        step = Step(n, n_ins[0], fwd_m[first] if first >= 0 else 1.0, batch, geo_i, n_ins)
        g_in, n_in, params = kind.f32_backward(s, g, absm[i], real[i], step)
        budget.update({f"{tag}/d.{geo_i.name}.{k}": _bound(nr, m, eps)
                       for k, (nr, m) in params.items()})
        if not kind.multi_input:
            g_in, n_in = [g_in], [n_in]
        elif not isinstance(n_in, (list, tuple)):
            n_in = [n_in] * len(g_in)
        for j, gj, nj, shape in zip(geo_i.inputs, g_in, n_in, geo_i.in_shapes, strict=True):
            gj = _saturated(gj)
            assert gj.shape[1:] == tuple(shape), (gj.shape, shape)
            if j in grads:  # a fan-out: the gradients add
                g0, n0 = grads[j]
                grads[j] = (g0 + gj, max(n0, nj) + 1)
            else:
                grads[j] = (gj, nj)
    g, n = grads.pop(-1)
    budget[f"{tag}/d.input"] = _bound(n, g, eps)
    return budget


def _saturated(bound: np.ndarray) -> np.ndarray:
    """A magnitude bound with nan made inf. The bounds are sums and products of non-negative
    finite numbers, so a nan is 0 * inf after an overflow (|W| products through a deep graph
    outgrow float64: torchvision's regnet_y_400mf and mobilenet_v3_small, from the first
    squeeze-excite gate on). Left as nan, a ReLU's `x > 0` turned it into a bound of 0 and the
    tensors after it got a budget of 0: too tight, not too loose. inf is a bound (on the safe
    side of the 0 the product may have been)."""
    bound = np.asarray(bound)
    return np.where(np.isnan(bound), np.inf, bound) if np.isnan(bound).any() else bound


def _bound(n_reduce: int, magnitude, eps: float) -> float:
    """K_SAFETY * eps * n_reduce * max(magnitude): 0 for an exact tensor (n_reduce 0, even
    when the magnitude bound overflowed), inf where the bound overflowed (never nan)."""
    if n_reduce == 0:
        return 0.0
    value = K_SAFETY * eps * n_reduce * float(np.max(magnitude, initial=0.0))
    return math.inf if math.isnan(value) else value


def budgets(spec, state, input_shape, x, cotangent, ref, dtype, **mode) -> dict[str, float]:
    """The budget of every tensor of `ref` (numpy's) for this dtype; `mode`: training, masks
    and loss options, as the case ran."""
    if np.dtype(dtype) == np.float64:
        return float64_budgets(ref, derived_budgets(spec, state, input_shape, x, cotangent,
                                                    eps=EPS64, **mode))
    return float32_budgets(spec, state, input_shape, x, cotangent, **mode)


__all__ = ["EPS32", "EPS64", "F64_FLOOR_CAP", "F64_RTOL", "K_SAFETY", "budgets", "derived_budgets",
           "float32_budgets", "float64_budgets"]
