"""BatchNorm2d over NCHW batches, with torch's conventions (eps, momentum, unbiased update)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Layer, as_dtype, check_grad, check_input


class BNCache(NamedTuple):
    saved: np.ndarray  # (C, N*H*W): the normalised input (training) or the input (eval)
    mean: np.ndarray  # (C,) the mean that normalised (batch or running)
    invstd: np.ndarray  # (C,) 1 / sqrt(var + eps)
    batch_stats: bool  # statistics of this batch (training) or the running ones (eval)
    shape: tuple[int, ...]  # (N, C, H, W) of the input

    def xhat_rows(self) -> np.ndarray:
        """(C, N*H*W): the normalised input, (x - mean) * invstd (rebuilt in evaluation)."""
        if self.batch_stats:
            return self.saved
        return (self.saved - self.mean[:, None]) * self.invstd[:, None]

    @property
    def xhat(self) -> np.ndarray:
        """(N, C, H, W): the normalised input."""
        return _as_nchw(self.xhat_rows(), self.shape)


class BatchNorm2d(Layer):
    """y = weight * (x - mean) / sqrt(var + eps) + bias, per channel; like `torch.nn.BatchNorm2d`.

    x: (N, C, H, W) -> y: same shape; weight, bias, running_mean, running_var: (C,).
    Training: mean and the *biased* variance of this batch over (N, H, W) normalise, and the
    running statistics move by `momentum` (torch's convention: new = (1 - momentum) * old +
    momentum * batch) with the *unbiased* variance (n / (n - 1) times the biased one, n = N*H*W).
    Keras differs on both: its momentum is 1 - torch's (0.99 <-> 0.01) and it moves the running
    variance with the biased variance. Eval: the running statistics normalise.
    """

    kind = "batchnorm2d"
    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 dtype="float32", seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(num_features, (int, np.integer)) or isinstance(num_features, bool) \
                or num_features < 1:
            raise ValueError(f"num_features must be a positive int. "
                             f"Received: num_features={num_features!r}")
        for name, v, ok in (("eps", eps, lambda v: v > 0),
                            ("momentum", momentum, lambda v: 0 < v <= 1)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                what = "a number > 0" if name == "eps" else "a number in (0, 1]"
                raise ValueError(f"{name} must be {what}. Received: {name}={v!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.dtype = as_dtype(dtype)
        c = self.num_features
        # torch's init: weight 1, bias 0 (seed unused: kept for a uniform constructor)
        self.weight, self.bias = np.ones(c, self.dtype), np.zeros(c, self.dtype)
        self.running_mean, self.running_var = np.zeros(c, self.dtype), np.ones(c, self.dtype)
        self._cache = None
        self.zero_grad()

    def __repr__(self) -> str:
        return f"BatchNorm2d({self.num_features}, eps={self.eps}, momentum={self.momentum})"

    def config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "BatchNorm2d", self.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expects {self.num_features} channels (NCHW). "
                             f"Received: input with shape {x.shape}")
        rows = _channel_rows(x)  # (C, M), M = N*H*W: each channel one contiguous row
        if self.training:
            n = rows.shape[1]
            if n < 2:  # the unbiased variance needs two values (torch refuses too)
                raise ValueError("BatchNorm2d in training needs more than one value per channel. "
                                 f"Received: input with shape {x.shape}")
            mean = _mean_from_sum(rows.sum(axis=1), n)
            centred = rows - mean[:, None]
            var = _mean_from_sum(_row_dots(centred, centred), n)  # biased: normalises
            m = self.dtype.type(self.momentum)
            self.running_mean[...] = (1 - m) * self.running_mean + m * mean
            self.running_var[...] = (1 - m) * self.running_var + m * var * (n / (n - 1))
        else:
            # Evaluation: (x - mean) * a + bias, a = weight * invstd: three passes over memory
            # instead of four (one rounding fewer per element; a is rounded once per channel).
            # The input is kept by reference, not normalised: backward rebuilds xhat from it.
            invstd = 1 / np.sqrt(self.running_var + self.dtype.type(self.eps))
            y = rows - self.running_mean[:, None]
            y *= (self.weight * invstd)[:, None]
            y += self.bias[:, None]
            self._cache = BNCache(rows, self.running_mean.copy(), invstd, False, x.shape)
            return _as_nchw(y, x.shape)
        invstd = 1 / np.sqrt(var + self.dtype.type(self.eps))
        # (x - mean) * invstd, in the centred array's memory: it was one pass and one
        # full-size array fewer than computing x - mean twice (the same values)
        xhat = np.multiply(centred, invstd[:, None], out=centred)
        self._cache = BNCache(xhat, mean, invstd, True, x.shape)
        y = xhat * self.weight[:, None]
        y += self.bias[:, None]
        return _as_nchw(y, x.shape)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dy: (N, C, H, W) -> dx; adds dweight = sum(dy * xhat), dbias = sum(dy).

        Training: mean and variance depend on x too, so dx = weight * invstd *
        (dy - mean(dy) - xhat * mean(dy * xhat)), means over (N, H, W)."""
        _, _, invstd, batch_stats, shape = self._need_cache(self._cache)
        dy = _channel_rows(check_grad(dy, shape, "BatchNorm2d").astype(self.dtype, copy=False))
        xhat = self._cache.xhat_rows()
        sum_dy_xhat, sum_dy = _row_dots(dy, xhat), dy.sum(axis=1)
        self._accumulate("weight", sum_dy_xhat)
        self._accumulate("bias", sum_dy)
        if not input_grad:
            return None
        scale = (self.weight * invstd)[:, None]
        if not batch_stats:
            return _as_nchw(dy * scale, shape)
        # the means from the sums above (not two more passes), exactly as np.mean divides
        n = dy.shape[1]
        mean_dy = _mean_from_sum(sum_dy, n)[:, None]
        mean_dy_xhat = _mean_from_sum(sum_dy_xhat, n)[:, None]
        # scale * (dy - mean_dy - xhat * mean_dy_xhat), the same operations in the same order,
        # into two full-size arrays instead of four
        dx = dy - mean_dy
        dx -= np.multiply(xhat, mean_dy_xhat)
        dx *= scale
        return _as_nchw(dx, shape)


