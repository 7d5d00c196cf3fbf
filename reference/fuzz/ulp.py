"""The elementwise oracle: each activation's output and input gradient, element by element,
against a scalar statement of the function in Python's `math` module.

    failures = ulp_failures(case)     # [] when every activation element is within tolerance

The check's bars are per tensor (float64: 1e-10 relative to the tensor's largest value), so an
error confined to an activation's tail, where the values are tiny (GELU ~ x * Phi(x), sigmoid,
SiLU for x << 0) or where the function saturates, sits far below them. Here each element has a
tolerance of its own:

    |y - f(x)| <= C_ULP * eps * mag(x) + tiny
    |dx - dy * f'(x)| <= C_ULP * eps * |dy| * dmag(x) + tiny

where f and f' come from math.erfc, math.exp and math.tanh in float64 on the element's own
input x (skylark's actual input to the layer, numpy's traced tensors), eps is the case dtype's
spacing at 1 and tiny its smallest normal (below it nothing is claimed). mag(x) is the size of
what the value is computed from: |f(x)| times (1 + the relative condition number |x f'(x) /
f(x)|) for the functions whose documented formula loses nothing (sigmoid, tanh, SiLU, GELU via
erfc: the rounding of x itself moves f by that much, in either implementation), and the terms'
absolute sum where the documented formula cancels (tanh-GELU's 1 + tanh(u) for x << 0, which
torch and Keras compute as written: skylark may lose all relative precision there as they do).
dmag is the same for the derivative's formula (sigmoid's y (1 - y) computed from y: the
absolute rounding of 1 - y, not a relative one). C_ULP = 8: skylark's formulas take a handful
of correctly rounded steps (exp, add, divide, multiply; its erfc a rational of a few ulps), math
one ulp; 8 covers both with room and is still 1e5 below the float64 bar on an O(1) tensor.
Derivatives are not compared at a kink (x exactly 0, 6 or +-3 of the ReLU family and the hard
activations), where the frameworks' convention is what the check compares.
"""

from __future__ import annotations

import math

import numpy as np

from ..harness import Case
from ..spec import geometry, node_names

C_ULP = 8
SQRT_2PI = math.sqrt(2 * math.pi)
TANH_C = math.sqrt(2 / math.pi)  # tanh-GELU: tanh(sqrt(2/pi) (x + 0.044715 x^3))


