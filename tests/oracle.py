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


def pool_out(n, k, s, lo, hi, dilation=1, ceil_mode=False):
    """torch's pooling output length, written out: floor (or ceil) of (n + lo + hi - span) / s,
    plus one; in ceil mode a last window starting in the right padding is dropped."""
    span = dilation * (k - 1) + 1
    out = int(np.floor((n + lo + hi - span) / s)) + 1
    if ceil_mode:
        out = int(np.ceil((n + lo + hi - span) / s)) + 1
        if (out - 1) * s >= n + lo:
            out -= 1
    return out


def maxpool_forward(x, kernel, stride, pads, dilation=(1, 1), ceil_mode=False):
    """-> y (N, C, Ho, Wo) and the (row, col) in the padded input of each window's FIRST
    maximum (row-major). Taps past the padded input (ceil mode) are skipped, like -inf."""
    xp = pad(x, pads, value=-np.inf)
    n, c, hp, wp = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    t, b, l, r = pads
    ho = pool_out(x.shape[2], kh, sh, t, b, dh, ceil_mode)
    wo = pool_out(x.shape[3], kw, sw, l, r, dw, ceil_mode)
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    where = np.zeros((n, c, ho, wo, 2), dtype=int)
    for i in range(n):
        for ch in range(c):
            for rr in range(ho):
                for s in range(wo):
                    best, pos = -np.inf, (rr * sh, s * sw)
                    for p in range(kh):
                        for q in range(kw):
                            row, col = rr * sh + p * dh, s * sw + q * dw
                            if row >= hp or col >= wp:
                                continue
                            v = xp[i, ch, row, col]
                            if v > best:  # strict: a later tie never replaces the first max
                                best, pos = v, (row, col)
                    y[i, ch, rr, s] = best
                    where[i, ch, rr, s] = pos
    return y, where


def maxpool_backward(dy, x, kernel, stride, pads, dilation=(1, 1), ceil_mode=False):
    _, where = maxpool_forward(x, kernel, stride, pads, dilation, ceil_mode)
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


def _avg_windows(x, kernel, stride, pads, count_include_pad):
    """Yield (i, ch, r, s, rows, cols, divisor) for every window: its real rows and columns in
    x's coordinates, and what its sum is divided by (kh*kw, or the count of real cells)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    t, b, l, r = pads
    ho, wo = pool_out(h, kh, sh, t, b), pool_out(w, kw, sw, l, r)
    for i in range(n):
        for ch in range(c):
            for rr in range(ho):
                for s in range(wo):
                    rows = [rr * sh + p - t for p in range(kh) if 0 <= rr * sh + p - t < h]
                    cols = [s * sw + q - l for q in range(kw) if 0 <= s * sw + q - l < w]
                    div = kh * kw if count_include_pad else len(rows) * len(cols)
                    yield i, ch, rr, s, rows, cols, div


def avgpool_forward(x, kernel, stride, pads, count_include_pad=True):
    """-> y (N, C, Ho, Wo): the sum of each window's real cells (padding adds 0) divided by
    kh*kw (count_include_pad) or by the number of real cells."""
    (kh, kw), (sh, sw) = kernel, stride
    t, b, l, r = pads
    ho, wo = pool_out(x.shape[2], kh, sh, t, b), pool_out(x.shape[3], kw, sw, l, r)
    y = np.zeros((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    for i, ch, rr, s, rows, cols, div in _avg_windows(x, kernel, stride, pads,
                                                      count_include_pad):
        total = 0.0
        for row in rows:
            for col in cols:
                total += x[i, ch, row, col]
        y[i, ch, rr, s] = total / div
    return y


def avgpool_backward(dy, x, kernel, stride, pads, count_include_pad=True):
    dx = np.zeros_like(x)
    for i, ch, rr, s, rows, cols, div in _avg_windows(x, kernel, stride, pads,
                                                      count_include_pad):
        for row in rows:
            for col in cols:
                dx[i, ch, row, col] += dy[i, ch, rr, s] / div
    return dx


def global_avgpool_forward(x):
    """(N, C, H, W) -> (N, C): the mean of every map."""
    n, c, h, w = x.shape
    y = np.zeros((n, c), dtype=x.dtype)
    for i in range(n):
        for ch in range(c):
            total = 0.0
            for row in range(h):
                for col in range(w):
                    total += x[i, ch, row, col]
            y[i, ch] = total / (h * w)
    return y


def global_avgpool_backward(dy, x):
    n, c, h, w = x.shape
    dx = np.zeros_like(x)
    for i in range(n):
        for ch in range(c):
            for row in range(h):
                for col in range(w):
                    dx[i, ch, row, col] = dy[i, ch] / (h * w)
    return dx


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
