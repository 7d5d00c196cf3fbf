"""AdaptiveAvgPool2d: average pooling to a fixed output size, whatever the input size, like
`torch.nn.AdaptiveAvgPool2d` (EfficientNet's squeeze-excite, torchvision's classifier heads)."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad, check_input, positive_pair


def adaptive_bins(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's bins along one axis of length `n` pooled to `out`: bin i is [start_i, end_i)
    with start_i = floor(i * n / out) and end_i = ceil((i + 1) * n / out), in integers.

    Bins differ in size (n=5, out=3: [0, 2), [1, 4), [3, 5)) and overlap whenever out does not
    divide n; with out > n some pixels feed several bins, with out == n each bin is one pixel.
    Every size is ceil(n / out) or one more."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def bin_matrix(n: int, out: int) -> np.ndarray:
    """(out, n) 0/1 matrix whose row i marks bin i's pixels."""
    start, end = adaptive_bins(n, out)
    cols = np.arange(n)
    return ((cols >= start[:, None]) & (cols < end[:, None])).astype(np.float64)


class AdaptiveAvgPool2d(Layer):
    """y[n, c, i, j] = the mean of x[n, c, rows of bin i, cols of bin j] (`adaptive_bins`).

    x: (N, C, H, W) -> y: (N, C, oh, ow), oh and ow from `output_size` (an int for both, or
    [oh, ow]), any H and W >= 1. Each bin's sum (a 0/1 bin matrix per axis: y = S_h x S_w^T)
    is divided by its own cell count, as torch divides each bin's sum by its size. backward:
    dx = S_h^T (dy / count) S_w, so a pixel in overlapping bins receives the sum of their
    shares. output_size 1 is the global mean (GlobalAvgPool2D, but keeping the 1x1 map).
    """

    kind = "adaptiveavgpool2d"

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = positive_pair(output_size, "output_size")
        self._cache = None
        self._plan_key = self._plan_value = None

    def __repr__(self) -> str:
        return f"AdaptiveAvgPool2d(output_size={self.output_size})"

    def config(self) -> dict:
        return {"output_size": list(self.output_size)}

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, oh, ow)."""
        if len(input_shape) != 3:
            raise ValueError(f"AdaptiveAvgPool2d needs a (C, H, W) input. "
                             f"Received: input shape {tuple(input_shape)}")
        return (int(input_shape[0]), *self.output_size)

    def _plan(self, hw: tuple[int, int], dtype: np.dtype):
        """(S_h, S_w, count) for an input of spatial size `hw`, remembered for the last one."""
        key = (tuple(hw), self.output_size, dtype)
        if self._plan_key != key:
            (h, w), (oh, ow) = hw, self.output_size
            s_h, s_w = bin_matrix(h, oh), bin_matrix(w, ow)
            count = np.outer(s_h.sum(axis=1), s_w.sum(axis=1))  # cells per bin: exact ints
            self._plan_value = s_h.astype(dtype), s_w.astype(dtype), count.astype(dtype)
            self._plan_key = key
        return self._plan_value

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "AdaptiveAvgPool2d", None)
        s_h, s_w, count = self._plan(x.shape[2:], x.dtype)
        self._cache = x.shape
        return s_h @ (x @ s_w.T) / count  # row bins of the column bins' sums, then the mean

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, oh, ow) -> dx: (N, C, H, W)."""
        shape = self._need_cache(self._cache)
        dy = check_grad(dy, (*shape[:2], *self.output_size), "AdaptiveAvgPool2d")
        s_h, s_w, count = self._plan(shape[2:], dy.dtype)
        return s_h.T @ (dy / count) @ s_w
