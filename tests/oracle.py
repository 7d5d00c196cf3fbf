"""The per-pixel loop implementation the tutorials write: slow, obvious, and our second oracle.

Kept deliberately naive (a Python loop over samples, channels and output pixels) so that a reader
can check it by eye; the vectorized layers must agree with it. Also timed in benchmarks/.
"""

from __future__ import annotations

import numpy as np


def pad(x, pads, value=0.0):
    t, b, l, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def conv_forward(x, w, b, stride, pads, dilation=(1, 1), groups=1):
    """x (N, C, H, W), w (O, C/groups, kh, kw), b (O,) or None -> y (N, O, Ho, Wo).

    Output channel f sees only its group's C/groups input channels; its tap (p, q) at output
    pixel (r, s) reads the padded input at (r*sh + p*dh, s*sw + q*dw)."""
    xp = pad(x, pads)
    n, _, hp, wp = xp.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # the rows and columns a window spans
    ho, wo = (hp - eh) // sh + 1, (wp - ew) // sw + 1
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i in range(n):
        for f in range(o):
            g = f // (o // groups)  # the group of output channel f
            for r in range(ho):
                for s in range(wo):
                    patch = xp[i, g * cg : (g + 1) * cg,
                               r * sh : r * sh + eh : dh, s * sw : s * sw + ew : dw]
                    y[i, f, r, s] = np.sum(patch * w[f]) + (b[f] if b is not None else 0)
    return y


def conv_backward(dy, x, w, stride, pads, dilation=(1, 1), groups=1):
    """-> dx (N, C, H, W), dw (O, C/groups, kh, kw), db (O,)."""
    xp = pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    n, o, ho, wo = dy.shape
    _, cg, kh, kw = w.shape
    (sh, sw), (dh, dwl) = stride, dilation
    eh, ew = dh * (kh - 1) + 1, dwl * (kw - 1) + 1
    for i in range(n):
        for f in range(o):
            c0 = f // (o // groups) * cg  # the first input channel of f's group
            for r in range(ho):
                for s in range(wo):
                    g = dy[i, f, r, s]
                    rows, cols = slice(r * sh, r * sh + eh, dh), slice(s * sw, s * sw + ew, dwl)
                    dw[f] += g * xp[i, c0 : c0 + cg, rows, cols]
                    dxp[i, c0 : c0 + cg, rows, cols] += g * w[f]
    t, _, l, _ = pads
    h, wd = x.shape[2:]
    return dxp[:, :, t : t + h, l : l + wd], dw, dy.sum(axis=(0, 2, 3))


def maxpool_forward(x, kernel, stride, pads):
    """-> y (N, C, Ho, Wo) and the (row, col) of each window's FIRST maximum (row-major)."""
    xp = pad(x, pads, value=-np.inf)
    n, c, hp, wp = xp.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    where = np.zeros((n, c, ho, wo, 2), dtype=int)
    for i in range(n):
        for ch in range(c):
            for r in range(ho):
                for s in range(wo):
                    best, pos = -np.inf, (r * sh, s * sw)
                    for p in range(kh):
                        for q in range(kw):
                            v = xp[i, ch, r * sh + p, s * sw + q]
                            if v > best:  # strict: a later tie never replaces the first max
                                best, pos = v, (r * sh + p, s * sw + q)
                    y[i, ch, r, s] = best
                    where[i, ch, r, s] = pos
    return y, where


def maxpool_backward(dy, x, kernel, stride, pads):
    _, where = maxpool_forward(x, kernel, stride, pads)
    t, b, l, r = pads
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + t + b, x.shape[3] + l + r), x.dtype)
    n, c, ho, wo = dy.shape
    for i in range(n):
        for ch in range(c):
            for rr in range(ho):
                for s in range(wo):
                    pr, pc = where[i, ch, rr, s]
                    dxp[i, ch, pr, pc] += dy[i, ch, rr, s]
    return dxp[:, :, t : t + x.shape[2], l : l + x.shape[3]]
