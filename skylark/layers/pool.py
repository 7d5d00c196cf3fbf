"""Pooling over NCHW batches, like torch: `MaxPool2D` (nn.MaxPool2d, dilation and ceil_mode
included), `AvgPool2D` (nn.AvgPool2d with count_include_pad, and TF's "same") and
`GlobalAvgPool2D` ((N, C, H, W) -> (N, C), the mean over H and W)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from . import blocks as _blocks
from .base import Layer, check_grad, check_input, positive_pair
from .padding import Pads, check_padding, pad_hw, padding_config, pool_out_size, resolve_pads


class PoolCache(NamedTuple):
    """What `MaxPool2D.forward` keeps for `backward`: each window's winner, found in two passes.
    The arrays are in the input's memory order (`order`), not necessarily N, C, H, W."""

    col_arg: np.ndarray  # (N, C, Hp, Wo) permuted: tap of the max along W of each window row
    row_arg: np.ndarray  # (N, C, Ho, Wo) permuted: tap of the max along H over those row maxima
    row_max_shape: tuple[int, ...]  # (N, C, Hp, Wo) permuted, of the row maxima
    padded_shape: tuple[int, ...]  # (N, C, Hp, Wp) permuted, of the input padded with -inf
    pads: Pads  # (top, bottom, left, right)
    order: tuple[int, ...]  # the input's axes, outermost first in memory (see _memory_order)
    parts: list[slice]  # forward's cache blocks of the outermost memory axis
    out_shape: tuple[int, ...]  # (N, C, H_out, W_out) of the output


def _bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool. Received: {name}={value!r}")
    return bool(value)


