"""Conv2D: 2-D cross-correlation of NCHW batches, like `torch.nn.Conv2d` (groups=1, dilation=1)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Layer, as_dtype, check_input, positive_pair
from .padding import check_padding, out_size, resolve_pads


class Conv2D(Layer):
    """y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*sh + p, j*sw + q].

    x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out), H_out = (H + pad_h - kh) // sh + 1.
    weight: (C_out, C_in, kh, kw) (torch's OIHW); bias: (C_out,) or None.
    No kernel flip: like every framework this is cross-correlation; the flip (rot180) belongs
    only to the input gradient, where it appears as the scatter over taps in `backward`.
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        bias: bool = True,
        dtype="float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int. Received: {name}={v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = positive_pair(stride, "stride")
        self.padding = check_padding(padding)
        self.dtype = as_dtype(dtype)
        kh, kw = self.kernel_size
        # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        bound = 1.0 / np.sqrt(self.in_channels * kh * kw)
        rng = np.random.default_rng(seed)
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.weight = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (
            rng.uniform(-bound, bound, self.out_channels).astype(self.dtype) if bias else None
        )
        self._cache = None
        self.zero_grad()

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}, bias={self.bias is not None})"
        )

    def pads(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding for an input of spatial size `hw`."""
        return resolve_pads(self.padding, hw, self.kernel_size, self.stride)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C_out, H_out, W_out), validating as `forward` does."""
        _, h, w = input_shape
        t, b, l, r = self.pads((h, w))
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h + t + b < kh or w + l + r < kw:
            raise ValueError(
                f"Conv2D kernel_size={self.kernel_size} is larger than the padded input "
                f"{(h + t + b, w + l + r)}. Received: input spatial size {(h, w)}"
            )
        return self.out_channels, out_size(h + t + b, kh, sh), out_size(w + l + r, kw, sw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "Conv2D", self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2D expects {self.in_channels} input channels (NCHW). "
                f"Received: input with shape {x.shape}"
            )
        _, ho, wo = self.output_shape(x.shape[1:])
        t, b, l, r = self.pads(x.shape[2:])
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))) if t + b + l + r else x
        cols = self._windows(xp, ho, wo)  # (N, C, Ho, Wo, kh, kw), a view
        y = np.tensordot(cols, self.weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, O)
        y = y.transpose(0, 3, 1, 2)
        if self.bias is not None:
            y = y + self.bias[None, :, None, None]
        self._cache = (xp, x.shape, (t, l))
        return np.ascontiguousarray(y)

    def _windows(self, xp: np.ndarray, ho: int, wo: int) -> np.ndarray:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (N, C, Hp-kh+1, Wp-kw+1, kh, kw)
        return win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds dweight, dbias."""
        xp, x_shape, (t, l) = self._need_cache(self._cache)
        dy = np.asarray(dy, dtype=self.dtype)
        _, _, ho, wo = dy.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        cols = self._windows(xp, ho, wo)
        self._accumulate("weight", np.tensordot(dy, cols, axes=([0, 2, 3], [0, 2, 3])))
        if self.bias is not None:
            self._accumulate("bias", dy.sum(axis=(0, 2, 3)))
        # dx: each tap (p, q) scatters dy back through w[:, :, p, q] onto a strided grid.
        dxp = np.zeros(xp.shape, dtype=self.dtype)
        for p in range(kh):
            for q in range(kw):
                tap = np.tensordot(dy, self.weight[:, :, p, q], axes=([1], [0]))  # (N,Ho,Wo,C)
                dxp[:, :, p : p + (ho - 1) * sh + 1 : sh, q : q + (wo - 1) * sw + 1 : sw] += (
                    tap.transpose(0, 3, 1, 2)
                )
        h, w = x_shape[2:]
        return dxp[:, :, t : t + h, l : l + w]