def _sig(x: float) -> float:
    """sigmoid without overflow: exp of a non-positive number only."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def _sigmoid(x, e):
    s, q = _sig(x), _sig(-x)  # q = 1 - s without the cancellation
    return s, s * q, s * (1 + abs(x) * q), s * (2 + q + abs(x) * q)


def _tanh(x, e):
    t = math.tanh(x)
    sech2 = 1 / math.cosh(x) ** 2 if abs(x) < 350 else 0.0
    mag = abs(t) + abs(x) * sech2
    return t, sech2, mag, sech2 + 1 + 2 * abs(t) * mag


def _silu(x, e):
    s, q = _sig(x), _sig(-x)
    return (x * s, s * (1 + x * q), abs(x) * s * (2 + abs(x) * q),
            s * (1 + abs(x)) * (3 + abs(x) * q))


def _gelu(x, e):
    if e.get("approximate", "none") == "tanh":
        return _gelu_tanh(x)
    cdf, pdf = 0.5 * math.erfc(-x / math.sqrt(2)), math.exp(-x * x / 2) / SQRT_2PI
    return (x * cdf, cdf + x * pdf, abs(x) * (2 * cdf + abs(x) * pdf),
            cdf + abs(x) * pdf * (2 + x * x))


def _gelu_tanh(x):
    u = TANH_C * (x + 0.044715 * x**3)
    t = math.tanh(u)
    inner = TANH_C * (1 + 3 * 0.044715 * x * x)
    return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner,
            0.5 * abs(x) * (1 + abs(t) + 3 * abs(u) * (1 - t * t)),
            0.5 * (1 + abs(t)) + 0.5 * abs(x) * inner * (2 + 3 * abs(u)))


def _hardsigmoid(x, e):
    inside = -3 < x < 3
    return min(max(x + 3, 0), 6) / 6, 1 / 6 if inside else 0.0, (abs(x) + 3) / 6, 1 / 6


def _hardswish(x, e):
    d = 0.0 if x < -3 else 1.0 if x > 3 else (2 * x + 3) / 6
    return x * min(max(x + 3, 0), 6) / 6, d, abs(x) * (abs(x) + 3) / 6, (2 * abs(x) + 3) / 6 + 1


def _piecewise(low, high, slope=lambda e: 0.0):
    """relu-like: slope(e) * x below 0, x on [0, high], high above."""
    def f(x, e):
        y = slope(e) * x if x < 0 else min(x, high)
        return y, slope(e) if x < 0 else 1.0 if x < high else 0.0, abs(y), 1.0
    return f


SCALAR = {"sigmoid": _sigmoid, "tanh": _tanh, "silu": _silu, "gelu": _gelu,
          "hardsigmoid": _hardsigmoid, "hardswish": _hardswish,
          "relu": _piecewise(0, math.inf), "relu6": _piecewise(0, 6.0),
          "leaky_relu": _piecewise(0, math.inf, lambda e: e.get("negative_slope", 0.01)),
          "identity": lambda x, e: (x, 1.0, abs(x), 1.0)}
KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "hardsigmoid": (-3.0, 3.0),
         "hardswish": (-3.0, 3.0)}


def _scalar(entry: dict, x: np.ndarray):
    """f, f', mag, dmag of `entry`'s activation at every element of x, in float64."""
    f = SCALAR[entry["kind"]]
    cols = np.array([f(float(v), entry) for v in np.ravel(x)], np.float64).reshape(-1, 4)
    return [c.reshape(np.shape(x)) for c in cols.T]


def ulp_failures(case: Case) -> list[dict]:
    """One failure per activation node and tensor (output, input gradient) off its tolerance."""
    names, out = node_names(case.spec), []
    geo = geometry(case.spec, case.input_shape)
    readers = [j for g in geo for j in g.inputs]
    fin = np.finfo(case.dtype)
    for i, entry in enumerate(case.spec):
        if entry["kind"] not in SCALAR:
            continue
        j = geo[i].inputs[0]
        src = "input" if j < 0 else f"out.{names[j]}"
        x = np.asarray(case.x if j < 0 else case.ref[src], np.float64)
        f, d, mag, dmag = _scalar(entry, x)
        y = case.ref[f"out.{names[i]}"]
        out += _off(entry, names[i], "output", x, y, f, C_ULP * fin.eps * mag + fin.tiny)
        if readers.count(j) != 1:  # its input's gradient also carries other readers' terms
            continue
        kink = np.isin(x, KINKS.get(entry["kind"], ()))
        for tag in ("loss", "cot"):
            dy = np.asarray(case.ref[f"{tag}/d.out.{names[i]}"], np.float64)
            dx = case.ref[f"{tag}/d.input" if j < 0 else f"{tag}/d.{src}"]
            tol = np.where(kink, np.inf, C_ULP * fin.eps * np.abs(dy) * dmag + fin.tiny)
            out += _off(entry, names[i], f"input gradient ({tag} pass)", x, dx, dy * d, tol)
    return out


def _off(entry, node, what, x, got, want, tol) -> list[dict]:
    got = np.asarray(got, np.float64)
    err = np.abs(got - want)
    bad = ~(err <= tol)  # nan and inf fail
    if not bad.any():
        return []
    k = np.unravel_index(int(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), -1))),
                         err.shape)
    return [{"framework": "numpy-ulp",
             "signature": f"numpy-ulp FAIL: {entry['kind']} {what.split(' (')[0]}",
             "detail": f"{node} {what}: at x={float(x[k])!r} skylark gives {float(got[k])!r}, "
                       f"math {float(want[k])!r} (tolerance {tol[k]:.3g}; "
                       f"{int(bad.sum())} elements off)"}]