class _Window2D(Layer):
    """What the windowed pools share: kernel_size, stride (default: the kernel), padding (int,
    pair, "valid", "same"), dilation, ceil_mode, and the output size torch computes."""

    dilation = (1, 1)
    ceil_mode = False

    def _setup(self, kernel_size, stride, padding, dilation=1) -> None:
        self.kernel_size = positive_pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else positive_pair(stride, "stride")
        self.dilation = positive_pair(dilation, "dilation")
        self.padding = check_padding(padding)
        if isinstance(self.padding, tuple) and any(
            2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)
        ):
            # torch's rule for 2-D pools: half the kernel_size, whatever the dilation
            raise ValueError(
                f"{type(self).__name__} padding must be at most half the kernel size, as torch "
                f"requires. Received: padding={padding!r} with kernel_size={self.kernel_size}"
            )

    @property
    def span(self) -> tuple[int, int]:
        """The pixels one window covers per axis: dilation * (kernel_size - 1) + 1."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation,
                                                     strict=True))

    def pads(self, hw: tuple[int, int]) -> Pads:
        """(top, bottom, left, right) padding the forward applies to an input of spatial size
        `hw`; with ceil_mode it includes the extra bottom/right rows and columns that the last
        windows reach past the padding."""
        return self._plan(hw)[0]

    def _plan(self, hw) -> tuple[Pads, tuple[int, int]]:
        """The pads and (H_out, W_out), by torch's output-size rule (an H_out < 1: no window)."""
        t, b, l, r = resolve_pads(self.padding, tuple(hw), self.span, self.stride)
        outs, extra = [], []
        for n, e, s, lo, hi in zip(hw, self.span, self.stride, (t, l), (b, r), strict=True):
            out = pool_out_size(n, e, s, lo, hi, self.ceil_mode)
            outs.append(out)
            extra.append(max(0, (out - 1) * s + e - (n + lo + hi)))
        return (t, b + extra[0], l, r + extra[1]), (outs[0], outs[1])

    def _checked_plan(self, hw) -> tuple[Pads, tuple[int, int]]:
        """`_plan`, ValueError when no window fits or a window covers only padding; remembered
        for the last input size and options (a batch-1 step would spend ~20 us here)."""
        key = (tuple(hw), self.kernel_size, self.stride, self.padding, self.dilation,
               self.ceil_mode)
        if getattr(self, "_plan_key", None) != key:
            self._plan_value = self._validated_plan(key[0])
            self._plan_key = key
        return self._plan_value

    def _validated_plan(self, hw) -> tuple[Pads, tuple[int, int]]:
        h, w = hw
        (t, b, l, r), (ho, wo) = self._plan(hw)
        if ho < 1 or wo < 1:
            raise ValueError(
                f"{type(self).__name__} kernel_size={self.kernel_size} "
                f"(dilation={self.dilation}) is larger than the padded input "
                f"{(h + t + b, w + l + r)}. Received: input spatial size {(h, w)}"
            )
        for axis, n, k, d, s, lo, out in zip("HW", hw, self.kernel_size, self.dilation,
                                             self.stride, (t, l), (ho, wo), strict=True):
            if d == 1:  # contiguous windows that fit always hold a real pixel
                continue
            taps = (np.arange(out) * s - lo)[:, None] + np.arange(k) * d
            empty = np.flatnonzero(~((taps >= 0) & (taps < n)).any(axis=1))
            if empty.size:  # only possible with a dilation: torch would output -inf there
                raise ValueError(
                    f"{type(self).__name__} window {int(empty[0])} along {axis} covers only "
                    f"padding (kernel_size={self.kernel_size}, dilation={self.dilation}, "
                    f"padding={self.padding!r}). Received: input spatial size {(h, w)}"
                )
        return (t, b, l, r), (ho, wo)

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, H_out, W_out), validating as `forward` does."""
        c, h, w = input_shape
        _, (ho, wo) = self._checked_plan((h, w))
        return c, ho, wo

    def _window_config(self) -> dict:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": padding_config(self.padding),
        }


class MaxPool2D(_Window2D):
    """y[n, c, i, j] = max_{p, q} xpad[n, c, i*sh + p*dh, j*sw + q*dw], padding with -inf.

    x: (N, C, H, W) -> y: (N, C, H_out, W_out), H_out = (H + pad_h - dh*(kh-1) - 1) // sh + 1
    (ceil_mode: rounded up, as torch does, but a window never starts in the bottom/right
    padding). stride defaults to kernel_size. padding: int, pair (each at most half the dilated
    kernel, as torch requires), "valid" or "same" (TF's rule, on the dilated kernel).
    ceil_mode needs int padding: TF's "same" has no such option and already rounds up.
    """

    kind = "maxpool2d"

    def __init__(self, kernel_size=2, stride=None, padding=0, dilation=1,
                 ceil_mode=False) -> None:
        super().__init__()
        self._setup(kernel_size, stride, padding, dilation)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")
        if self.ceil_mode and isinstance(self.padding, str):
            raise ValueError(
                "MaxPool2D ceil_mode applies to int padding only (torch's); 'same' (TF's rule) "
                "already rounds the output size up and 'valid' is padding=0. "
                f"Received: ceil_mode=True with padding={self.padding!r}"
            )
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"MaxPool2D(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, dilation={self.dilation}, ceil_mode={self.ceil_mode})"
        )

    def config(self) -> dict:
        """{kernel_size, stride, padding, dilation, ceil_mode}, JSON-able."""
        return {**self._window_config(), "dilation": list(self.dilation),
                "ceil_mode": self.ceil_mode}

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "MaxPool2D", None)
        # Work on the input in its memory order (a Conv2D output is (C, H, W, N) in memory):
        # the taps below then move contiguous runs; measured at batch 256, forward 1.8x and
        # backward (with `_route`'s direct writes) 3.4x faster than through the NCHW view.
        # The plan (pads, output size, memory order, cache blocks) is remembered for the last
        # input shape, layout and options: ~5 us of a batch-1 step otherwise.
        key = (x.shape, x.strides, x.dtype, self.kernel_size, self.stride, self.padding,
               self.dilation, self.ceil_mode, _blocks.BLOCK_BYTES)
        if getattr(self, "_layout_key", None) == key:
            pads, (ho, wo), order, parts = self._layout
            _, xp, ah, aw = _padded_in_memory_order(x, pads, -np.inf, order)
        else:
            pads, (ho, wo) = self._checked_plan(x.shape[2:])
            order, xp, ah, aw = _padded_in_memory_order(x, pads, -np.inf)
            parts = _outer_blocks(xp, order)
            self._layout, self._layout_key = (pads, (ho, wo), order, parts), key
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        # Separable: the max over each window's columns (along W), then over its rows (along H).
        # The first maximum of each row, then the first row holding the overall maximum, IS the
        # first maximum in row-major window order, so the tie rule survives the split (a
        # dilated window is a grid of taps too).
        if len(parts) == 1:  # a small input, in one go: ~3 us less at batch 1
            row_max, col_arg = _first_max(xp, aw, kw, sw, wo, dw)  # (N, C, Hp, Wo) permuted
            y, row_arg = _first_max(row_max, ah, kh, sh, ho, dh)  # (N, C, Ho, Wo) permuted
            row_shape = row_max.shape
        else:  # in cache blocks (blocks.py), each into its part of the outputs
            row_shape = _with(xp.shape, aw, wo)
            y = np.empty(_with(row_shape, ah, ho), xp.dtype)
            col_arg = np.empty(row_shape, _arg_dtype(kw))
            row_arg = np.empty(y.shape, _arg_dtype(kh))
            for part in parts:
                row_max, _ = _first_max(xp[part], aw, kw, sw, wo, dw, arg_out=col_arg[part])
                _first_max(row_max, ah, kh, sh, ho, dh, out=y[part], arg_out=row_arg[part])
        y = y.transpose(_inverse(order))  # (N, C, Ho, Wo), in the input's memory order
        self._cache = PoolCache(col_arg, row_arg, row_shape, xp.shape, pads, order, parts,
                                y.shape)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, H_out, W_out) -> dx: (N, C, H, W); one winner per window."""
        cache: PoolCache = self._need_cache(self._cache)
        order = cache.order
        # the gradient of the logical (N, C, Ho, Wo) output; row_arg is in memory order
        dy = check_grad(dy, cache.out_shape, "MaxPool2D")
        dy = dy.transpose(order)  # forward's memory order: free for a dy in it
        ah, aw = order.index(2), order.index(3)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        # built in forward's memory order, so the Conv2D before us gets its gradient in the
        # layout it reshapes for free
        dxp = np.empty(cache.padded_shape, dy.dtype)
        if len(cache.parts) == 1:  # one block: no sliced views (~1 us at batch 1)
            d_row_max = _route(dy, cache.row_arg, ah, kh, sh, dh, cache.row_max_shape)
            _route(d_row_max, cache.col_arg, aw, kw, sw, dw, out=dxp)
        else:
            for part in cache.parts:  # forward's blocks
                row_shape = _with(cache.row_max_shape, 0, dxp[part].shape[0])
                d_row_max = _route(dy[part], cache.row_arg[part], ah, kh, sh, dh, row_shape)
                _route(d_row_max, cache.col_arg[part], aw, kw, sw, dw, out=dxp[part])
        return _unpad(dxp.transpose(_inverse(order)), cache.pads)


class AvgPool2D(_Window2D):
    """y[n, c, i, j] = sum_{p, q} xpad[n, c, i*sh + p, j*sw + q] / divisor, padding with 0.

    x: (N, C, H, W) -> y: (N, C, H_out, W_out), H_out = (H + pad_h - kh) // sh + 1; stride
    defaults to kernel_size. Int padding (each at most half the kernel, as torch requires)
    follows torch's count_include_pad (default True): the divisor is kh*kw, or with False the
    number of real (unpadded) cells in the window. "same" follows TF: it averages the real
    cells only; "valid" has no padding. count_include_pad belongs to int padding only.
    """

    kind = "avgpool2d"

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=None) -> None:
        super().__init__()
        self._setup(kernel_size, stride, padding)
        if isinstance(self.padding, str):
            if count_include_pad is not None:
                raise ValueError(
                    "AvgPool2D count_include_pad applies to int padding only (torch's); 'same' "
                    "(TF's rule) averages the real cells only and 'valid' has no padding. "
                    f"Received: count_include_pad={count_include_pad!r} with "
                    f"padding={self.padding!r}"
                )
        else:
            count_include_pad = True if count_include_pad is None else _bool(
                count_include_pad, "count_include_pad")
        self.count_include_pad = count_include_pad
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"AvgPool2D(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, count_include_pad={self.count_include_pad})"
        )

    def config(self) -> dict:
        """{kernel_size, stride, padding, count_include_pad (None with a string padding)}."""
        return {**self._window_config(), "count_include_pad": self.count_include_pad}

    def divisor(self, hw: tuple[int, int]):
        """What each window's sum is divided by: kh*kw, or an (H_out, W_out) array of the
        real cells in each window ("same", or int padding with count_include_pad=False)."""
        (t, _, l, _), (ho, wo) = self._checked_plan(hw)
        if self.count_include_pad or self.padding == "valid":
            return self.kernel_size[0] * self.kernel_size[1]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return np.outer(_real_cells(hw[0], kh, sh, t, ho), _real_cells(hw[1], kw, sw, l, wo))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "AvgPool2D", None)
        pads, (ho, wo) = self._checked_plan(x.shape[2:])
        # In the input's memory order, as MaxPool2D: the output keeps the input's layout, so
        # the element-wise layers around us never mix two layouts (a mixed-layout multiply
        # reads one side with a large stride: LeNet-5's backward ~1.3x slower at batch 256).
        order, xp, ah, aw = _padded_in_memory_order(x, pads, 0)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        row_sum = _window_sum(xp, aw, kw, sw, wo)  # (N, C, Hp, Wo) permuted: window rows' sums
        div = self.divisor(x.shape[2:])
        total = _window_sum(row_sum, ah, kh, sh, ho).transpose(_inverse(order))
        self._cache = (xp.shape, row_sum.shape, pads, div, order)
        return total / np.asarray(div, x.dtype)  # element-wise: keeps the memory order

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, H_out, W_out) -> dx: (N, C, H, W): each window's dy / divisor, spread
        over its cells (`+=`: overlapping windows add up)."""
        padded_shape, row_shape, pads, div, order = self._need_cache(self._cache)
        n, c, hp, wp = (padded_shape[order.index(a)] for a in range(4))  # logical N, C, Hp, Wp
        dy = check_grad(dy, (n, *self.output_shape((c, hp - pads[0] - pads[1],
                                                      wp - pads[2] - pads[3]))), "AvgPool2D")
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        d_sum = (dy / np.asarray(div, dy.dtype)).transpose(order)  # forward's memory order
        ah, aw = order.index(2), order.index(3)
        d_row = _spread(d_sum, ah, kh, sh, np.zeros(row_shape, dy.dtype))
        dxp = _spread(d_row, aw, kw, sw, np.zeros(padded_shape, dy.dtype))
        return _unpad(dxp.transpose(_inverse(order)), pads)


class GlobalAvgPool2D(Layer):
    """y[n, c] = mean_{h, w} x[n, c, h, w]: (N, C, H, W) -> (N, C), like torch's
    nn.AdaptiveAvgPool2d(1) followed by a flatten, and Keras' GlobalAveragePooling2D."""

    kind = "globalavgpool2d"

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int]:
        """(C, H, W) -> (C,)."""
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2D needs a (C, H, W) input. "
                             f"Received: input shape {tuple(input_shape)}")
        return (input_shape[0],)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "GlobalAvgPool2D", None)
        self._cache = x.shape, _memory_order(x)
        return x.mean(axis=(2, 3))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C) -> dx: (N, C, H, W), every pixel dy / (H*W)."""
        shape, order = self._need_cache(self._cache)
        dy = check_grad(dy, shape[:2], "GlobalAvgPool2D")
        # in x's memory layout, so the element-wise layers before us never mix two layouts
        dx = np.empty([shape[a] for a in order], dy.dtype).transpose(_inverse(order))
        dx[...] = (dy / dy.dtype.type(shape[2] * shape[3]))[:, :, None, None]
        return dx


def _unpad(a: np.ndarray, pads: Pads) -> np.ndarray:
    if not any(pads):
        return a
    t, b, l, r = pads
    return a[:, :, t : a.shape[2] - b, l : a.shape[3] - r]


def _real_cells(n: int, k: int, s: int, lo: int, out: int) -> np.ndarray:
    """How many of the k cells of each of the `out` windows lie inside the n real pixels."""
    start = np.arange(out) * s - lo
    return np.minimum(start + k, n) - np.maximum(start, 0)


def _taps(a: np.ndarray, axis: int, k: int, s: int, n: int, d: int = 1) -> list[np.ndarray]:
    """The k strided views a[..., i*d + j*s, ...] (j < n) along `axis`: tap i of every window."""
    return [a[index] for index in _tap_indices(axis, k, s, n, d)]


@functools.lru_cache(maxsize=256)
def _tap_indices(axis: int, k: int, s: int, n: int, d: int) -> tuple[tuple[slice, ...], ...]:
    """`_taps`' index tuples, remembered (the pools take 4-8 taps a step: ~2 us at batch 1)."""
    before, span = (slice(None),) * axis, (n - 1) * s + 1
    return tuple((*before, slice(i * d, i * d + span, s)) for i in range(k))


