"""Conv2D: 2-D cross-correlation of NCHW batches, like `torch.nn.Conv2d` (with dilation, groups)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import blocks as _blocks
from .base import Layer, as_dtype, check_grad, check_input, positive_pair
from .padding import Pads, check_padding, out_size, pad_hw, padding_config, resolve_pads


class ConvCache(NamedTuple):
    """What `Conv2D.forward` keeps for `backward`: the padded input, not the im2col matrix
    (9x the input for a 3x3 kernel); `backward` rebuilds it a block at a time, in cache."""

    xt: np.ndarray | None  # (C, Hp, Wp, N): the padded input, batch innermost (if no cols)
    cols: np.ndarray | None  # the im2col matrix when forward built it in one block, else None
    padded_shape: tuple[int, ...]  # (C, Hp, Wp, N)
    row_blocks: list[slice]  # forward's blocks of output rows, which backward follows
    input_shape: tuple[int, ...]  # (N, C, H, W) of the input
    out_hw: tuple[int, int]  # (H_out, W_out)
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
        o, n = self.out_channels, x.shape[0]
        ho, wo, (t, b, l, r), row_blocks = self._plan(x.shape[1:], n)
        # Work in (C, H, W, N) memory order: the batch is the innermost axis, so every tap copy
        # below and every max-pool tap after us moves contiguous runs of N values instead of
        # gathering with a stride (one copy of the input here, free when the input already has
        # that layout, as a Conv2D output passed through element-wise layers and pools does).
        # Measured at batch 256: the Skylark net's max-pool forward 1.8x and backward 3.4x
        # faster than on the (C, N, H, W) layout it had.
        xt = x.transpose(1, 2, 3, 0)
        # padded straight from the transposed view: one copy, where a contiguous copy and
        # np.pad made two
        xt = pad_hw(xt, (t, b, l, r), 1, 2) if t + b + l + r else np.ascontiguousarray(xt)
        y = np.empty((o, ho, wo * n), self.dtype)  # (O, Ho, Wo*N): (O, Ho, Wo, N) in memory
        for rows in row_blocks:
            # A block of output rows at a time (see blocks.py): its im2col matrix is still in
            # the L2 cache when the GEMM reads it, and the GEMM writes straight into y.
            cols = self._im2col(xt, rows, wo)  # (C*kh*kw, rows*Wo*N); group g: the g-th block
            out = y[:, rows].reshape(o, -1)  # (O, rows*Wo*N), a view of y
            # One GEMM per group: (O/G, C/G*kh*kw) @ (C/G*kh*kw, rows*Wo*N).
            if self.groups == 1:
                np.matmul(self.weight.reshape(o, -1), cols, out=out)
            else:
                g = self.groups
                np.matmul(self._grouped_weight(), cols.reshape(g, -1, cols.shape[1]),
                          out=out.reshape(g, o // g, -1))
            if self.bias is not None:
                out += self.bias[:, None]
        # One block (a small batch): keep its im2col matrix for backward, which then need not
        # rebuild it (~9 us of the ~130 us batch-1 step). Several: backward rebuilds the
        # blocks from xt, which must then be our own copy: xt is the caller's array itself
        # when it already had the (C, H, W, N) layout and no padding, and an in-place change
        # to it before backward would silently change the weight gradient.
        if len(row_blocks) == 1:  # keep the matrix, not the input
            self._cache = ConvCache(None, cols, xt.shape, row_blocks, x.shape, (ho, wo), t, l)
        else:
            own = xt.copy() if np.may_share_memory(xt, x) else xt
            self._cache = ConvCache(own, None, xt.shape, row_blocks, x.shape, (ho, wo), t, l)
        # Returned as a transposed VIEW: (N, O, Ho, Wo) to the caller, (O, Ho, Wo, N) in memory.
        # No copy here, and a gradient that comes back in the same layout (MaxPool2D, Flatten,
        # Dense and the element-wise layers keep it) makes the reshape in `backward` free too.
        return y.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)

    def _row_blocks(self, ho: int, wo: int, n: int) -> list[slice]:
        """Output rows in blocks whose im2col matrix and GEMM output fit in the cache; one
        block, all rows, when blocking does not pay: a compute-bound GEMM (K over
        BLOCK_MAX_K) or a single output row over twice the budget (see blocks.py; LeNet-5's
        first conv at batch 256, 889 KB a row, still gains from blocks of one row)."""
        (kh, kw), c, g = self.kernel_size, self.in_channels, self.groups
        row = self._row_bytes(wo, n)
        if c // g * kh * kw > _blocks.BLOCK_MAX_K or row > 2 * _blocks.BLOCK_BYTES:
            return [slice(0, ho)]
        return _blocks.blocks(ho, row)

    def _cols_row_bytes(self, wo: int, n: int) -> int:
        """The bytes of one output row's im2col matrix (or of its gradient, W^T dy)."""
        (kh, kw), c = self.kernel_size, self.in_channels
        return c * kh * kw * wo * n * self.dtype.itemsize

    def _row_bytes(self, wo: int, n: int) -> int:
        """The bytes of one output row's im2col matrix and GEMM output."""
        return self._cols_row_bytes(wo, n) + self.out_channels * wo * n * self.dtype.itemsize

    def _plan(self, chw, n: int) -> tuple[int, int, Pads, list[slice]]:
        """(H_out, W_out, pads, row blocks) for a batch of n inputs of shape (C, H, W),
        validated as `output_shape` does; remembered for the last input size, options and
        block settings (a batch-1 step would spend ~8 us here)."""
        key = (chw, n, self.kernel_size, self.stride, self.padding, self.dilation,
               _blocks.BLOCK_BYTES, _blocks.BLOCK_MAX_K)
        if getattr(self, "_plan_key", None) != key:
            _, ho, wo = self.output_shape(chw)
            self._plan_value = ho, wo, self.pads(chw[1:]), self._row_blocks(ho, wo, n)
            self._plan_key = key
        return self._plan_value

    def _im2col(self, xt: np.ndarray, rows: slice, wo: int) -> np.ndarray:
        """xt (C, Hp, Wp, N) -> cols (C*kh*kw, R*Wo*N) for the R output rows `rows`: row
        (c, p, q) is channel c shifted by tap (p, q) (times the dilation) and sampled every
        stride, for every output pixel of those rows. Written into a scratch buffer that the
        next call reuses: consume it before calling again."""
        c, n = xt.shape[0], xt.shape[3]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        r = rows.stop - rows.start
        size = c * kh * kw * r * wo * n
        if self._cols is None or self._cols.size < size or self._cols.dtype != xt.dtype:
            self._cols = np.empty(size, xt.dtype)  # a scratch buffer reused across calls
        cols = self._cols[:size].reshape(c, kh, kw, r, wo, n)
        # Every tap of every output pixel as ONE read-only strided view of the input, element
        # [c, p, q, i, j, n] = xt[c, (i0 + i)*sh + p*dh, j*sw + q*dw, n]: a tap steps by the
        # dilation, an output pixel by the stride. One copy then moves runs of N values into a
        # contiguous 2-D matrix that BLAS takes as it is (measured: 1.4x faster than a copy
        # per tap at batch 1, 1.1x at 256; either is far cheaper than a loop over pixels).
        i0 = rows.start * sh  # the first input row of these output rows
        s_c, s_h, s_w, s_n = xt.strides
        # np.ndarray over xt's buffer: the view as_strided makes, at a tenth of its ~3 us call
        # cost, and it refuses a view that would reach past the buffer. (xt is contiguous.)
        windows = np.ndarray((c, kh, kw, r, wo, n), xt.dtype, xt, i0 * s_h,
                             (s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw, s_n))
        windows.flags.writeable = False
        np.copyto(cols, windows)
        return cols.reshape(c * kh * kw, r * wo * n)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dy: (N, C_out, H_out, W_out) -> dx: (N, C_in, H, W); adds dweight, dbias.

        `input_grad=False` skips dx and returns None: a first layer's input needs no gradient
        (torch skips it too, as the input does not require grad), and it costs a third of the
        layer's work.
        """
        cache: ConvCache = self._need_cache(self._cache)
        n, (ho, wo) = cache.input_shape[0], cache.out_hw
        o, g = self.out_channels, self.groups
        dy = check_grad(dy, (n, o, ho, wo), "Conv2D").astype(self.dtype, copy=False)
        # (N, O, Ho, Wo) -> (O, Ho, Wo*N): a free reshape when dy has forward's (O, Ho, Wo, N)
        # memory layout, a copy otherwise.
        dy3 = dy.transpose(1, 2, 3, 0).reshape(o, ho, wo * n)
        # the layer's gradients, added into block by block: (O, C/G*kh*kw) and (O,) views
        dw = self._grad("weight").reshape(o, -1)
        db = self._grad("bias") if self.bias is not None else None
        dxt = np.zeros(cache.padded_shape, self.dtype) if input_grad else None  # (C, Hp, Wp, N)
        # forward's blocks (one, whose im2col matrix forward kept, for a small batch)
        for rows in cache.row_blocks:
            dyb = dy3[:, rows].reshape(o, -1)  # (O, R*Wo*N), a view
            # forward's im2col block again: rebuilt from the input in cache, cheaper than
            # keeping the whole 9x-the-input matrix and reading it back from memory
            cols = self._im2col(cache.xt, rows, wo) if cache.cols is None else cache.cols
            # dW[o, (c, p, q)] = sum over every output pixel of dy * the input under tap (p, q),
            # within o's group.
            if g == 1:  # one GEMM: (C*kh*kw, R*Wo*N) @ (R*Wo*N, O), transposed back (a view)
                # this orientation: OpenBLAS ~1.2x faster on the skinny shape (1.41 vs 1.68 ms
                # for the Skylark net at batch 256, unblocked), the same products and sums
                dw += (cols @ dyb.T).T
            else:  # per group: (O/G, R*Wo*N) @ (R*Wo*N, C/G*kh*kw)
                cols_t = cols.reshape(g, -1, cols.shape[1]).transpose(0, 2, 1)
                dw += _grouped(dyb.reshape(g, o // g, -1), cols_t)
            if db is not None:
                db += dyb.sum(axis=1)
            if dxt is not None and cache.cols is None:  # the im2col block is free now
                self._col2im(dyb, cols, dxt, rows, wo)
        if dxt is None:
            return None
        if cache.cols is not None:  # forward's kept cols must survive a second backward
            self._input_grad_in_blocks(dy3, dxt, wo)
        h, w = cache.input_shape[2:]
        t, l = cache.top, cache.left
        # (N, C, H, W) to the caller, in the (C, H, W, N) memory layout of forward's input copy
        return dxt[:, t : t + h, l : l + w].transpose(3, 0, 1, 2)

    def _input_grad_in_blocks(self, dy3: np.ndarray, dxt: np.ndarray, wo: int) -> None:
        """Add the input gradient of dy3 (O, Ho, Wo*N) into dxt (C, Hp, Wp, N) when forward
        ran in one block: in blocks of output rows once W^T dy, a (C*kh*kw, Ho*Wo*N) matrix,
        exceeds DX_BLOCK_FROM (see blocks.py), so it is never written whole and read back
        from memory by col2im."""
        o, ho, n = dy3.shape[0], dy3.shape[1], dxt.shape[3]
        row = self._cols_row_bytes(wo, n)
        dx_blocks = (_blocks.blocks(ho, row, _blocks.DX_BLOCK_BYTES)
                     if row * ho > _blocks.DX_BLOCK_FROM else [slice(0, ho)])
        k = self.in_channels * self.kernel_size[0] * self.kernel_size[1]  # rows of W^T dy
        buffer = np.empty(k * (dx_blocks[0].stop - dx_blocks[0].start) * wo * n, self.dtype)
        for rows in dx_blocks:
            size = (rows.stop - rows.start) * wo * n
            scratch = buffer[: k * size].reshape(k, size)  # C-contiguous, as matmul's out
            self._col2im(dy3[:, rows].reshape(o, -1), scratch, dxt, rows, wo)

    def _col2im(self, dyb: np.ndarray, scratch: np.ndarray | None, dxt: np.ndarray,
                rows: slice, wo: int) -> None:
        """Add the input gradient of the output rows `rows` into dxt (C, Hp, Wp, N): W^T dy
        per group (into `scratch`, the (C*kh*kw, R*Wo*N) im2col block, now free; a new array
        if None), then each tap's row scattered back onto the input pixels it read."""
        (kh, kw), c, g, o = self.kernel_size, self.in_channels, self.groups, self.out_channels
        if g == 1:  # one GEMM: (C*kh*kw, O) @ (O, R*Wo*N)
            dcols = np.matmul(self.weight.reshape(o, -1).T, dyb, out=scratch)
        else:  # per group: (C/G*kh*kw, O/G) @ (O/G, R*Wo*N)
            out = None if scratch is None else scratch.reshape(g, -1, dyb.shape[1])
            wt, dyg = self._grouped_weight().transpose(0, 2, 1), dyb.reshape(g, o // g, -1)
            # O/G == 1 (depthwise): each product has one term, so a broadcast multiply gives the
            # same bits as the matmul, whose inner-size-1 GEMMs ran ~4-6x slower (measured:
            # 6.1 vs 1.6 ms, mobilenet-v2's 48-channel depthwise conv at batch 64)
            dcols = (np.multiply(wt, dyg, out=out) if o == g else np.matmul(wt, dyg, out=out))
        r = rows.stop - rows.start
        dcols = dcols.reshape(c, kh, kw, r, wo, dxt.shape[3])
        # col2im: each tap (p, q) scatters its row back onto a strided grid, offset by the
        # dilation. `+=`: neighbouring taps, and neighbouring row blocks, overlap. (This
        # scatter over taps is where the kernel flip, rot180, hides.)
        (sh, sw), (dh, dw) = self.stride, self.dilation
        i0, hs, ws = rows.start * sh, (r - 1) * sh + 1, (wo - 1) * sw + 1
        for p in range(kh):
            for q in range(kw):
                dxt[:, i0 + p * dh : i0 + p * dh + hs : sh,
                    q * dw : q * dw + ws : sw] += dcols[:, p, q]

    def _grouped_weight(self) -> np.ndarray:
        """weight (O, C/G, kh, kw) as (G, O/G, C/G*kh*kw): a free reshape."""
        return self.weight.reshape(self.groups, self.out_channels // self.groups, -1)
