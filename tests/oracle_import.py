"""Loop oracles of the layers imported models need (zero padding, stochastic depth, the fixed
affine rescaling), as tests/oracle.py does for the others: one Python loop per element, every
index written out, nothing shared with skylark. Slow and obvious on purpose."""

from __future__ import annotations

import numpy as np


def zeropad_forward(x, padding):
    """padding: torch's (left, right, top, bottom)."""
    left, right, top, bottom = padding
    n, c, h, w = x.shape
    y = np.zeros((n, c, top + h + bottom, left + w + right))
    for b in range(n):
        for ch in range(c):
            for r in range(h):
                for s in range(w):
                    y[b, ch, top + r, left + s] = x[b, ch, r, s]
    return y


def zeropad_backward(dy, padding):
    left, right, top, bottom = padding
    n, c, hp, wp = dy.shape
    dx = np.zeros((n, c, hp - top - bottom, wp - left - right))
    for b in range(n):
        for ch in range(c):
            for r in range(dx.shape[2]):
                for s in range(dx.shape[3]):
                    dx[b, ch, r, s] = dy[b, ch, top + r, left + s]
    return dx


def stochastic_depth(x, keep, p):
    """torchvision's rule with the keep decision of each sample given (mode "row": keep[b];
    "batch": one entry for all): a dropped sample is all zeros, a kept one x / (1 - p); the
    gradient is the same map applied to dy."""
    y = np.zeros(x.shape)
    for b in range(x.shape[0]):
        kept = keep[b] if len(keep) > 1 else keep[0]
        for k in range(x[b].size):
            y[b].flat[k] = x[b].flat[k] / (1 - p) if kept else 0.0
    return y


def rescaling_forward(x, scale, offset):
    """y[b, c, ...] = x[b, c, ...] * scale_c + offset_c (a float: the same for every c)."""
    y = np.zeros(x.shape)
    for b in range(x.shape[0]):
        for ch in range(x.shape[1]):
            sc = scale[ch] if isinstance(scale, list) else scale
            of = offset[ch] if isinstance(offset, list) else offset
            for k in range(x[b, ch].size):
                y[b, ch].flat[k] = x[b, ch].flat[k] * sc + of
    return y


def rescaling_backward(dy, scale):
    dx = np.zeros(dy.shape)
    for b in range(dy.shape[0]):
        for ch in range(dy.shape[1]):
            sc = scale[ch] if isinstance(scale, list) else scale
            for k in range(dy[b, ch].size):
                dx[b, ch].flat[k] = dy[b, ch].flat[k] * sc
    return dx
