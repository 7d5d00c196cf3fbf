"""ZeroPad2d: a border of zeros around every map, like `torch.nn.ZeroPad2d` (torchvision's and
Keras Applications' explicit padding before a strided conv or a pool)."""

from __future__ import annotations

import numpy as np

from .base import Layer, check_grad, check_input


def _check_padding(padding) -> tuple[int, int, int, int]:
    """An int (every side) or torch's 4-tuple (left, right, top, bottom) of ints >= 0."""
    items = padding if isinstance(padding, (tuple, list)) else (padding,) * 4
    if len(items) != 4 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"padding must be an int or 4 ints (left, right, top, bottom). "
                         f"Received: padding={padding!r}")
    if any(v < 0 for v in items):  # torch crops there; an importer never needs that
        raise ValueError(f"padding must be >= 0. Received: padding={padding!r}")
    return tuple(int(v) for v in items)


class ZeroPad2d(Layer):
    """x: (N, C, H, W) -> y: (N, C, top + H + bottom, left + W + right), zeros in the border.

    `padding` is torch's: an int for all four sides, or (left, right, top, bottom) (W's pair
    first; Keras' ZeroPadding2D says ((top, bottom), (left, right)), H's first). backward: dy
    without its border. A zero pad before a max-pool differs from the pool's own -inf padding:
    a window whose real values are all negative returns the 0, and a tie with a padded 0 sends
    the gradient to the border (the first maximum in row-major order), where it is dropped.
    """

    kind = "zeropad2d"

    def __init__(self, padding) -> None:
        super().__init__()
        self.padding = _check_padding(padding)
        self._shape = None

    def __repr__(self) -> str:
        return f"ZeroPad2d(padding={self.padding})"

    def config(self) -> dict:
        return {"padding": list(self.padding)}

    def pads(self, hw=None) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): the order Conv2D's and the pools' `pads` use."""
        left, right, top, bottom = self.padding
        return top, bottom, left, right

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) -> (C, H + top + bottom, W + left + right)."""
        if len(input_shape) != 3:
            raise ValueError(f"ZeroPad2d needs a (C, H, W) input. "
                             f"Received: input shape {tuple(input_shape)}")
        t, b, l, r = self.pads()
        c, h, w = input_shape
        return int(c), int(h) + t + b, int(w) + l + r

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, 4, "ZeroPad2d", None)
        t, b, l, r = self.pads()
        self._shape = x.shape
        return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: (N, C, H + t + b, W + l + r) -> dx: (N, C, H, W), a copy of dy's inner part."""
        n, c, h, w = self._need_cache(self._shape)
        t, b, l, r = self.pads()
        dy = check_grad(dy, (n, c, h + t + b, w + l + r), "ZeroPad2d")
        return dy[:, :, t : t + h, l : l + w].copy()