def _first_max(a: np.ndarray, axis: int, k: int, s: int, n: int, d: int = 1, *,
               out: np.ndarray | None = None, arg_out: np.ndarray | None = None):
    """(max, arg): the max over the n windows of k taps (dilation d), stride s along `axis`,
    and each window's tap index of its FIRST maximum (dtype `_arg_dtype(k)`), into `out` and
    `arg_out` (new arrays where None): a running max over the k taps, each a strided view (no
    window copy, no argmax over a tiny last axis, no data-dependent branch)."""
    taps = _taps(a, axis, k, s, n, d)
    # Ties: the strict `>` never lets a later equal tap take the lead, so the FIRST maximum
    # wins, the element torch, TF and JAX send the whole gradient to. Routing it to every
    # tied element instead (as some tutorials do) inflates gradients wherever a flat
    # background makes windows tie.
    if k == 2:
        # The loop below for two taps, in two calls instead of six (its copy, zero fill and
        # index arithmetic are no-ops here; measured: the batch-1 step 8% faster). The mask is
        # the winning tap's index: False for tap 0, True for tap 1.
        return (np.maximum(taps[0], taps[1], out=out),
                np.greater(taps[1], taps[0], out=arg_out))
    best = taps[0].copy() if out is None else out  # C-contiguous
    if out is not None:
        np.copyto(best, taps[0])
    arg = np.empty(best.shape, _arg_dtype(k)) if arg_out is None else arg_out
    arg.fill(0)  # every window's leader so far: tap 0
    for i, tap in enumerate(taps[1:], start=1):
        better = tap > best
        np.maximum(best, tap, out=best)  # not copyto(where=better): a nan still propagates
        # Taps come in increasing order, so the newest leader has the largest index: a max
        # records it without a masked (branchy, ~6x slower on random data) write.
        np.maximum(arg, better * arg.dtype.type(i), out=arg)
    return best, arg


