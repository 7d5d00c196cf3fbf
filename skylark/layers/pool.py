"""MaxPool2D over NCHW batches, like `torch.nn.MaxPool2d` (floor mode, dilation 1)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Layer, check_input, positive_pair
from .padding import Pads, check_padding, out_size, padding_config, resolve_pads


class PoolCache(NamedTuple):
    """What `MaxPool2D.forward` keeps for `backward`: each window's winner, found in two passes."""

    col_arg: np.ndarray  # (N, C, Hp, Wo): tap of the max along W of each window row
    row_arg: np.ndarray  # (N, C, Ho, Wo): tap of the max along H over those row maxima
    row_max_shape: tuple[int, ...]  # (N, C, Hp, Wo) of the row maxima
    padded: np.ndarray  # (N, C, Hp, Wp): the input padded with -inf (the input itself if no pad)
    pads: Pads  # (top, bottom, left, right)


class MaxPool2D(Layer):
    """y[n, c, i, j] = max_{p, q} xpad[n, c, i*sh + p, j*sw + q], padding with -inf.

    x: (N, C, H, W) -> y: (N, C, H_out, W_out), H_out = (H + pad_h - kh) // sh + 1.
    stride defaults to kernel_size. padding: int, pair (each <= kernel/2, as torch requires),
    "valid" or "same" (TF's rule).
    """

    kind = "maxpool2d"

    def __init__(self, kernel_size=2, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else positive_pair(stride, "stride")
        self.padding = check_padding(padding)
        if isinstance(self.padding, tuple) and any(
            2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)
        ):
            raise ValueError(
                "MaxPool2D padding must be at most half the kernel size. "
                f"Received: padding={padding!r} with kernel_size={self.kernel_size}"
            )
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"MaxPool2D(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r})"
        )

    def config(self) -> dict:
        """{kernel_size, stride, padding}, JSON-able."""
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding),
        }

    def pads(self, hw: tuple[int, int]) -> Pads:
        """(top, bottom, left, right) padding for an input of spatial size `hw`."""
        return resolve_pads(self.padding, hw, self.kernel_size, self.stride)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, H_out, W_out), validating as `forward` does."""
        c, h, w = input_shape
        t, b, l, r = self.pads((h, w))
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h + t + b < kh or w + l + r < kw:
            raise ValueError(
                f"MaxPool2D kernel_size={self.kernel_size} is larger than the padded input "
                f"{(h + t + b, w + l + r)}. Received: input spatial size {(h, w)}"
            )
        return c, out_size(h + t + b, kh, sh), out_size(w + l + r, kw, sw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "MaxPool2D", None)
        _, ho, wo = self.output_shape(x.shape[1:])
        pads = self.pads(x.shape[2:])
        xp = x
        if any(pads):
            t, b, l, r = pads
            xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        # Separable: the max over each window's columns (along W), then over its rows (along H).
        # The first maximum of each row, then the first row holding the overall maximum, IS the
        # first maximum in row-major window order, so the tie rule survives the split.
        row_max, col_arg = _first_max(xp, 3, kw, sw, wo)  # (N, C, Hp, Wo)
        y, row_arg = _first_max(row_max, 2, kh, sh, ho)  # (N, C, Ho, Wo), C-contiguous
        self._cache = PoolCache(col_arg, row_arg, row_max.shape, xp, pads)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, H_out, W_out) -> dx: (N, C, H, W); one winner per window."""
        cache: PoolCache = self._need_cache(self._cache)
        dy = np.asarray(dy)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        d_row_max = _route(dy, cache.row_arg, 2, kh, sh, np.zeros(cache.row_max_shape, dy.dtype))
        # zeros_like keeps xp's memory layout (a Conv2D output is (C, N, H, W) in memory), so
        # the Conv2D before us gets its gradient in the layout it reshapes for free.
        xp = cache.padded
        dxp = _route(d_row_max, cache.col_arg, 3, kw, sw, np.zeros_like(xp, dtype=dy.dtype))
        t, b, l, r = cache.pads
        h, w = xp.shape[2] - t - b, xp.shape[3] - l - r
        return dxp[:, :, t : t + h, l : l + w]


def _taps(a: np.ndarray, axis: int, k: int, s: int, n: int) -> list[np.ndarray]:
    """The k strided views a[..., i + j*s, ...] (j < n) along `axis`: tap i of every window."""
    taps = []
    for i in range(k):
        index = [slice(None)] * a.ndim
        index[axis] = slice(i, i + (n - 1) * s + 1, s)
        taps.append(a[tuple(index)])
    return taps


def _first_max(a: np.ndarray, axis: int, k: int, s: int, n: int):
    """Max over the n windows of size k, stride s along `axis`, and each window's tap index of
    its FIRST maximum: a running max over the k taps, each a strided view (no window copy,
    no argmax over a tiny last axis, no data-dependent branch)."""
    taps = _taps(a, axis, k, s, n)
    best = taps[0].copy()  # C-contiguous
    arg = np.zeros(best.shape, np.min_scalar_type(k - 1))
    for i, tap in enumerate(taps[1:], start=1):
        # Ties: the strict `>` never lets a later equal tap take the lead, so the FIRST maximum
        # wins, the element torch, TF and JAX send the whole gradient to. Routing it to every
        # tied element instead (as some tutorials do) inflates gradients wherever a flat
        # background makes windows tie.
        better = tap > best
        np.maximum(best, tap, out=best)  # not copyto(where=better): a nan still propagates
        # Taps come in increasing order, so the newest leader has the largest index: a max
        # records it without a masked (branchy, ~6x slower on random data) write.
        np.maximum(arg, better * arg.dtype.type(i), out=arg)
    return best, arg


def _route(d: np.ndarray, arg: np.ndarray, axis: int, k: int, s: int, out: np.ndarray):
    """Send d[..., j, ...] to tap arg[..., j, ...] of window j along `axis`, adding into `out`."""
    for i, tap in enumerate(_taps(out, axis, k, s, d.shape[axis])):
        # `+=`: with stride < kernel, windows overlap and one pixel can win twice.
        # A multiply by the 0/1 mask, not np.where (branchy, ~6x slower): the losers get
        # d * 0 = +-0, the same value (an inf or nan in d would leak to them, but the loss
        # refuses non-finite logits before any backward).
        tap += d * (arg == i)
    return out
