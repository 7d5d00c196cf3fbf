"""Conv2D: 2-D cross-correlation of NCHW batches, like `torch.nn.Conv2d` (with dilation, groups)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Layer, as_dtype, check_input, positive_pair
from .padding import Pads, check_padding, out_size, padding_config, resolve_pads


class ConvCache(NamedTuple):
    """What `Conv2D.forward` keeps for `backward`."""

    cols: np.ndarray  # (C*kh*kw, Ho*Wo*N): the im2col matrix (the layer's reused scratch buffer)
    padded_shape: tuple[int, ...]  # (C, Hp, Wp, N) of the padded input, batch innermost
    input_shape: tuple[int, ...]  # (N, C, H, W) of the input
    top: int  # rows of padding above the input
    left: int  # columns of padding left of the input


def _positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    return int(value)


def _grouped(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Group by group, a (G, m, k) @ b (G, k, n) -> (G*m, n): one batched matmul over the
    groups, no Python loop. (groups=1 takes plain 2-D GEMMs instead.)"""
    return np.matmul(a, b).reshape(-1, b.shape[2])


class Conv2D(Layer):
    """y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, g*Cg + c, i*sh + p*dh,
    j*sw + q*dw], with g = o // (C_out/groups) the output channel's group, Cg = C_in/groups.

    x: (N, C_in, H, W) -> y: (N, C_out, H_out, W_out), H_out = (H + pad_h - eh) // sh + 1, where
    eh = dh*(kh - 1) + 1 is the effective (dilated) kernel height; "same" and "valid" follow TF
    with the effective kernel. weight: (C_out, C_in/groups, kh, kw) (torch's OIHW); bias:
    (C_out,) or None. groups == in_channels is a depthwise convolution.
    No kernel flip: like every framework this is cross-correlation; the flip (rot180) belongs
    only to the input gradient, where it appears as the scatter over taps in `backward`.
    """

    kind = "conv2d"

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        bias: bool = True,
        dtype="float32",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = positive_pair(stride, "stride")
        self.padding = check_padding(padding)
        self.dilation = positive_pair(dilation, "dilation")
        self.groups = _positive_int(groups, "groups")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ValueError(f"groups must divide {name}. "
                                 f"Received: groups={groups!r} with {name}={getattr(self, name)}")
        self.dtype = as_dtype(dtype)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        # the dilated kernel's extent, d*(k - 1) + 1 per axis: what one window spans
        self.effective_kernel = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        # torch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in/groups*kh*kw.
        bound = 1.0 / np.sqrt(self.in_channels // self.groups * kh * kw)
        rng = np.random.default_rng(seed)
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self.weight = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.bias = (
            rng.uniform(-bound, bound, self.out_channels).astype(self.dtype) if bias else None
        )
        self._cache = None
        self._cols = None
        self.zero_grad()

    def __repr__(self) -> str:
        extra = "" if self.dilation == (1, 1) else f", dilation={self.dilation}"
        extra += "" if self.groups == 1 else f", groups={self.groups}"
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}{extra}, "
            f"bias={self.bias is not None})"
        )

    def config(self) -> dict:
        """{in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias},
        JSON-able."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias is not None,
        }

    def pads(self, hw: tuple[int, int]) -> Pads:
        """(top, bottom, left, right) padding for an input of spatial size `hw`."""
        return resolve_pads(self.padding, hw, self.effective_kernel, self.stride)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C_out, H_out, W_out), validating as `forward` does."""
        _, h, w = input_shape
        t, b, l, r = self.pads((h, w))
        (eh, ew), (sh, sw) = self.effective_kernel, self.stride
        if h + t + b < eh or w + l + r < ew:
            dilated = "" if self.dilation == (1, 1) else (
                f" with dilation={self.dilation} (effective kernel {(eh, ew)})")
            raise ValueError(
                f"Conv2D kernel_size={self.kernel_size}{dilated} is larger than the padded input "
                f"{(h + t + b, w + l + r)}. Received: input spatial size {(h, w)}"
            )
        return self.out_channels, out_size(h + t + b, eh, sh), out_size(w + l + r, ew, sw)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "Conv2D", self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2D expects {self.in_channels} input channels (NCHW). "
                f"Received: input with shape {x.shape}"
            )
        ho, wo, (t, b, l, r) = self._geometry(x.shape[1:])
        # Work in (C, H, W, N) memory order: the batch is the innermost axis, so every tap copy
        # below and every max-pool tap after us moves contiguous runs of N values instead of
        # gathering with a stride (one copy of the input here, free when the input already has
        # that layout, as a Conv2D output passed through element-wise layers and pools does).
        # Measured at batch 256: the Skylark net's max-pool forward 1.8x and backward 3.4x
        # faster than on the (C, N, H, W) layout it had.
        xt = np.ascontiguousarray(x.transpose(1, 2, 3, 0))
        if t + b + l + r:
            xt = np.pad(xt, ((0, 0), (t, b), (l, r), (0, 0)))
        cols = self._im2col(xt, ho, wo)  # (C*kh*kw, Ho*Wo*N); group g's rows: the g-th block
        # The whole batch in ONE GEMM per group: (O/G, C/G*kh*kw) @ (C/G*kh*kw, Ho*Wo*N).
        if self.groups == 1:
            y = self.weight.reshape(self.out_channels, -1) @ cols
        else:
            y = _grouped(self._grouped_weight(), cols.reshape(self.groups, -1, cols.shape[1]))
        if self.bias is not None:
            y += self.bias[:, None]
        self._cache = ConvCache(cols, xt.shape, x.shape, top=t, left=l)
        # Returned as a transposed VIEW: (N, O, Ho, Wo) to the caller, (O, Ho, Wo, N) in memory.
        # No copy here, and a gradient that comes back in the same layout (MaxPool2D, Flatten,
        # Dense and the element-wise layers keep it) makes the reshape in `backward` free too.
        return y.reshape(self.out_channels, ho, wo, x.shape[0]).transpose(3, 0, 1, 2)

    def _geometry(self, chw) -> tuple[int, int, Pads]:
        """(H_out, W_out, pads) for an input of shape (C, H, W), validated as `output_shape`
        does; remembered for the last input size and options (~4 us a call at batch 1)."""
        key = (tuple(chw), self.kernel_size, self.stride, self.padding, self.dilation)
        if getattr(self, "_geometry_key", None) != key:
            _, ho, wo = self.output_shape(key[0])
            self._geometry_value = ho, wo, self.pads(key[0][1:])
            self._geometry_key = key
        return self._geometry_value

    def _im2col(self, xt: np.ndarray, ho: int, wo: int) -> np.ndarray:
        """xt (C, Hp, Wp, N) -> cols (C*kh*kw, Ho*Wo*N): row (c, p, q) is channel c shifted by
        tap (p, q) (times the dilation) and sampled every stride, for every output pixel."""
        c, n = xt.shape[0], xt.shape[3]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        hs, ws = (ho - 1) * sh + 1, (wo - 1) * sw + 1  # the rows and columns one tap spans
        shape = (c * kh * kw, ho * wo * n)
        if self._cols is None or self._cols.shape != shape or self._cols.dtype != xt.dtype:
            self._cols = np.empty(shape, xt.dtype)  # a scratch buffer reused across steps
        cols = self._cols.reshape(c, kh, kw, ho, wo, n)
        # One strided copy per tap (9 for 3x3), each moving runs of N values: far cheaper than
        # a Python loop over pixels, and a contiguous 2-D result that BLAS takes as it is.
        for p in range(kh):
            for q in range(kw):
                cols[:, p, q] = xt[:, p * dh : p * dh + hs : sh, q * dw : q * dw + ws : sw]
        return self._cols

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dy: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds dweight, dbias.

        `input_grad=False` skips dx and returns None: a first layer's input needs no gradient
        (torch skips it too, as the input does not require grad), and it costs a third of the
        layer's work.
        """
        cache: ConvCache = self._need_cache(self._cache)
        dy = np.asarray(dy, dtype=self.dtype)
        o, g = dy.shape[1], self.groups
        # (N, O, Ho, Wo) -> (O, Ho*Wo*N): a free reshape when dy has forward's (O, Ho, Wo, N)
        # memory layout, a copy otherwise.
        dy2 = dy.transpose(1, 2, 3, 0).reshape(o, -1)
        # dW[o, (c, p, q)] = sum over every output pixel of dy * the input under tap (p, q),
        # within o's group.
        if g == 1:  # one GEMM: (C*kh*kw, Ho*Wo*N) @ (Ho*Wo*N, O), transposed back (a view)
            # this orientation: OpenBLAS ~1.2x faster on the skinny shape (1.41 vs 1.68 ms for
            # the Skylark net at batch 256), the same products and sums
            dw = (cache.cols @ dy2.T).T
        else:  # per group: (O/G, Ho*Wo*N) @ (Ho*Wo*N, C/G*kh*kw)
            cols_t = cache.cols.reshape(g, -1, dy2.shape[1]).transpose(0, 2, 1)
            dw = _grouped(dy2.reshape(g, o // g, -1), cols_t)
        self._accumulate("weight", dw.reshape(self.weight.shape))
        if self.bias is not None:
            self._accumulate("bias", dy2.sum(axis=1))
        if not input_grad:
            return None
        return self._input_grad(dy2, cache, dy.shape)

    def _input_grad(self, dy2: np.ndarray, cache: ConvCache, dy_shape) -> np.ndarray:
        """dy2 (O, Ho*Wo*N) -> dx (N, C, H, W): W^T dy per group, then col2im."""
        n, o, ho, wo = dy_shape
        (kh, kw), c, g = self.kernel_size, self.in_channels, self.groups
        if g == 1:  # one GEMM: (C*kh*kw, O) @ (O, Ho*Wo*N)
            dcols = self.weight.reshape(o, -1).T @ dy2
        else:  # per group: (C/G*kh*kw, O/G) @ (O/G, Ho*Wo*N)
            dcols = _grouped(self._grouped_weight().transpose(0, 2, 1), dy2.reshape(g, o // g, -1))
        dcols = dcols.reshape(c, kh, kw, ho, wo, n)
        # col2im: each tap (p, q) scatters its row back onto a strided grid, offset by the
        # dilation. `+=`: neighbouring taps overlap. (This scatter over taps is where the
        # kernel flip, rot180, hides.)
        (sh, sw), (dh, dw) = self.stride, self.dilation
        hs, ws = (ho - 1) * sh + 1, (wo - 1) * sw + 1  # the rows and columns one tap spans
        dxt = np.zeros(cache.padded_shape, dtype=self.dtype)  # (C, Hp, Wp, N)
        for p in range(kh):
            for q in range(kw):
                dxt[:, p * dh : p * dh + hs : sh, q * dw : q * dw + ws : sw] += dcols[:, p, q]
        h, w = cache.input_shape[2:]
        t, l = cache.top, cache.left
        # (N, C, H, W) to the caller, in the (C, H, W, N) memory layout of forward's input copy
        return dxt[:, t : t + h, l : l + w].transpose(3, 0, 1, 2)

    def _grouped_weight(self) -> np.ndarray:
        """weight (O, C/G, kh, kw) as (G, O/G, C/G*kh*kw): a free reshape."""
        return self.weight.reshape(self.groups, self.out_channels // self.groups, -1)
