"""Loop oracles of the mobile nets' layers, as tests/oracle.py does for the others: one Python
loop per element, every formula written out with the math module (math.erf, math.tanh,
math.floor, math.ceil), nothing shared with skylark. Slow and obvious on purpose."""

from __future__ import annotations

import math

import numpy as np


def _map(f, *arrays):
    """f applied to the elements of equally shaped arrays, one by one (float64 out)."""
    out = np.empty(arrays[0].shape)
    flat = [np.asarray(a, np.float64).reshape(-1) for a in arrays]
    for k in range(out.size):
        out.flat[k] = f(*(float(a[k]) for a in flat))
    return out


# --- the piecewise-linear activations, torch's gradient at each kink -----------------------

def relu6_forward(x):
    return _map(lambda v: min(max(v, 0.0), 6.0), x)


def relu6_backward(dy, x):
    return _map(lambda g, v: g if 0.0 < v < 6.0 else 0.0, dy, x)


def hardsigmoid_forward(x):
    return _map(lambda v: 0.0 if v <= -3 else 1.0 if v >= 3 else (v + 3) / 6, x)


def hardsigmoid_backward(dy, x):
    return _map(lambda g, v: g / 6 if -3 < v < 3 else 0.0, dy, x)


def hardswish_forward(x):
    return _map(lambda v: 0.0 if v <= -3 else v if v >= 3 else v * (v + 3) / 6, x)


def hardswish_backward(dy, x):
    """torch >= 2.7 (pytorch/pytorch#148049): 0 for x <= -3, 1 for x >= 3."""
    return _map(lambda g, v: 0.0 if v <= -3 else g if v >= 3 else g * (2 * v + 3) / 6, dy, x)


# --- the gated activations ----------------------------------------------------------------

def _sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def silu_forward(x):
    return _map(lambda v: v * _sigmoid(v), x)


def silu_backward(dy, x):
    """d/dx x s(x) = s + x s (1 - s)."""
    return _map(lambda g, v: g * (_sigmoid(v) + v * _sigmoid(v) * (1 - _sigmoid(v))), dy, x)


_K = math.sqrt(2 / math.pi)


def gelu_forward(x, approximate="none"):
    if approximate == "tanh":
        return _map(lambda v: 0.5 * v * (1 + math.tanh(_K * (v + 0.044715 * v**3))), x)
    return _map(lambda v: v * 0.5 * math.erfc(-v / math.sqrt(2)), x)


def gelu_backward(dy, x, approximate="none"):
    """exact: Phi(x) + x phi(x); tanh: the derivative of x/2 (1 + tanh(u(x)))."""
    def exact(g, v):
        return g * (0.5 * math.erfc(-v / math.sqrt(2))
                    + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi))

    def tanh(g, v):
        t = math.tanh(_K * (v + 0.044715 * v**3))
        return g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * _K * (1 + 3 * 0.044715 * v * v))

    return _map(tanh if approximate == "tanh" else exact, dy, x)


# --- adaptive average pooling, channel shuffle ---------------------------------------------

def adaptive_bin(i, n, out):
    """torch's bin i of `out` along n cells: [floor(i n / out), ceil((i + 1) n / out))."""
    return math.floor(i * n / out), math.ceil((i + 1) * n / out)


def adaptive_avgpool_forward(x, output_size):
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.zeros((n, c, oh, ow))
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                r0, r1 = adaptive_bin(i, h, oh)
                for j in range(ow):
                    c0, c1 = adaptive_bin(j, w, ow)
                    total = 0.0
                    for r in range(r0, r1):
                        for s in range(c0, c1):
                            total += x[b, ch, r, s]
                    y[b, ch, i, j] = total / ((r1 - r0) * (c1 - c0))
    return y


def adaptive_avgpool_backward(dy, x, output_size):
    n, c, h, w = x.shape
    oh, ow = output_size
    dx = np.zeros(x.shape)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                r0, r1 = adaptive_bin(i, h, oh)
                for j in range(ow):
                    c0, c1 = adaptive_bin(j, w, ow)
                    share = dy[b, ch, i, j] / ((r1 - r0) * (c1 - c0))
                    for r in range(r0, r1):
                        for s in range(c0, c1):
                            dx[b, ch, r, s] += share  # overlapping bins add up
    return dx


def shuffle_source(o, c, groups):
    """The input channel that output channel o reads: o = i * groups + j <- j * (c / groups) + i
    (ShuffleNet: the channels as a (groups, c/groups) matrix, read out transposed)."""
    i, j = divmod(o, groups)
    return j * (c // groups) + i


def channel_shuffle_forward(x, groups):
    y = np.empty_like(x)
    for o in range(x.shape[1]):
        y[:, o] = x[:, shuffle_source(o, x.shape[1], groups)]
    return y


def channel_shuffle_backward(dy, groups):
    dx = np.empty_like(dy)
    for o in range(dy.shape[1]):
        dx[:, shuffle_source(o, dy.shape[1], groups)] = dy[:, o]
    return dx