def _mean_from_sum(total: np.ndarray, count: int) -> np.ndarray:
    """np.mean's result from its sum: numpy divides the sum by the count as an intp, casting
    back to the sum's dtype, and so does this (the same bits as calling np.mean again)."""
    return np.true_divide(total, np.intp(count), out=np.empty_like(total), casting="unsafe")


# Every pass works on (C, M) rows, M = N*H*W: a Conv2D output is (C, H, W, N) in memory, so
# its channels are contiguous rows already (a free view) and each reduction is one pairwise
# sum or one BLAS dot per row instead of a strided reduction over three axes of a transposed
# view. Measured alone, (N, 8, 28, 28) float32 at batch 64 / 256: training forward 1.45 / 1.35x,
# backward 1.25 / 1.2x, evaluation forward 1.7 / 1.5x faster than on the (N, C, H, W) view.


def _channel_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (C, N*H*W) in (C, H, W, N) order: a view when x has that memory
    layout (a Conv2D output), one copy otherwise."""
    xt = x.transpose(1, 2, 3, 0)
    return (xt if xt.flags.c_contiguous else np.ascontiguousarray(xt)).reshape(x.shape[1], -1)


def _as_nchw(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(C, H*W*N) rows in (C, H, W, N) order -> an (N, C, H, W) view of them."""
    n, c, h, w = shape
    return rows.reshape(c, h, w, n).transpose(3, 0, 1, 2)


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum(a * b, axis=1) of two (C, M) arrays as C BLAS dot products: no full-size product
    array, and as accurate as np.sum's pairwise sum in float32 (measured: 3e-7 relative, 16
    rows of 200k, against 7e-6 for np.einsum's running sum)."""
    return np.matmul(a[:, None, :], b[:, :, None]).reshape(a.shape[0])
