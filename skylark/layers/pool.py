"""MaxPool2D over NCHW batches, like `torch.nn.MaxPool2d` (floor mode, dilation 1)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Layer, check_input, positive_pair
from .padding import check_padding, out_size, resolve_pads


class MaxPool2D(Layer):
    """y[n, c, i, j] = max_{p, q} xpad[n, c, i*sh + p, j*sw + q], padding with -inf.

    x: (N, C, H, W) -> y: (N, C, H_out, W_out), H_out = (H + pad_h - kh) // sh + 1.
    stride defaults to kernel_size. padding: int, pair (each <= kernel/2, as torch requires),
    "valid" or "same" (TF's rule).
    """

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

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, H_out, W_out), validating as `forward` does."""
        c, h, w = input_shape
        t, b, l, r = resolve_pads(self.padding, (h, w), self.kernel_size, self.stride)
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
        t, b, l, r = resolve_pads(self.padding, x.shape[2:], self.kernel_size, self.stride)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        xp = x
        if t + b + l + r:
            xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))
        win = win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
        flat = win.reshape(*win.shape[:4], kh * kw)  # (N, C, Ho, Wo, kh*kw), row-major taps
        # Ties: argmax returns the FIRST maximum in row-major window order, the element torch,
        # TF and JAX send the whole gradient to. Routing it to every tied element instead (as
        # some tutorials do) inflates gradients wherever a flat background makes windows tie.
        arg = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        self._cache = (arg, xp.shape, x.shape, (t, l))
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, H_out, W_out) -> dx: (N, C, H, W); one winner per window."""
        arg, xp_shape, x_shape, (t, l) = self._need_cache(self._cache)
        dy = np.asarray(dy)
        _, _, ho, wo = dy.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        dxp = np.zeros(xp_shape, dtype=dy.dtype)
        zero = dy.dtype.type(0)
        for tap in range(kh * kw):
            p, q = divmod(tap, kw)
            # `+=`, not `=`: with stride < kernel, windows overlap and one pixel can win twice.
            dxp[:, :, p : p + (ho - 1) * sh + 1 : sh, q : q + (wo - 1) * sw + 1 : sw] += (
                np.where(arg == tap, dy, zero)
            )
        h, w = x_shape[2:]
        return dxp[:, :, t : t + h, l : l + w]
