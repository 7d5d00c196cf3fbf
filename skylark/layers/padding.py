"""Padding rules shared by Conv2D and the pools: ints, pairs, "valid", TF's "same", and torch's
ceil_mode output size for the pools."""

from __future__ import annotations

import numpy as np

from .base import pair

Pads = tuple[int, int, int, int]  # (top, bottom, left, right)


def check_padding(padding) -> object:
    """Validate at construction; returns `"valid"`, `"same"` or an (h, w) pair of ints >= 0."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(
                f"padding must be an int, a pair, 'valid' or 'same'. Received: padding={padding!r}"
            )
        return padding
    ph, pw = pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0. Received: padding={padding!r}")
    return ph, pw


def padding_config(padding) -> str | list[int]:
    """A checked padding as JSON: `"valid"`, `"same"` or [ph, pw]."""
    return padding if isinstance(padding, str) else [int(padding[0]), int(padding[1])]


def resolve_pads(padding, size: tuple[int, int], kernel, stride) -> Pads:
    """Per-side pads for an input of spatial `size` (H, W).

    "same" follows TensorFlow: output = ceil(size / stride) and the total padding needed is split
    with the odd extra pixel at the *bottom/right*. torch's symmetric `padding=` cannot express
    that for stride > 1, which is why the torch reference pads explicitly.
    """
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        pads = []
        for n, k, s in zip(size, kernel, stride, strict=True):
            out = -(-n // s)
            total = max((out - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return pads[0], pads[1], pads[2], pads[3]
    ph, pw = padding
    return ph, ph, pw, pw


def out_size(n: int, k: int, s: int) -> int:
    """Floor-mode output length of a window `k` sliding with stride `s` over `n` (padded) pixels."""
    return (n - k) // s + 1


def pool_out_size(n: int, span: int, s: int, lo: int, hi: int, ceil_mode: bool = False) -> int:
    """Output length of a pooling window covering `span` pixels (d*(k-1)+1 with dilation d),
    stride `s`, over `n` pixels padded by `lo` before and `hi` after; < 1 when none fits.

    torch's rule (pooling_output_shape), floor division included: (n + lo + hi - span) // s + 1,
    or in ceil_mode (n + lo + hi - span + s - 1) // s + 1, where a last window that would START
    in the right padding is dropped. In ceil_mode the last window may reach past the padding
    (even when the span exceeds the padded input by less than a stride).
    """
    room = n + lo + hi - span
    out = (room + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + lo:
        out -= 1
    return out


def pad_hw(x: np.ndarray, pads: Pads, h_axis: int, w_axis: int, value=0) -> np.ndarray:
    """x (4-D, any strides) padded by pads (top, bottom, left, right) on its h and w axes
    with `value`, as a new C-contiguous array: the borders filled, then x copied in once.
    np.pad's result, the same bits, without its ~20 us of fixed cost (a batch-1 Conv2D
    spent more there than in its GEMM) and 1.2-1.6x faster on large inputs (measured,
    (48, 28, 28, 64) float32: 0.80 against 1.32 ms)."""
    t, b, l, r = pads
    shape = list(x.shape)
    h, w = shape[h_axis], shape[w_axis]
    shape[h_axis], shape[w_axis] = t + h + b, l + w + r
    out = np.empty(shape, x.dtype)
    rows = [slice(None)] * 4
    for part in (slice(0, t), slice(t + h, t + h + b)):  # the bands above and below
        rows[h_axis] = part
        out[tuple(rows)] = value
    rows[h_axis] = slice(t, t + h)
    for part in (slice(0, l), slice(l + w, l + w + r)):  # left and right of x's rows
        rows[w_axis] = part
        out[tuple(rows)] = value
    rows[w_axis] = slice(l, l + w)
    out[tuple(rows)] = x
    return out
