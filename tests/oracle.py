"""The per-pixel loop implementation the tutorials write: slow, obvious, and our second oracle.

Kept deliberately naive (a Python loop over samples, channels and output pixels) so that a reader
can check it by eye; the vectorized layers must agree with it. Also timed in benchmarks/.
"""

from __future__ import annotations

import numpy as np


def pad(x, pads, value=0.0):
    t, b, l, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def conv_forward(x, w, b, stride, pads):
    """x (N, C, H, W), w (O, C, kh, kw), b (O,) or None -> y (N, O, Ho, Wo)."""
    xp = pad(x, pads)
    n, _, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    patch = xp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw]
                    y[i, f, r, s] = np.sum(patch * w[f]) + (b[f] if b is not None else 0)
    return y


def conv_backward(dy, x, w, stride, pads):
    """-> dx (N, C, H, W), dw (O, C, kh, kw), db (O,)."""
    xp = pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    n, o, ho, wo = dy.shape
    _, _, kh, kw = w.shape
    sh, sw = stride
    for i in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    g = dy[i, f, r, s]
                    dw[f] += g * xp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw]
                    dxp[i, :, r * sh : r * sh + kh, s * sw : s * sw + kw] += g * w[f]
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


def batchnorm_forward(x, weight, bias, running_mean, running_var, eps, momentum, training):
    """BatchNorm2d channel by channel, torch's conventions -> (y, new running_mean, new
    running_var). Training: this batch's mean and biased variance normalise, and the running
    statistics move by `momentum` toward the mean and the UNBIASED variance; eval: the running
    statistics normalise and stay as they are."""
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    new_mean, new_var = running_mean.copy(), running_var.copy()
    for ch in range(c):
        values = [x[i, ch, r, s] for i in range(n) for r in range(h) for s in range(w)]
        count = len(values)
        if training:
            mean = sum(values) / count
            var = sum((v - mean) ** 2 for v in values) / count
            unbiased = sum((v - mean) ** 2 for v in values) / (count - 1)
            new_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean
            new_var[ch] = (1 - momentum) * running_var[ch] + momentum * unbiased
        else:
            mean, var = running_mean[ch], running_var[ch]
        for i in range(n):
            for r in range(h):
                for s in range(w):
                    xhat = (x[i, ch, r, s] - mean) / np.sqrt(var + eps)
                    y[i, ch, r, s] = weight[ch] * xhat + bias[ch]
    return y, new_mean, new_var


def batchnorm_backward(dy, x, weight, running_mean, running_var, eps, training):
    """-> dx, dweight, dbias, channel by channel, by the staged chain rule (cs231n): in training
    through xhat, the batch variance and the batch mean, each of which depends on every x of the
    channel; in eval the running statistics are constants, so dx = dy * weight / sqrt(var + eps)."""
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    dweight, dbias = np.zeros(c, x.dtype), np.zeros(c, x.dtype)
    cells = [(i, r, s) for i in range(n) for r in range(h) for s in range(w)]
    for ch in range(c):
        v = np.array([x[i, ch, r, s] for i, r, s in cells])
        g = np.array([dy[i, ch, r, s] for i, r, s in cells])
        m = len(v)
        if training:
            mean = v.sum() / m
            var = ((v - mean) ** 2).sum() / m
        else:
            mean, var = running_mean[ch], running_var[ch]
        inv = 1 / np.sqrt(var + eps)
        xhat = (v - mean) * inv
        dxhat = g * weight[ch]
        if training:
            dvar = np.sum(dxhat * (v - mean)) * -0.5 * (var + eps) ** -1.5
            dmean = np.sum(-dxhat * inv) + dvar * np.sum(-2 * (v - mean)) / m
            dv = dxhat * inv + dvar * 2 * (v - mean) / m + dmean / m
        else:
            dv = dxhat * inv
        dweight[ch] = np.sum(g * xhat)
        dbias[ch] = np.sum(g)
        for k, (i, r, s) in enumerate(cells):
            dx[i, ch, r, s] = dv[k]
    return dx, dweight, dbias