def _arg_dtype(k: int) -> np.dtype:
    """The dtype of a window's winning tap index: bool for two taps (see _first_max)."""
    return np.dtype(bool) if k == 2 else np.min_scalar_type(k - 1)


def _with(shape: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    """`shape` with `axis` set to `size`."""
    return (*shape[:axis], size, *shape[axis + 1:])


def _outer_blocks(a: np.ndarray, order: tuple[int, ...]) -> list[slice]:
    """Blocks of the outermost memory axis of `a` (already in memory order) for cache
    blocking, when that axis is the batch or the channels, which pool independently; a
    single block when it is H or W. Measured at batch 256, the Skylark net's max-pool: forward
    1.3x and backward 1.25x faster a channel at a time than on the whole batch."""
    if order[0] > 1 or a.nbytes * 3 // 2 <= _blocks.BLOCK_BYTES:
        return [slice(None)]
    return _blocks.blocks(a.shape[0], a[:1].nbytes * 3 // 2)  # the block and its row maxima (half)


def _memory_order(x: np.ndarray) -> tuple[int, ...]:
    """x's axes from the largest stride to the smallest (ties in axis order): x.transpose(order)
    is C-contiguous when x is a transposed view of a C-contiguous array."""
    return _order_of(x.strides)


@functools.lru_cache(maxsize=64)
def _order_of(strides: tuple[int, ...]) -> tuple[int, ...]:
    """`_memory_order` by strides, remembered: a few layouts recur every step (~2 us saved
    a call at batch 1)."""
    return tuple(sorted(range(len(strides)), key=lambda a: -abs(strides[a])))


def _padded_in_memory_order(x: np.ndarray, pads, value, order=None):
    """(order, xp, ah, aw): x's memory order (`order` if given), x transposed to it (a view)
    and padded with `value` by `pads` (top, bottom, left, right), and where H and W went in
    that order."""
    if order is None:
        order = _memory_order(x)
    xp, ah, aw = x.transpose(order), order.index(2), order.index(3)
    if any(pads):
        xp = pad_hw(xp, pads, ah, aw, value)
    return order, xp, ah, aw


@functools.lru_cache(maxsize=64)
def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes x.transpose(order) (remembered, as _order_of)."""
    return tuple(order.index(a) for a in range(len(order)))


def _route(d: np.ndarray, arg: np.ndarray, axis: int, k: int, s: int, dil: int,
           shape: tuple[int, ...] | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
    """An array of `shape` (or `out`, filled) holding d[..., j, ...] at tap arg[..., j, ...] of
    window j along `axis`, and zero everywhere else."""
    if out is None:
        out = np.empty(shape, d.dtype)
    n = d.shape[axis]
    # A multiply by the 0/1 mask, not np.where (branchy, ~6x slower): the losers get d * 0 =
    # +-0, the same value (an inf or nan in d would leak to them, but the loss refuses
    # non-finite logits before any backward).
    if (k == 1 or dil == 1) and s == k and n * s == out.shape[axis]:
        # The windows tile the axis exactly (the usual 2x2, stride 2 pool): every cell is one
        # tap of one window, so each tap is written once, with no zero fill and no `+=` pass
        # (measured at batch 256: the Skylark net's pool backward 1.5x faster).
        taps = _taps(out, axis, k, s, n, dil)
        if arg.dtype == bool:  # two taps, arg = "tap 1 won" (see _first_max)
            np.multiply(d, arg, out=taps[1])
            np.subtract(d, taps[1], out=taps[0])  # d - d = +0 where tap 1 won, else d - 0 = d
            return out
        for i, tap in enumerate(taps):
            np.multiply(d, arg == i, out=tap)
        return out
    out.fill(0)
    for i, tap in enumerate(_taps(out, axis, k, s, n, dil)):
        tap += d * (arg == i)  # `+=`: with stride < kernel, one pixel can win twice
    return out


def _window_sum(a: np.ndarray, axis: int, k: int, s: int, n: int) -> np.ndarray:
    """The sum over the n windows of size k, stride s along `axis` (C-contiguous)."""
    taps = _taps(a, axis, k, s, n)
    total = taps[0].copy()
    for tap in taps[1:]:
        total += tap
    return total


def _spread(d: np.ndarray, axis: int, k: int, s: int, out: np.ndarray) -> np.ndarray:
    """The transpose of `_window_sum`: add d[..., j, ...] to every tap of window j."""
    for tap in _taps(out, axis, k, s, d.shape[axis]):
        tap += d  # `+=`: overlapping windows share cells
    return out
