"""Element-wise and row-wise activations: ReLU and Softmax."""

from __future__ import annotations

import numpy as np

from .base import Layer


class ReLU(Layer):
    """y = max(x, 0); dx = dy where x > 0 (the subgradient at 0 is 0, as in torch)."""

    def __init__(self) -> None:
        super().__init__()
        self._mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        self._mask = x > 0
        return np.where(self._mask, x, x.dtype.type(0))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dy = np.asarray(dy)
        return np.where(self._need_cache(self._mask), dy, dy.dtype.type(0))

    def output_shape(self, input_shape):
        return tuple(input_shape)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Stable softmax: subtracting the row max changes nothing mathematically and stops exp
    overflowing (exp(1000) is inf in float64, exp(89) in float32)."""
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class Softmax(Layer):
    """Softmax over the features of (N, K) logits; y[n] sums to 1."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"Softmax expects a 2-D input (N, K). Received: shape {x.shape}")
        self._y = softmax(x, axis=1)
        return self._y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx = y * (dy - <dy, y>): the softmax Jacobian diag(y) - y y^T applied to dy."""
        y = self._need_cache(self._y)
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))

    def output_shape(self, input_shape):
        return tuple(input_shape)
