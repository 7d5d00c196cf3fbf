"""Centred finite differences: the framework-free oracle for every gradient (cs231n style)."""

from __future__ import annotations

import numpy as np

FD_RTOL = 1e-7  # the bar to meet: float64, relative to the larger of the two gradients' max


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max(max|a|, max|b|): a norm-wise relative error, blind to no element and
    stable where single entries are ~0 (an element-wise ratio would blow up there)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0))
    return float(np.abs(a - b).max(initial=0) / scale) if scale > 0 else 0.0


def sample_indices(size: int, rng: np.random.Generator, limit: int = 1500) -> np.ndarray:
    """Every flat index of a small tensor; for a big one `limit` random ones plus both ends."""
    if size <= limit:
        return np.arange(size)
    return np.unique(np.concatenate([[0, size - 1], rng.choice(size, limit, replace=False)]))


def numeric_grad(f, arr: np.ndarray, idx: np.ndarray, h: float) -> np.ndarray:
    """d f / d arr.flat[idx] by (f(a + h) - f(a - h)) / 2h, perturbing `arr` in place."""
    flat = arr.reshape(-1)  # a view: arr must be contiguous
    assert np.shares_memory(flat, arr)
    out = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        out[j] = (fp - fm) / (2 * h)
    return out


def check_gradients(forward_backward, x: np.ndarray, params: dict, seed: int = 0,
                    h: float = 1e-5) -> dict[str, float]:
    """Relative error of the analytic gradient of every input and parameter.

    `forward_backward(x) -> (scalar f, dx, grads)` must compute f = a scalar (e.g. the sum of a
    random cotangent times the output) and its analytic gradients. Returns name -> rel error.
    """
    rng = np.random.default_rng(seed)
    _, dx, grads = forward_backward(x)
    errors = {}
    for name, arr, analytic in [("input", x, dx)] + [(k, params[k], grads[k]) for k in params]:
        idx = sample_indices(arr.size, rng)
        num = numeric_grad(lambda: forward_backward(x)[0], arr, idx, h)
        errors[name] = rel_error(np.asarray(analytic).reshape(-1)[idx], num)
    return errors


def layer_fb(layer, cot: np.ndarray):
    """f = <cot, layer(x)> and its gradients, for a single layer (grads zeroed each call)."""

    def fb(x):
        y = layer.forward(x)
        layer.zero_grad()
        dx = layer.backward(cot)
        return float(np.sum(cot * y)), dx, {k: g.copy() for k, g in layer.grads.items()}

    return fb
